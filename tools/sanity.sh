#!/usr/bin/env bash
# ansible-test sanity on the installed copy of the built collection: tools/sanity.sh DIR [ansible-test options].
# The ansible-test is the first on PATH (make compat puts ansible-core 2.17's venv first).
# Offline trap (see REFERENCE.md): ansible-test downloads a get-pip script from a host
# that is not reachable here. We place a stand-in in its cache that runs pip from
# CPython's bundled ensurepip wheel; pip itself then installs from PyPI as usual.
set -euo pipefail
coll_dir=$1
py=$(command -v python)
pip_version=$("$py" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements as pr
print(re.search(r"pip='([^']+)'", inspect.getsource(pr.get_venv_packages)).group(1))
PY
)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<'PY'
"""Local stand-in for get-pip.py: bootstrap pip from CPython's bundled ensurepip wheel."""
import glob, os, sys, ensurepip
wheel = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))[-1]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402
# get-pip.py's own switches; pip install does not know them.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install"] + args))
PY
cd "$coll_dir"
# The installed copy sits below this checkout, whose .gitignore hides it from ansible-test's
# file listing: give the copy a repository of its own so every shipped file is a target.
rm -rf .git
git init -q . && git add -A && git -c user.name=ci -c user.email=ci@localhost commit -qm tarball
ansible-test sanity --local --python 3.11 --color no "${@:2}"
