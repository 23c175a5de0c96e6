"""model_pull, backend ollama, run through AnsibleModule (real argspec / check mode) against the
local Ollama API server (tests/support/ollama_server.py: emulated Ollama, real HTTP + NDJSON)."""
from __future__ import annotations

import time

from tests.support.model_pull_fixtures import call_module, ollama  # noqa: F401  pylint: disable=unused-import


def _args(srv, **kw):
    base = {"backend": "ollama", "source": "tiny:1b", "ollama_url": srv.url, "retry_delay": 0.05}
    base.update(kw)
    return base


def _pulls(srv):
    return [r for r in srv.requests if r[1] == "/api/pull"]


def test_present_pulls_then_is_unchanged_without_pulling(ollama):  # noqa: F811
    first = call_module(_args(ollama))
    assert first["changed"] is True, first
    remote = ollama.remote["tiny:1b"]
    assert first["digest"] == remote.digest and first["size"] == remote.size
    assert first["before"] == [] and first["after"] == ["tiny:1b"] and first["attempts"] == 1
    n = len(_pulls(ollama))
    second = call_module(_args(ollama))
    assert second["changed"] is False and second["digest"] == remote.digest
    assert len(_pulls(ollama)) == n, "present must read /api/tags and not pull again"


def test_short_name_means_latest_tag(ollama):  # noqa: F811
    res = call_module(_args(ollama, source="nomic-embed-text"))
    assert res["changed"] and res["source"] == "nomic-embed-text:latest"
    assert "nomic-embed-text:latest" in ollama.local


def test_check_mode_reports_pull_and_diff_without_pulling(ollama):  # noqa: F811
    res = call_module(_args(ollama), check=True, diff=True)
    assert res["changed"] is True and "would pull" in res["msg"]
    assert res["diff"]["before"] == "" and res["diff"]["after"] == "tiny:1b\n"
    assert not _pulls(ollama) and not ollama.local


def test_latest_changed_only_when_digest_moves(ollama):  # noqa: F811
    ollama.install("tiny:1b")
    same = call_module(_args(ollama, state="latest"))
    assert same["changed"] is False and len(_pulls(ollama)) == 1
    assert same["previous_digest"] == same["digest"]
    new_digest = ollama.publish("tiny:1b")
    moved = call_module(_args(ollama, state="latest"), diff=True)
    assert moved["changed"] is True and moved["digest"] == new_digest != moved["previous_digest"]


def test_latest_in_check_mode_on_present_model_does_not_pull(ollama):  # noqa: F811
    ollama.install("tiny:1b")
    res = call_module(_args(ollama, state="latest"), check=True)
    assert res["changed"] is False and "only known by pulling" in res["msg"] and not _pulls(ollama)


def test_absent_deletes_then_is_unchanged(ollama):  # noqa: F811
    ollama.install("tiny:1b")
    check = call_module(_args(ollama, state="absent"), check=True, diff=True)
    assert check["changed"] and "tiny:1b" in ollama.local and check["diff"]["after"] == ""
    gone = call_module(_args(ollama, state="absent"))
    assert gone["changed"] and "tiny:1b" not in ollama.local
    again = call_module(_args(ollama, state="absent"))
    assert again["changed"] is False


def test_error_line_mid_stream_fails_with_server_message(ollama):  # noqa: F811
    ollama.behave(fail_after=200 * 1024, message="max retries exceeded: write: no space left on device")
    res = call_module(_args(ollama))
    assert res["failed"] and "no space left on device" in res["msg"] and "tiny:1b" in res["msg"]
    assert "tiny:1b" not in ollama.local


def test_dropped_connection_is_retried_and_reported(ollama):  # noqa: F811
    """What the module guarantees: after a drop it sends the same /api/pull again and reports the drop.
    Keeping the partial layer is Ollama's job (the test server imitates it), so no byte count is asserted."""
    ollama.behave(drop_after=300 * 1024)
    res = call_module(_args(ollama))
    assert res["changed"] and res["attempts"] == 2, res
    assert len(res["dropped_connections"]) == 1 and "before 'success'" in res["dropped_connections"][0], res
    assert [body for _m, _p, body in _pulls(ollama)] == [{"model": "tiny:1b", "stream": True}] * 2
    assert res["digest"] == ollama.remote["tiny:1b"].digest and "tiny:1b" in ollama.local


