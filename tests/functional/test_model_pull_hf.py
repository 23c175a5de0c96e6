"""model_pull, backend huggingface, through AnsibleModule with the REAL huggingface_hub 2.4.0 and
REAL model-signing, against the local Hub endpoint (tests/support/hf_server.py: emulated Hub API)."""
from __future__ import annotations

import json
import os

from tests.support.hf_server import tiny_model_files
from tests.support.model_pull_fixtures import call_module, hf_hub, signed_tiny_repo  # noqa: F401  pylint: disable=unused-import

REPO = "ailab-test/tiny-model"


def _args(srv, cache, **kw):
    base = {"backend": "huggingface", "source": REPO, "revision": srv.repos[REPO].order[0],
            "cache_dir": str(cache), "hf_endpoint": srv.url, "timeout": 10}
    base.update(kw)
    return base


def test_download_then_second_run_unchanged_without_network(hf_hub, tmp_path):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path))
    assert res["changed"] is True and res["network"] is True, res
    commit = hf_hub.repos[REPO].order[0]
    assert res["commit"] == commit
    assert res["snapshot_path"] == str(tmp_path / "models--ailab-test--tiny-model" / "snapshots" / commit)
    assert set(res["files"]) == set(tiny_model_files(0))
    with open(os.path.join(res["snapshot_path"], "model.safetensors"), "rb") as fh:
        assert fh.read() == tiny_model_files(0)["model.safetensors"]
    assert res["size"] == sum(len(v) for v in tiny_model_files(0).values())

    hf_hub.requests.clear()
    again = call_module(_args(hf_hub, tmp_path))
    assert again["changed"] is False and again["network"] is False
    assert hf_hub.requests == [], "a complete pinned snapshot must not touch the network"


def test_vllm_reads_it_offline(hf_hub, tmp_path):  # noqa: F811
    """The layout is what huggingface_hub (hence vLLM) resolves with HF_HUB_OFFLINE semantics."""
    import huggingface_hub

    res = call_module(_args(hf_hub, tmp_path, backend="vllm"))
    path = huggingface_hub.snapshot_download(REPO, revision=res["commit"], cache_dir=str(tmp_path),
                                             local_files_only=True)
    assert path == res["snapshot_path"]


def test_revision_pinning_gets_that_commit(hf_hub, tmp_path):  # noqa: F811
    c0, c1 = hf_hub.repos[REPO].order
    r0 = call_module(_args(hf_hub, tmp_path, revision=c0))
    r1 = call_module(_args(hf_hub, tmp_path, revision=c1))
    assert r0["snapshot_path"] != r1["snapshot_path"] and r1["changed"]
    with open(os.path.join(r0["snapshot_path"], "config.json")) as a, open(os.path.join(r1["snapshot_path"], "config.json")) as b:
        assert json.load(a)["num_hidden_layers"] == 2 and json.load(b)["num_hidden_layers"] == 3


def test_branch_revision_resolves_warns_and_records_ref(hf_hub, tmp_path, capfd):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path, revision="main"))
    assert res["changed"] and res["commit"] == hf_hub.repos[REPO].order[1]
    # in its own process the warning is in the result; once pytest imported controller code (the action
    # plugin's unit tests), ansible routes module warnings to the controller display instead
    assert "not a pinned commit sha" in json.dumps(res.get("warnings")) + capfd.readouterr().err
    with open(tmp_path / "models--ailab-test--tiny-model" / "refs" / "main") as fh:
        assert fh.read() == res["commit"]


def test_allow_patterns_and_check_mode(hf_hub, tmp_path):  # noqa: F811
    args = _args(hf_hub, tmp_path, allow_patterns=["*.json"])
    check = call_module(args, check=True, diff=True)
    assert check["changed"] and check["would_download"] == ["config.json", "original/params.json",
                                                            "tokenizer_config.json"]
    assert check["diff"]["before"] == ""
    assert check["diff"]["after"] == "config.json\noriginal/params.json\ntokenizer_config.json\n"
    assert not (tmp_path / "models--ailab-test--tiny-model" / "snapshots").exists()
    res = call_module(args)
    assert sorted(res["files"]) == check["would_download"]
    assert call_module(args)["changed"] is False


def test_ignore_patterns_skip_files_and_second_run_asks_nothing(hf_hub, tmp_path):  # noqa: F811
    args = _args(hf_hub, tmp_path, ignore_patterns=["*.safetensors", "original/*"])
    kept = [".gitattributes", "README.md", "config.json", "tokenizer_config.json"]
    check = call_module(args, check=True)
    assert check["changed"] and check["would_download"] == kept, check
    res = call_module(args)
    assert res["changed"] and sorted(res["files"]) == kept, res
    assert not os.path.exists(os.path.join(res["snapshot_path"], "model.safetensors"))
    assert hf_hub.range_starts == [], "the ignored weights were requested"
    hf_hub.requests.clear()
    assert call_module(args)["changed"] is False and hf_hub.requests == []


def test_dropped_download_is_resumed_within_the_run(hf_hub, tmp_path):  # noqa: F811
    """The "CDN" cuts a 12 MiB weights file after 11 MiB; the REAL huggingface_hub reconnects in the same
    run asking (Range) for the rest after the last whole chunk it wrote (DOWNLOAD_CHUNK_SIZE, 10 MiB: a
    smaller file starts again from byte 0), and the cached file is byte-exact."""
    from huggingface_hub import constants

    files = tiny_model_files(0, weights_size=12 * 1024 * 1024)
    repo = hf_hub.add_repo("ailab-test/bigger", [files])
    hf_hub.drop_after = 11 * 1024 * 1024
    res = call_module(_args(hf_hub, tmp_path, source="ailab-test/bigger", revision=repo.order[0]))
    assert res["changed"] and not res.get("failed"), res
    assert hf_hub.range_starts == [0, constants.DOWNLOAD_CHUNK_SIZE] and hf_hub.drop_after is None
    with open(os.path.join(res["snapshot_path"], "model.safetensors"), "rb") as fh:
        assert fh.read() == files["model.safetensors"]


