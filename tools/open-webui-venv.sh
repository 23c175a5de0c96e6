#!/usr/bin/env bash
# Builds the venv of the real Open WebUI (tests/support/open_webui.py) from requirements/open-webui.txt:
# the pinned open-webui without its dependencies (they pull torch and CUDA libraries), then the frozen list
# of what it needs here. Usage: tools/open-webui-venv.sh VENV_DIR. Built in VENV_DIR.tmp and moved, so an
# interrupted build never leaves a half venv that looks done.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/requirements/open-webui.txt"
venv="${1:?usage: tools/open-webui-venv.sh VENV_DIR}"
python="${PYTHON:-python3}"
rm -rf "$venv.tmp"
"$python" -m venv "$venv.tmp"
pip=("$venv.tmp/bin/pip" install --disable-pip-version-check -q)
# its needs first, then open-webui itself with --no-deps (pip skips its conflict report: the unmet pins are on purpose)
grep -vE '^open-webui==' "$req" | "${pip[@]}" -r /dev/stdin
grep -E '^open-webui==' "$req" | "${pip[@]}" --no-deps -r /dev/stdin
"$venv.tmp/bin/pip" check --disable-pip-version-check >/dev/null 2>&1 || true  # open-webui's own pins are not met on purpose
rm -rf "$venv" && mv "$venv.tmp" "$venv"
# venvs are not relocatable: rewrite the scripts' interpreter line after the move
sed -i "1s|^#!.*/python[0-9.]*$|#!$venv/bin/python|" "$venv"/bin/open-webui "$venv"/bin/pip