def test_drops_after_progress_reset_the_retry_count(ollama):  # noqa: F811
    """retries=1, yet three drops in a row succeed: each came after new bytes, so none counts as stuck."""
    ollama.behave(drop_after=150 * 1024, times=3)
    res = call_module(_args(ollama, retries=1))
    assert res["changed"] and res["attempts"] == 4 and len(res["dropped_connections"]) == 3, res
    assert len(_pulls(ollama)) == 4


def test_max_duration_stops_a_pull_and_the_next_run_finishes_it(ollama):  # noqa: F811
    """The server stops sending bytes half-way (it repeats its last progress line, like a stalled
    download), so only max_duration can end the run; a second run pulls the model."""
    ollama.behave(hold_at=300 * 1024)
    try:
        res = call_module(_args(ollama, max_duration=1))
    finally:
        ollama.release()
    assert ollama.holding.is_set()
    assert res["failed"] and "did not finish within max_duration" in res["msg"], res
    assert "resumes where it stopped" in res["msg"] and "tiny:1b" not in ollama.local
    again = call_module(_args(ollama))
    assert again["changed"] and again["digest"] == ollama.remote["tiny:1b"].digest


def test_drops_without_progress_give_up_after_retries(ollama):  # noqa: F811
    ollama.behave(drop_after=0, times=0)
    res = call_module(_args(ollama, retries=2))
    assert res["failed"] and "dropped 3 time(s) in a row" in res["msg"] and "resumes" in res["msg"]


def test_slow_server_within_timeout_succeeds(ollama):  # noqa: F811
    ollama.behave(delay=0.02, times=0)
    res = call_module(_args(ollama, timeout=5))
    assert res["changed"] and res["digest"] == ollama.remote["tiny:1b"].digest


def test_hung_server_hits_idle_timeout(ollama):  # noqa: F811
    ollama.behave(stall=4)
    started = time.monotonic()
    res = call_module(_args(ollama, timeout=1))
    assert res["failed"] and "sent nothing for 1 s" in res["msg"]
    assert time.monotonic() - started < 4


def test_unknown_model_reports_registry_error(ollama):  # noqa: F811
    res = call_module(_args(ollama, source="no-such-model:7b"))
    assert res["failed"] and "pull model manifest: file does not exist" in res["msg"]


def test_unreachable_server_is_a_clear_error():
    res = call_module({"backend": "ollama", "source": "tiny:1b", "ollama_url": "http://127.0.0.1:9"})
    assert res["failed"] and "cannot reach Ollama at http://127.0.0.1:9" in res["msg"]
    assert "ollama_url" in res["msg"]


def test_unloaded_frees_loaded_models_and_waits(ollama):  # noqa: F811
    ollama.install("tiny:1b")
    ollama.install("nomic-embed-text")
    ollama.load("tiny:1b", size_vram=123456)
    ollama.load("nomic-embed-text", size_vram=1000)
    ollama.unload_delay = 0.3
    res = call_module({"backend": "ollama", "state": "unloaded", "ollama_url": ollama.url}, diff=True)
    assert res["changed"] and res["unloaded"] == ["nomic-embed-text:latest", "tiny:1b"]
    assert res["freed_vram"] == 124456 and not ollama.loaded
    assert res["diff"]["after"] == ""
    again = call_module({"backend": "ollama", "state": "unloaded", "ollama_url": ollama.url})
    assert again["changed"] is False


def test_unloaded_one_model_in_check_mode(ollama):  # noqa: F811
    ollama.install("tiny:1b")
    ollama.load("tiny:1b")
    res = call_module({"backend": "ollama", "state": "unloaded", "source": "tiny:1b", "ollama_url": ollama.url},
                      check=True)
    assert res["changed"] and "tiny:1b" in ollama.loaded


def test_bad_inputs_are_named():
    res = call_module({"backend": "anthropic", "source": "claude-sonnet-4-5"})
    assert res["failed"] and "unknown backend 'anthropic'" in res["msg"] and "need no download" in res["msg"]
    res = call_module({"backend": "ollama", "source": "llama3.1::8b"})
    assert res["failed"] and "not a valid Ollama model name" in res["msg"]
    res = call_module({"backend": "ollama", "source": "tiny:1b", "ollama_url": "127.0.0.1:11434"})
    assert res["failed"] and "must be an http(s) URL" in res["msg"]
