#!/usr/bin/env bash
# Builds tools/netpol-matrix (our 100-line driver of cyclonus's NetworkPolicy engine, pinned in
# its go.mod) once into .cache/tools/bin/netpol-matrix; rebuilt only when go.mod/go.sum/main.go change.
# np-guard netpol-analyzer was the first choice: the Go module proxy answers 403 for it here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/tools/netpol-matrix"
bin="$root/.cache/tools/bin/netpol-matrix"
stamp="$bin.sha256"
want="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -d' ' -f1)"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
command -v go >/dev/null 2>&1 || { echo "netpol-matrix: go is not installed (needed to build the NetworkPolicy analyser)" >&2; exit 1; }
mkdir -p "$(dirname "$bin")"
( cd "$src" && GOFLAGS=-mod=readonly nice -n 10 go build -trimpath -ldflags='-s -w' -o "$bin" . )
echo "$want" > "$stamp"
echo "built $bin"
