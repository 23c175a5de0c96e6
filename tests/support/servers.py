"""Start and stop the local test servers as background processes (for molecule and by hand).

    python -m tests.support.servers start k8s --dir DIR [--seed FILE]   # DIR/kubeconfig, DIR/k8s.url
    python -m tests.support.servers start neo4j --dir DIR [--password PW]  # DIR/neo4j.url (the real Neo4j)
    python -m tests.support.servers stop --dir DIR

``start`` returns once the server answers (or fails with its log); ``stop`` ends every
server started with that DIR. Logs go to DIR/<kind>.log.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = {
    # kind: (module, readiness file written by the server)
    "k8s": ("tests.support.controlplane", "k8s.url"),
    "neo4j": ("tests.support.neo4j_server", "neo4j.url"),   # JSON: http, bolt, user, password
}


def start(kind, directory, extra, timeout=240.0):
    module, ready_file = KINDS[kind]
    os.makedirs(directory, exist_ok=True)
    ready = os.path.join(directory, ready_file)
    if os.path.exists(ready):
        os.unlink(ready)
    log = open(os.path.join(directory, f"{kind}.log"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", module, "--dir", directory, *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    with open(os.path.join(directory, f"{kind}.pid"), "w", encoding="utf-8") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(os.path.join(directory, f"{kind}.log"), encoding="utf-8", errors="replace") as handle:
                sys.exit(f"{kind} server did not start:\n{handle.read()[-4000:]}")
        time.sleep(0.05)
    print(open(ready, encoding="utf-8").read().strip())  # pylint: disable=consider-using-with


def stop(directory):
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.endswith(".pid"):
            continue
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as handle:
            pid = int(handle.read().strip())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("kind", choices=sorted(KINDS))
    p_start.add_argument("--dir", required=True)
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--dir", required=True)
    args, extra = parser.parse_known_args()
    if args.cmd == "start":
        start(args.kind, os.path.abspath(args.dir), extra)
    else:
        stop(os.path.abspath(args.dir))


if __name__ == "__main__":
    main()