def test_missing_file_is_named(hf_hub, tmp_path):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path, allow_patterns=["config.json", "tokenizer.model"]))
    assert res["failed"] and "tokenizer.model not found in ailab-test/tiny-model" in res["msg"]
    hf_hub.hide.add("tokenizer_config.json")  # listed, but the server answers 404 (a broken mirror)
    res = call_module(_args(hf_hub, tmp_path))
    assert res["failed"] and "missing on the server (HTTP 404)" in res["msg"]
    assert "tokenizer_config.json" in res["msg"]


def test_unknown_revision_and_repo(hf_hub, tmp_path):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path, revision="f" * 40))
    assert res["failed"] and "does not exist" in res["msg"] and "f" * 40 in res["msg"]
    res = call_module(_args(hf_hub, tmp_path, source="ailab-test/nope"))
    assert res["failed"], res
    assert "repository ailab-test/nope at %s" % hf_hub.url in res["msg"] and "not found (HTTP 404)" in res["msg"]
    assert "check the repo id" in res["msg"]


def test_bad_token_is_a_401_message_without_the_token(hf_hub, tmp_path):  # noqa: F811
    secret = "hf_WRONGTOKEN_" + "s3cr3t" * 4
    res = call_module(_args(hf_hub, tmp_path, hf_token=secret))
    assert res["failed"] and "HTTP 401" in res["msg"] and "rejected the token" in res["msg"]
    assert secret not in json.dumps(res)


def test_private_repo_needs_the_token(hf_hub, tmp_path):  # noqa: F811
    hf_hub.add_repo("ailab-test/private", [tiny_model_files(0)], private=True)
    commit = hf_hub.repos["ailab-test/private"].order[0]
    res = call_module(_args(hf_hub, tmp_path, source="ailab-test/private", revision=commit))
    assert res["failed"] and "HTTP 401" in res["msg"] and "private or gated" in res["msg"]
    ok = call_module(_args(hf_hub, tmp_path, source="ailab-test/private", revision=commit, hf_token=hf_hub.token))
    assert ok["changed"] and hf_hub.token not in json.dumps(ok)
    assert ok["invocation"]["module_args"]["hf_token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_absent_removes_the_cached_revision(hf_hub, tmp_path):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path))
    gone = call_module(_args(hf_hub, tmp_path, state="absent"), diff=True)
    assert gone["changed"] and gone["deleted"] == [res["commit"]] and not os.path.exists(res["snapshot_path"])
    assert call_module(_args(hf_hub, tmp_path, state="absent"))["changed"] is False


def test_bad_inputs(hf_hub, tmp_path):  # noqa: F811
    res = call_module(_args(hf_hub, tmp_path, source="not a repo"))
    assert res["failed"] and "not a valid Hugging Face repo id" in res["msg"]
    res = call_module(_args(hf_hub, tmp_path, source="owner/name--bad"))
    assert res["failed"] and "not a valid Hugging Face repo id" in res["msg"]
    res = call_module(_args(hf_hub, tmp_path, hf_endpoint="http://127.0.0.1:9"))
    assert res["failed"] and "cannot reach the Hugging Face endpoint http://127.0.0.1:9" in res["msg"]
    res = call_module(_args(hf_hub, tmp_path, state="unloaded"))
    assert res["failed"] and "Ollama only" in res["msg"]


def test_signature_key_verified_then_tamper_fails(hf_hub, tmp_path):  # noqa: F811
    files, verify = signed_tiny_repo(tmp_path, "key")
    repo = hf_hub.add_repo("ailab-test/signed", [files])
    args = _args(hf_hub, tmp_path / "cache", source="ailab-test/signed", revision=repo.order[0], verify=verify)
    ok = call_module(args)
    assert ok["changed"] and ok["verified"] is True
    # tamper one byte of the weights in the cache (what vLLM would load)
    blob = os.path.realpath(os.path.join(ok["snapshot_path"], "model.safetensors"))
    with open(blob, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    bad = call_module(args)
    assert bad["failed"] and "verification" in bad["msg"] and "FAILED" in bad["msg"]
    assert "content differs for model.safetensors" in bad["msg"]


def test_signature_with_wrong_key_fails(hf_hub, tmp_path):  # noqa: F811
    files, _verify = signed_tiny_repo(tmp_path / "a", "key") if (tmp_path / "a").mkdir() is None else None
    _files, other = signed_tiny_repo(tmp_path / "b", "key") if (tmp_path / "b").mkdir() is None else None
    repo = hf_hub.add_repo("ailab-test/signed", [files])
    res = call_module(_args(hf_hub, tmp_path / "cache", source="ailab-test/signed", revision=repo.order[0],
                            verify=other))
    assert res["failed"] and "FAILED" in res["msg"]


def test_signature_certificate_based(hf_hub, tmp_path):  # noqa: F811
    files, verify = signed_tiny_repo(tmp_path, "certificate")
    repo = hf_hub.add_repo("ailab-test/signed-cert", [files])
    args = _args(hf_hub, tmp_path / "cache", source="ailab-test/signed-cert", revision=repo.order[0],
                 allow_patterns=["*.json", "*.safetensors", "*.md", ".gitattributes"], verify=verify)
    ok = call_module(args)
    assert ok["verified"] is True and "model.sig" in ok["files"]  # the signature was added to allow_patterns
