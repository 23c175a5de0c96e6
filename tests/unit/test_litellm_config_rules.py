"""Unit tests of plugins/module_utils/litellm_config.py: every validation rule of issue 3
(data-driven: tests/unit/data/litellm_config_cases.yml), assembly from the catalog, canonical
rendering and the stable checksum. Pure Python, nothing emulated; that these rules prevent
real misbehaviour of the real proxy is shown in tests/functional/test_litellm_proxy.py."""

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as lc
from tests.support.catalog_example import load_example_catalog

DATA = Path(__file__).parent / "data"
CASES = yaml.safe_load((DATA / "litellm_config_cases.yml").read_text())
EXAMPLE = load_example_catalog()
BASE = {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "model_list": [{"model_name": "qwen", "litellm_params": {"model": "hosted_vllm/qwen",
                                                                 "api_base": "http://vllm:8000/v1"}}]}
RULES = ("unknown keys", "provider prefix", "vllm/ vs hosted_vllm/", "self-hosted api_base", "/v1 on ollama",
         "/v1 missing on vllm", "duplicates", "routing_strategy", "fallbacks unknown", "literal secrets",
         "master key", "embedding mode", "provided env")


def _config(case):
    if case.get("raw"):
        return copy.deepcopy(case["config"])
    config = copy.deepcopy(BASE)
    for key, value in case["config"].items():
        if key == "model_list" and not case.get("raw_models"):
            config["model_list"] = value
        elif isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_rule_case(case):
    config = _config(case)
    options = case.get("options") or {}
    if case.get("ok"):
        result = lc.build(config, **options)
        expect = case["expect"]
        assert result["config"] == expect["config"]
        assert yaml.safe_load(result["content"]) == expect["config"], result["content"]
        assert (result["models"], result["env"]) == (expect["models"], expect["env"])
        assert result["checksum"] == hashlib.sha256(result["content"].encode()).hexdigest()
        return
    with pytest.raises(lc.ConfigError) as info:
        lc.build(config, **options)
    message = str(info.value)
    for expected in case["errors"]:
        assert expected in message, "%r not in:\n%s" % (expected, message)


def test_every_rule_has_a_rejecting_case():
    covered = set(c["rule"] for c in CASES if not c.get("ok"))
    assert set(RULES) <= covered, set(RULES) - covered


def test_catalog_assembly_merges_config_and_catalog():
    config = {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
              "router_settings": {"num_retries": 1, "fallbacks": [{"extra": ["llama3.1-8b"]}]},
              "model_list": [{"model_name": "extra", "litellm_params": {"model": "openai/gpt-4o",
                                                                        "api_key": "os.environ/OPENAI_API_KEY"}}]}
    routes = dict(EXAMPLE["gpu_lab_routes"], default=["cloud-fallback"])
    result = lc.build(config, models=EXAMPLE["gpu_lab_models"], routes=routes, namespace="lab",
                      provided_env=["LITELLM_MASTER_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
    assert result["models"] == ["extra", "qwen2.5-7b", "llama3.1-8b", "nomic-embed", "cloud-fallback"]
    router = result["config"]["router_settings"]
    assert router["fallbacks"] == [{"extra": ["llama3.1-8b"]}, {"qwen2.5-7b": ["llama3.1-8b", "cloud-fallback"]},
                                   {"llama3.1-8b": ["cloud-fallback"]}]
    assert router["default_fallbacks"] == ["cloud-fallback"] and router["num_retries"] == 1
    assert result["env"] == ["ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY", "OPENAI_API_KEY"]
    assert config["router_settings"]["fallbacks"] == [{"extra": ["llama3.1-8b"]}], "input must not be mutated"


def test_rendering_is_canonical_and_checksum_stable():
    one = lc.build({"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
                    "litellm_settings": {"callbacks": ["prometheus"], "drop_params": True}},
                   models=EXAMPLE["gpu_lab_models"])
    # same config, keys given in another order
    two = lc.build({"litellm_settings": {"drop_params": True, "callbacks": ["prometheus"]},
                    "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}},
                   models=[dict(reversed(list(m.items()))) for m in EXAMPLE["gpu_lab_models"]])
    assert one["content"] == two["content"] and one["checksum"] == two["checksum"]
    assert len(one["checksum"]) == 64
    assert yaml.safe_load(one["content"]) == one["config"]
    three = lc.build({"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
                      "litellm_settings": {"callbacks": ["prometheus"], "drop_params": False}},
                     models=EXAMPLE["gpu_lab_models"])
    assert three["checksum"] != one["checksum"]


def _string_leaves(node, path=""):
    """{dotted path: value} of every string in a parsed config (the test's own walk, not the module's)."""
    if isinstance(node, dict):
        items = ((f"{path}.{key}".lstrip("."), value) for key, value in node.items())
        return {k: v for sub, value in items for k, v in _string_leaves(value, sub).items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in _string_leaves(value, f"{path}[{i}]").items()}
    return {path: node} if isinstance(node, str) else {}


def test_rendered_config_carries_secrets_only_as_env_references():
    """The example lab's secret-bearing fields, listed by hand: each is rendered as the os.environ/
    reference (never a resolved value), and nothing else in the text is one."""
    result = lc.build({"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY",
                                            "database_url": "os.environ/DATABASE_URL"}},
                      models=EXAMPLE["gpu_lab_models"])
    leaves = _string_leaves(yaml.safe_load(result["content"]))
    refs = {path: value for path, value in leaves.items() if value.startswith("os.environ/")}
    assert refs == {"general_settings.master_key": "os.environ/LITELLM_MASTER_KEY",
                    "general_settings.database_url": "os.environ/DATABASE_URL",
                    "model_list[3].litellm_params.api_key": "os.environ/ANTHROPIC_API_KEY"}
    assert result["content"].count("os.environ/") == 3
    assert leaves["model_list[3].model_name"] == "cloud-fallback"
    assert not [p for p in leaves if p.endswith(("api_key", "master_key", "password", "token")) and p not in refs]


def test_env_references():
    assert lc.env_references({"a": ["os.environ/X", {"b": "os.environ/Y"}], "c": "os.environ/X"}) == ["X", "Y"]
