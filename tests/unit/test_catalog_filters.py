"""Unit tests of plugins/filter/catalog.py: every filter is registered, documented beside the
plugin, returns the module_utils derivation, and turns catalog errors into AnsibleFilterError.
(The filters also run through a real ansible-playbook in tests/functional/test_litellm_module.py.)"""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.filter.catalog import FilterModule
from tests.support.catalog_example import load_example_catalog

DATA = Path(__file__).parent / "data"
EXAMPLE = load_example_catalog()
FILTERS = FilterModule().filters()
PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "filter"


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_documented(name):
    doc = yaml.safe_load((PLUGIN_DIR / (name + ".yml")).read_text())
    assert doc["DOCUMENTATION"]["name"] == name
    assert "_value" in doc["RETURN"] and name in doc["EXAMPLES"]


def test_filters_derive_from_the_catalog():
    models, routes = EXAMPLE["gpu_lab_models"], EXAMPLE["gpu_lab_routes"]
    assert FILTERS["catalog_served_name"](models, "qwen2.5-7b") == "qwen2.5-7b"
    assert FILTERS["catalog_env_names"](models) == ["ANTHROPIC_API_KEY"]
    assert FILTERS["catalog_env_refs"](models) == {"ANTHROPIC_API_KEY": "os.environ/ANTHROPIC_API_KEY"}
    assert FILTERS["catalog_litellm_fallbacks"](routes, models)[0] == {"qwen2.5-7b": ["llama3.1-8b", "cloud-fallback"]}
    model_list = FILTERS["catalog_litellm_model_list"](models, namespace="x")
    assert model_list[0]["litellm_params"]["api_base"] == "http://vllm.x.svc.cluster.local:8000/v1"
    assert FILTERS["catalog_vllm_args"](models, "qwen2.5-7b")[:2] == ["--model", "Qwen/Qwen2.5-7B-Instruct-AWQ"]
    assert [m["name"] for m in FILTERS["catalog_backend_models"](models, "ollama")] == ["llama3.1-8b", "nomic-embed"]
    assert FILTERS["catalog_validate"](models, routes)[0]["mode"] == "chat"


def test_filter_errors_are_ansible_filter_errors():
    with pytest.raises(AnsibleFilterError, match=r"gpu_lab_models\[0\] \(name 'x'\): field 'backend'"):
        FILTERS["catalog_litellm_model_list"]([{"name": "x", "backend": "olama", "source": "x:1"}])
    with pytest.raises(AnsibleFilterError, match="fallback 'nope' is not an alias"):
        FILTERS["catalog_litellm_fallbacks"]({"qwen2.5-7b": ["nope"]}, EXAMPLE["gpu_lab_models"])
