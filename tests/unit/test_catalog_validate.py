"""Unit tests of plugins/module_utils/catalog.py: validation rules (data-driven, cases in
tests/unit/data/catalog_cases.yml) and the derivations the other roles use. Pure Python,
nothing emulated."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog
from tests.support.catalog_example import load_example_catalog

DATA = Path(__file__).parent / "data"
CASES = yaml.safe_load((DATA / "catalog_cases.yml").read_text())
EXAMPLE = load_example_catalog()
SHA = "b25037543e9394b818fdfca67ab2a00ecc7dd641"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_catalog_case(case):
    if case.get("ok"):
        assert catalog.validate_catalog(case["models"], case.get("routes")) == case["expect"]
        return
    with pytest.raises(catalog.CatalogError) as info:
        catalog.validate_catalog(case["models"], case.get("routes"))
    message = str(info.value)
    for expected in case["errors"]:
        assert expected in message, "%r not in:\n%s" % (expected, message)
    if "count" in case:
        assert len(info.value.errors) == case["count"], info.value.errors


def test_normalization_fills_defaults():
    out = catalog.validate_catalog([{"name": "x", "backend": "ollama", "source": "x:1"}])
    assert out == [{"name": "x", "backend": "ollama", "source": "x:1", "mode": "chat", "litellm": {}}]


def test_example_model_list_derivation():
    model_list = catalog.litellm_model_list(EXAMPLE["gpu_lab_models"], namespace="lab")
    by_name = {m["model_name"]: m for m in model_list}
    assert by_name["qwen2.5-7b"]["litellm_params"] == {
        "model": "hosted_vllm/qwen2.5-7b", "api_base": "http://vllm.lab.svc.cluster.local:8000/v1"}
    assert by_name["llama3.1-8b"]["litellm_params"] == {
        "model": "ollama_chat/llama3.1:8b", "api_base": "http://ollama.lab.svc.cluster.local:11434"}
    assert by_name["nomic-embed"]["litellm_params"]["model"] == "ollama/nomic-embed-text"
    assert by_name["nomic-embed"]["model_info"] == {"mode": "embedding", "cooldown_time": 5}
    assert by_name["qwen2.5-7b"]["model_info"] == {"mode": "chat", "cooldown_time": 5}
    assert by_name["cloud-fallback"]["litellm_params"] == {
        "model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY"}
    assert by_name["cloud-fallback"]["model_info"] == {"mode": "chat"}  # the router's cooldown_time


def test_cooldown_time_per_model():
    models = [{"name": "q", "backend": "vllm", "source": "a/b", "revision": SHA, "cooldown_time": 0},
              {"name": "h", "backend": "openai", "source": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY",
               "cooldown_time": 60.5}]
    assert [m["model_info"] for m in catalog.litellm_model_list(models)] == [
        {"mode": "chat", "cooldown_time": 0}, {"mode": "chat", "cooldown_time": 60.5}]
    for bad in (-1, "5s", True):
        with pytest.raises(catalog.CatalogError) as exc:
            catalog.validate_catalog([dict(models[0], cooldown_time=bad)])
        assert "field 'cooldown_time': %r is not a number of seconds >= 0" % (bad,) in str(exc.value)


def test_overrides_and_entry_api_base_precedence():
    models = [{"name": "q", "backend": "vllm", "source": "a/b", "revision": SHA},
              {"name": "r", "backend": "vllm", "source": "a/c", "revision": SHA, "api_base": "http://box:9000/v1"},
              {"name": "o", "backend": "ollama", "source": "o:1", "litellm": {"timeout": 30, "rpm": 5}}]
    out = catalog.litellm_model_list(models, vllm_api_base="http://127.0.0.1:1/v1", ollama_api_base="http://127.0.0.1:2")
    assert [m["litellm_params"]["api_base"] for m in out] == [
        "http://127.0.0.1:1/v1", "http://box:9000/v1", "http://127.0.0.1:2"]
    assert out[2]["litellm_params"]["rpm"] == 5 and out[2]["litellm_params"]["timeout"] == 30


def test_served_name_and_gateway_name_cannot_drift():
    models = EXAMPLE["gpu_lab_models"]
    served = catalog.served_name(models, "qwen2.5-7b")
    args = catalog.vllm_args(models, "qwen2.5-7b")
    gateway_model = [m for m in catalog.litellm_model_list(models) if m["model_name"] == "qwen2.5-7b"][0]
    assert args[args.index("--served-model-name") + 1] == served
    assert gateway_model["litellm_params"]["model"] == "hosted_vllm/" + served


def test_vllm_args_rendering():
    models = [{"name": "q", "backend": "vllm", "source": "Qwen/Q", "revision": SHA, "vision": True, "vllm_args": {
        "max_model_len": 8192, "gpu_memory_utilization": 0.9, "enforce_eager": True, "trust_remote_code": False,
        "quantization": None, "limit_mm_per_prompt": {"image": 1}, "allowed_origins": ["a", "b"]}}]
    assert catalog.vllm_args(models, "q") == [
        "--model", "Qwen/Q", "--revision", SHA, "--served-model-name", "q",
        "--allowed-origins", "a", "b", "--enforce-eager", "--gpu-memory-utilization", "0.9",
        "--limit-mm-per-prompt", '{"image":1}', "--max-model-len", "8192"]


def test_vllm_args_of_non_vllm_model_is_an_error():
    with pytest.raises(catalog.CatalogError, match="only exist for vllm models"):
        catalog.vllm_args(EXAMPLE["gpu_lab_models"], "llama3.1-8b")
    with pytest.raises(catalog.CatalogError, match="did you mean 'qwen2.5-7b'"):
        catalog.vllm_args(EXAMPLE["gpu_lab_models"], "qwen2.5-7")


def test_env_names_and_refs():
    models = EXAMPLE["gpu_lab_models"] + [
        {"name": "gpt", "backend": "openai", "source": "gpt-4o", "api_key_env": "OPENAI_API_KEY"},
        {"name": "claude2", "backend": "anthropic", "source": "claude-haiku-4-5", "api_key_env": "ANTHROPIC_API_KEY"}]
    assert catalog.env_names(models) == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert catalog.env_refs(models) == {"ANTHROPIC_API_KEY": "os.environ/ANTHROPIC_API_KEY",
                                        "OPENAI_API_KEY": "os.environ/OPENAI_API_KEY"}


def test_fallbacks_and_default_route():
    routes = dict(EXAMPLE["gpu_lab_routes"], default=["cloud-fallback"])
    assert catalog.litellm_fallbacks(routes, EXAMPLE["gpu_lab_models"]) == [
        {"qwen2.5-7b": ["llama3.1-8b", "cloud-fallback"]}, {"llama3.1-8b": ["cloud-fallback"]}]
    assert catalog.litellm_default_fallbacks(routes) == ["cloud-fallback"]
    assert catalog.litellm_default_fallbacks({}) is None


def test_models_by_backend():
    assert [m["source"] for m in catalog.models_by_backend(EXAMPLE["gpu_lab_models"], "ollama")] == [
        "llama3.1:8b", "nomic-embed-text"]
    assert [m["name"] for m in catalog.models_by_backend(EXAMPLE["gpu_lab_models"], "vllm")] == ["qwen2.5-7b"]
