"""Secrets given to the local test servers (tests/support/serve.py ``add_secret_option``): a generated value
that starts with ``-`` (``secrets.token_urlsafe`` gives one in 64, which made ``make demo`` fail about once in
64 runs) reaches the server intact by every way a caller may pass it: ``--api-key=VALUE``, a file, or the
environment variable the real Qdrant reads. REAL: argparse, the Qdrant stand-in started as ``make demo``
starts it (``python -m tests.support.qdrant_server``, key in ``QDRANT__SERVICE__API_KEY``) and asked over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support import hf_server, qdrant_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALUES = ["-Xk3", "--looks-like-an-option", "-", "plain-key_0123"]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("how", ["equals", "file", "env"])
def test_a_key_starting_with_a_dash_is_read_intact(tmp_path, monkeypatch, value, how):
    monkeypatch.delenv(qdrant_server.KEY_ENV, raising=False)
    argv = ["--port", "0"]
    if how == "equals":
        argv.append(f"--api-key={value}")
    elif how == "file":
        (tmp_path / "key").write_text(value + "\n")
        argv += ["--api-key-file", str(tmp_path / "key")]
    else:
        monkeypatch.setenv(qdrant_server.KEY_ENV, value)
    assert qdrant_server.parse_args(argv).api_key == value


def test_the_old_separate_argument_form_is_what_broke():
    """Why the callers changed: argparse refuses ``--api-key -Xk3`` (it sees an option, not a value)."""
    with pytest.raises(SystemExit):
        qdrant_server.parse_args(["--api-key", "-Xk3"])


def test_explicit_key_wins_over_the_environment_and_the_default_stays(monkeypatch):
    monkeypatch.setenv(qdrant_server.KEY_ENV, "-from-env")
    assert qdrant_server.parse_args(["--api-key=-given"]).api_key == "-given"
    monkeypatch.delenv(qdrant_server.KEY_ENV)
    assert qdrant_server.parse_args([]).api_key == qdrant_server.DEFAULT_KEY


def test_hub_token_starting_with_a_dash(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(hf_server, "run_in_foreground", lambda srv, banner, port_file: started.append(srv) or 0)
    monkeypatch.setattr(hf_server.HFServer, "start", lambda self: self)
    (tmp_path / "token").write_text("-hf_dash\n")
    hf_server.main(["--token-file", str(tmp_path / "token")])
    hf_server.main(["--token=-hf_dash2"])
    assert [s.token for s in started] == ["-hf_dash", "-hf_dash2"]


def test_the_server_started_as_make_demo_starts_it_accepts_a_dash_key(tmp_path):
    key = "-demo-key-as-token_urlsafe-may-draw-it"
    port_file = tmp_path / "qdrant.port"
    env = dict(os.environ, PYTHONPATH=REPO, **{qdrant_server.KEY_ENV: key})
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.qdrant_server", "--port", "0",  # pylint: disable=consider-using-with
                             "--port-file", str(port_file)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the Qdrant stand-in did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}/collections"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"api-key": key}), timeout=10) as resp:
            assert json.load(resp)["result"] == {"collections": []}
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(url, headers={"api-key": key[1:]}), timeout=10)
        assert denied.value.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
