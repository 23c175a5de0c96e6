"""Unit tests of model_pull's pure logic (validation, progress, filter, messages). No servers."""
from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.action.model_pull import human_bytes, progress_line
from ansible_collections.ailab.gpu_lab.plugins.filter.model_pulls import model_pulls
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull as mp
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_hf as hf
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_ollama as ol
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_verify as mv

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("name", ["llama3.1:8b", "llama3.1", "nomic-embed-text", "qwen2.5:0.5b-instruct-q4_K_M",
                                  "library/llama3:latest", "hf.co/bartowski/model:Q4_K_M",
                                  "registry.example.com:5000/team/model:v1", "user/model"])
def test_valid_ollama_names(name):
    assert ol.validate_name(name) is None


@pytest.mark.parametrize("name", ["", "llama3.1::8b", "llama3.1:", ":8b", "has space:1b", "a/../b", "-bad"])
def test_invalid_ollama_names(name):
    assert ol.validate_name(name)


@pytest.mark.parametrize("raw,norm", [("llama3.1", "llama3.1:latest"), ("llama3.1:8b", "llama3.1:8b"),
                                      ("registry.ollama.ai/library/llama3", "llama3:latest"),
                                      ("user/model", "user/model:latest")])
def test_normalize(raw, norm):
    assert ol.normalize(raw) == norm


@pytest.mark.parametrize("repo,ok", [("Qwen/Qwen2.5-7B-Instruct-AWQ", True), ("gpt2", True),
                                     ("meta-llama/Llama-3.1-8B", True), ("a/b/c", False), ("owner/na--me", False),
                                     ("owner/..", False), ("owner/name.git", False), ("", False),
                                     ("owner/ name", False)])
def test_repo_ids(repo, ok):
    assert (hf.validate_repo_id(repo) is None) is ok


def test_backend_names():
    assert mp.normalize_backend("vllm") == ("huggingface", None)
    assert mp.normalize_backend("Ollama")[0] == "ollama"
    backend, err = mp.normalize_backend("openai")
    assert backend is None and "hosted providers" in err and "model_pulls" in err


def _params(**kw):
    p = {k: v.get("default") for k, v in mp.ARGUMENT_SPEC.items()}
    p.update(backend="ollama", source="tiny:1b")
    p.update(kw)
    return p


def test_validate_collects_every_problem():
    problems = mp.validate(_params(source="bad::name", timeout=0, retries=-1, ollama_url="localhost:11434"))
    text = " | ".join(problems)
    assert "not a valid Ollama model name" in text and "timeout must be a positive" in text
    assert "retries must be 0 or more" in text and "http(s) URL" in text
    assert mp.validate(_params(state="unloaded", source=None)) == []
    key_without_file = {"method": "key", "public_key": None, "signature": "model.sig"}
    problems = mp.validate(_params(backend="huggingface", source="o/n", verify=key_without_file))
    assert problems == ["verify.public_key is required with verify.method=key"]
    assert "Ollama only" in mp.validate(_params(backend="vllm", source="o/n", state="unloaded"))[0]
    assert "not a valid git revision" in mp.validate(_params(backend="vllm", source="o/n", revision="a b"))[0]


def test_pull_progress_aggregates_layers():
    seen = []
    prog = ol.PullProgress(seen.append)
    prog({"status": "pulling manifest"})
    prog({"status": "pulling aa", "digest": "sha256:aa", "total": 100, "completed": 50})
    prog({"status": "pulling bb", "digest": "sha256:bb", "total": 300, "completed": 0})
    prog({"status": "pulling aa", "digest": "sha256:aa", "total": 100, "completed": 100})
    assert seen[-1] == {"status": "pulling aa", "completed": 100, "total": 400, "percent": 25.0}
    assert seen[0]["percent"] is None


def test_progress_file_is_atomic_json_and_throttled(tmp_path):
    clock = [0.0]
    path = tmp_path / "p" / "progress.json"
    pf = mp.ProgressFile(str(path), "ollama", "tiny:1b", min_interval=0.5, clock=lambda: clock[0])
    pf({"status": "pulling", "completed": 0, "total": 1000})
    clock[0] = 0.1
    pf({"status": "pulling", "completed": 500, "total": 1000})      # throttled
    assert json.loads(path.read_text())["completed"] == 0
    clock[0] = 2.0
    pf({"status": "pulling", "completed": 800, "total": 1000})
    data = json.loads(path.read_text())
    assert data["completed"] == 800 and data["rate"] == 400 and data["source"] == "tiny:1b"
    pf.remove()
    assert not path.exists()
    mp.ProgressFile(None, "ollama", "x")({"completed": 1})          # no file: a no-op


