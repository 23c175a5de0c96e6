#!/usr/bin/env bash
# Run every molecule scenario (molecule/<name>/molecule.yml); fail if any fails.
set -euo pipefail
cd "$(dirname "$0")/.."
failed=()
count=0
for f in molecule/*/molecule.yml; do
  s=$(basename "$(dirname "$f")")
  count=$((count + 1))
  echo "=== molecule test -s $s"
  # molecule keeps "prepared: true" between runs and would skip prepare (no test servers):
  # start every scenario from a clean state.
  molecule reset -s "$s" >/dev/null 2>&1 || true
  if ! molecule test -s "$s"; then failed+=("$s"); fi
done
echo "molecule: $((count - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -ne 0 ]; then echo "failed scenarios: ${failed[*]}" >&2; exit 1; fi
[ "$count" -gt 0 ] || { echo "no molecule scenario found" >&2; exit 1; }
