"""The http_get module run in-process (ansible.module_utils.testing.patch_module_args) against the Ollama stand-in
of tests/support (it speaks Ollama's HTTP API: /api/tags lists the models; an unknown path answers 404 as Ollama's
router does), and against a port nothing listens on."""

import json
import socket

import pytest

from ansible_collections.ailab.gpu_lab.plugins.modules import http_get as module
from tests.support.module_run import run_module
from tests.support.ollama_server import OllamaServer


def run(capsys, **args):
    return run_module(module, capsys, **args)


@pytest.fixture(name="ollama")
def ollama_fixture():
    server = OllamaServer(registry={"llama3.1:8b": 1 << 20, "nomic-embed-text": 1 << 20}).start()
    yield server
    server.stop()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_answer_under_its_name_in_one_start(capsys, ollama):
    result = run(capsys, urls={"gpu": ollama.url + "/api/tags", "embed": ollama.url + "/api/tags"})
    assert result["_rc"] == 0 and result["changed"] is False
    assert set(result["answers"]) == {"gpu", "embed"}
    for answer in result["answers"].values():
        assert answer["status"] == 200 and answer["url"] == ollama.url + "/api/tags"
        assert answer["json"] == {"models": []}   # nothing pulled into the stand-in yet


def test_a_wrong_status_or_no_answer_fails_naming_each_url(capsys, ollama):
    down = "http://127.0.0.1:%d/api/tags" % _closed_port()
    result = run(capsys, urls={"ok": ollama.url + "/api/tags", "missing": ollama.url + "/no/such/path", "down": down})
    assert result["_rc"] == 1 and result["failed"] is True
    assert result["answers"]["ok"]["status"] == 200
    assert result["answers"]["missing"]["status"] == 404 and result["answers"]["down"]["status"] == -1
    assert "missing (%s/no/such/path): 404" % ollama.url in result["msg"] and "down (%s): -1" % down in result["msg"]
    assert "ok (" not in result["msg"]
    allowed = run(capsys, urls={"missing": ollama.url + "/no/such/path"}, status_code=[200, 404])
    assert allowed["_rc"] == 0 and allowed["answers"]["missing"]["status"] == 404


def test_headers_are_never_echoed(capsys, ollama):
    result = run(capsys, urls={"gpu": ollama.url + "/api/tags"}, headers={"api-key": "sekret-header-value"})
    assert result["answers"]["gpu"]["status"] == 200
    assert "sekret-header-value" not in json.dumps(result)
