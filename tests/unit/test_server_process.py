"""``ServerProcess`` (tests/support/serve.py), the base of the real servers the tests run as subprocesses (LiteLLM,
Llama Stack, Open WebUI, gpu-demand, Neo4j, Phoenix): the environment a server gets, the health wait, the failures
it reports with the server's own output, and a stop that ends every process the server forked.

REAL: the subprocesses (this Python running a stdlib HTTP server that answers its environment on /env and the
status the test asks for on /health, and forks a child that outlives a plain kill of its parent), HTTP over loopback,
signals to the process group.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.support.serve import ServerProcess

SERVER = r"""
import json, os, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
print("server-output-marker", flush=True)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dict(os.environ)).encode() if self.path == "/env" else b"{}"
        self.send_response(200 if self.path == "/env" else int(os.environ["HEALTH_STATUS"]))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class ToyError(RuntimeError):
    pass


class Toy(ServerProcess):
    name = "toy server"
    log_name = "toy"
    drop_env = ("TOY_DROP_",)
    server_env = {"TOY_SET": "by-the-class", "TOY_REMOVED": None}
    start_error = ToyError
    poll_interval = 0.1
    stop_grace = 5.0

    def __init__(self, tmp_path, health_status=200, script=SERVER, **kw):
        super().__init__({"HEALTH_STATUS": str(health_status), "CHILD_PID_FILE": str(tmp_path / "child.pid"),
                          "TOY_DROP_BUT_GIVEN": "given"}, **kw)
        self.script = script
        self.child_pid_file = tmp_path / "child.pid"

    def command(self):
        return [sys.executable, "-c", self.script, str(self.port)]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:   # a zombie is gone as far as the test cares
        return handle.read().split(") ")[1][0] != "Z"


def test_env_filtering_health_wait_and_a_stop_that_ends_the_group(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_DROP_SECRET", "the-caller-s")
    monkeypatch.setenv("TOY_REMOVED", "the-caller-s")
    monkeypatch.setenv("TOY_KEPT", "the-caller-s")
    with Toy(tmp_path) as server:
        status, env = server.get("/env")
        assert status == 200, env
        assert "TOY_DROP_SECRET" not in env and "TOY_REMOVED" not in env
        assert env["TOY_KEPT"] == "the-caller-s" and env["TOY_SET"] == "by-the-class"
        assert env["TOY_DROP_BUT_GIVEN"] == "given"          # what the caller gives wins over the filter
        assert env["NO_PROXY"] == "127.0.0.1,localhost" and env["PYTHONUNBUFFERED"] == "1"
        assert "server-output-marker" in server.log()
        proc, child = server.proc, int(server.child_pid_file.read_text())
        assert _alive(child)
    assert server.proc is None and proc.returncode is not None
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the server's child outlived stop(): the process group was not signalled"


def test_a_server_that_exits_first_fails_with_its_exit_code_and_output(tmp_path):
    server = Toy(tmp_path, script="print('refused-this-config', flush=True); raise SystemExit(3)")
    with pytest.raises(ToyError, match=r"(?s)toy server exited with 3 before /health.*refused-this-config"):
        server.start()
    assert server.start(wait=False).wait_exited(10) == 3


def test_a_server_never_healthy_fails_at_the_deadline_and_is_stopped(tmp_path):
    server = Toy(tmp_path, health_status=503, startup_timeout=2.0)
    began = time.monotonic()
    with pytest.raises(ToyError, match=r"(?s)toy server not ready on /health after 2.0s.*server-output-marker"):
        server.start()
    assert 2.0 <= time.monotonic() - began < 15
    assert server.proc is None
    assert server.start(wait=False).wait_exited(0.5) is None    # still running: no exit to report
    server.stop()
