#!/usr/bin/env bash
# Creates (once per requirements/phoenix.txt content) the venv holding the real Arize Phoenix server and
# prints its directory. It lives outside the checkout, in ~/.cache/ailab-gpu_lab/phoenix-<hash>, so fresh
# clones on the same machine (CI) reuse it; the first install takes a few minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/requirements/phoenix.txt"
hash="$(sha256sum "$req" | cut -c1-12)"
venv="${AILAB_PHOENIX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ailab-gpu_lab/phoenix-$hash}"
if [ ! -x "$venv/bin/phoenix" ]; then
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  nice -n 10 "$venv.tmp/bin/pip" install --disable-pip-version-check -q -r "$req" >&2
  rm -rf "$venv" && mv "$venv.tmp" "$venv"
  # venvs are not relocatable: rewrite the scripts' interpreter line after the move
  sed -i "1s|^#!.*/python|#!$venv/bin/python|" "$venv"/bin/phoenix "$venv"/bin/pip
fi
echo "$venv"
