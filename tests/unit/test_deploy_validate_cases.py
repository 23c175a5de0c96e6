"""The deploy playbook's early check, data-driven (tests/unit/data/deploy_cases.yml): every input a later role
would refuse -- the ingress address, the monitoring and network policy rules, the roles' argument specs, the
LiteLLM config, an explicit vllm_model, a Qdrant collection whose vector_size is not its embedding model's
dimension -- is refused by validate_deploy, all problems at once, each naming the variable and the fix.
Pure Python (plugins/module_utils/deploy.py), nothing emulated; the expected messages are written by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.filter.deploy import FilterModule
from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy
from tests.support.catalog_example import load_example_catalog

CASES = yaml.safe_load((Path(__file__).parent / "data" / "deploy_cases.yml").read_text())
EXAMPLE = load_example_catalog()
FILTERS = FilterModule().filters()
COMPONENTS = ["gpu_runtime", "qdrant", "litellm", "ollama", "vllm", "open_webui", "observability", "ingress",
              "network_policy", "tracing", "llama_stack"]
# Valid values of each role's own rule (as the roles' _<role>_checked_inputs give them).
ROLE_INPUTS = {
    "ingress": {"ingress_tailnet_ip": "100.101.102.103", "ingress_hostname": "gpu-box.tail1234.ts.net",
                "ingress_tls_source": "tailscale", "ingress_tls_cert_file": "", "ingress_tls_key_file": ""},
    "monitoring": {"monitoring_alert_gpu_memory_ratio": 0.97, "monitoring_alert_gateway_error_ratio": 0.05,
                   "monitoring_alert_fallback_ratio": 0.2, "monitoring_alert_disk_free_ratio": 0.1,
                   "monitoring_dashboards": ["gpu", "vllm", "gateway"], "monitoring_prometheus_route_prefix": "/",
                   "_monitoring_known_dashboards": ["gpu", "vllm", "gateway"]},
    "network_policy": {"network_policy_internet_except": ["10.0.0.0/8", "100.64.0.0/10"]},
    "searxng": {"searxng_settings": {}},
    "vllm": {"vllm_sleep_mode": False, "vllm_sleep_host_memory": "16Gi", "gpu_runtime_time_slicing_replicas": 0},
    "llama_stack": {"llama_stack_qdrant_enabled": False,
                    "llama_stack_image": "docker.io/llamastack/distribution-remote-vllm:0.2.12"},
}
BASE = {
    "components": dict((c, c != "tracing") for c in COMPONENTS), "known_components": COMPONENTS,
    "models": EXAMPLE["gpu_lab_models"], "routes": EXAMPLE["gpu_lab_routes"], "gpu_owner": "ollama",
    "namespace": "ai-lab", "sizes": {"qdrant_storage_size": "20Gi"}, "backup_tiers": {"qdrant_backup_tier": "gfs"},
    "qdrant_collections": [{"name": "docs", "vector_size": 768, "distance": "Cosine"}],
    "embedding_model": "nomic-embed", "render": False, "vllm_model": "", "role_inputs": ROLE_INPUTS,
    "role_components": {"monitoring": "observability", "phoenix": "tracing"}, "role_specs": [],
    "litellm": {"config": {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}},
                "provided_env": ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]},
}


def _inputs(over):
    """BASE with a case's keys: components and role_inputs are merged, models_extra / models_replace edit the
    catalog (a null field is removed), every other key replaces BASE's."""
    inputs = copy.deepcopy(BASE)
    over = copy.deepcopy(over)
    inputs["components"].update(over.pop("components", {}))
    for role, values in over.pop("role_inputs", {}).items():
        inputs["role_inputs"][role].update(values)
    inputs["models"] = inputs["models"] + over.pop("models_extra", [])
    for name, fields in over.pop("models_replace", {}).items():
        entry = next(m for m in inputs["models"] if m["name"] == name)
        entry.update(fields)
        for field in [f for f, v in fields.items() if v is None]:
            del entry[field]
    inputs.update(over)
    return inputs


def _check(case, run, error_type):
    if case.get("ok"):
        run()
        return
    with pytest.raises(error_type) as info:
        run()
    message = str(info.value)
    for expected in case["errors"]:
        assert expected in message, "%r not in:\n%s" % (expected, message)
    if "count" in case:
        assert len(info.value.errors) == case["count"], info.value.errors


@pytest.mark.parametrize("case", CASES["validate_deploy"], ids=[c["id"] for c in CASES["validate_deploy"]])
def test_validate_deploy_case(case):
    _check(case, lambda: deploy.validate_deploy(_inputs(case["inputs"])), deploy.DeployError)


@pytest.mark.parametrize("case", CASES["role_input_errors"], ids=[c["id"] for c in CASES["role_input_errors"]])
def test_role_input_rule_case(case):
    values = dict(ROLE_INPUTS[case["role"]], **case["values"])
    errors = FILTERS["deploy_input_errors"](values, case["role"])
    if not case["errors"]:
        assert errors == []
    for expected in case["errors"]:
        assert any(expected in e for e in errors), "%r not in %r" % (expected, errors)


def test_unknown_role_has_no_rule():
    with pytest.raises(ValueError, match="no input rule for role 'qdrant'; roles with one: ingress, llama_stack, monitoring"):
        deploy.role_input_errors("qdrant", {})