def test_progress_line_and_bytes():
    assert human_bytes(512) == "512 B" and human_bytes(3 * 1024 ** 3) == "3.0 GiB"
    line = progress_line("gpu1", {"source": "llama3.1:70b", "status": "pulling 8eeb52dfb3bb",
                                  "completed": 10 * 1024 ** 3, "total": 40 * 1024 ** 3, "rate": 100 * 1024 ** 2})
    assert line == ("model_pull [gpu1] llama3.1:70b: pulling 8eeb52dfb3bb, 10.0 GiB / 40.0 GiB (25.0%), "
                    "100.0 MiB/s, ETA 5m07s")


def test_hf_pattern_helpers():
    assert hf._matches("config.json", ["*.json"], None)
    assert not hf._matches("model.safetensors", ["*.json"], None)
    assert not hf._matches("original/params.json", ["*.json"], ["original/"])
    assert hf._literal_misses(["*.json", "tokenizer.model", "config.json", "sub/"], ["config.json"]) == \
        ["tokenizer.model"]


def test_verify_summary_names_files():
    text = ("Signature mismatch: [\"Hash mismatch for 'w.bin': Expected 'Digest(x)', Actual 'Digest(y)'\", "
            "\"Extra files found in model 'm': extra.txt\"]")
    assert mv._summarize(text) == "content differs for w.bin; extra files found: extra.txt"
    assert mv._summarize("boom") == "boom"


CATALOG = [
    {"name": "qwen2.5-7b", "backend": "vllm", "source": "Qwen/Qwen2.5-7B-Instruct-AWQ", "revision": SHA},
    {"name": "llama3.1-8b", "backend": "ollama", "source": "llama3.1:8b"},
    {"name": "llama-alias", "backend": "ollama", "source": "llama3.1:8b"},
    {"name": "nomic-embed", "backend": "ollama", "source": "nomic-embed-text", "mode": "embedding"},
    {"name": "cloud-fallback", "backend": "anthropic", "source": "claude-sonnet-4-5", "api_key_env": "ANTHROPIC_API_KEY"},
]


def test_model_pulls_filter():
    pulls = model_pulls(CATALOG)
    assert pulls == [
        {"name": "qwen2.5-7b", "names": ["qwen2.5-7b"], "backend": "huggingface",
         "source": "Qwen/Qwen2.5-7B-Instruct-AWQ", "revision": SHA, "service": None},
        {"name": "llama3.1-8b", "names": ["llama3.1-8b", "llama-alias"], "backend": "ollama", "source": "llama3.1:8b",
         "revision": None, "service": "ollama"},
        {"name": "nomic-embed", "names": ["nomic-embed"], "backend": "ollama", "source": "nomic-embed-text",
         "revision": None, "service": "ollama-embed"},
    ]
    assert [p["source"] for p in model_pulls(CATALOG, "vllm")] == ["Qwen/Qwen2.5-7B-Instruct-AWQ"]
    assert len(model_pulls(CATALOG, "ollama")) == 2
    # embedding models go to the CPU Ollama, chat models to the GPU one (as the gateway's api_base does)
    assert [p["source"] for p in model_pulls(CATALOG, "ollama", service="ollama")] == ["llama3.1:8b"]
    assert [p["source"] for p in model_pulls(CATALOG, service="ollama-embed")] == ["nomic-embed-text"]
    assert model_pulls([]) == []


def test_model_pulls_filter_errors():
    with pytest.raises(AnsibleFilterError, match="revision"):
        model_pulls([{"name": "q", "backend": "vllm", "source": "Qwen/x"}])
    with pytest.raises(AnsibleFilterError, match="backend must be"):
        model_pulls(CATALOG, "anthropic")
    with pytest.raises(AnsibleFilterError, match="service must be one of the Ollama Services ollama, ollama-embed"):
        model_pulls(CATALOG, "ollama", service="ollama-cpu")
