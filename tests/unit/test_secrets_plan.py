"""Unit tests of the Secret planning logic (module_utils/lab_secrets.py): pure functions, no API.

Existing Secrets are given as plain dicts, as the module builds them after reading the cluster.
"""

from __future__ import annotations

import base64
import json

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
from ansible_collections.ailab.gpu_lab.plugins.module_utils import lab_secrets as ls

COMPONENTS = {"litellm": True, "litellm_postgres": True, "qdrant": True, "open_webui": True, "grafana": True}
MODELS = [{"name": "claude", "backend": "anthropic", "source": "c", "api_key_env": "ANTHROPIC_API_KEY"}]


def layout(models=MODELS, **kw):
    specs, errors = ds.secret_layout(COMPONENTS, models=models, **kw)
    assert errors == []
    return specs


def by_name(plans):
    return dict((p.spec.name, p) for p in plans)


def existing_from(plans):
    """What the cluster holds after the plans were applied."""
    out = {}
    for plan in plans:
        if plan.action != "skip":
            out[(plan.spec.namespace, plan.spec.name)] = {"data": dict(plan.data), "labels": ls.desired_labels(plan.spec),
                                                          "resourceVersion": "7"}
    return out


def test_first_run_creates_and_generates():
    plans = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-1"}, {}))
    env = plans["litellm-env"]
    assert env.action == "create"
    assert env.generated == ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"] and env.added == ["ANTHROPIC_API_KEY"]
    assert env.data["ANTHROPIC_API_KEY"] == "sk-ant-1" and env.data["LITELLM_MASTER_KEY"].startswith("sk-")
    assert plans["hf-token"].action == "skip"  # no HF_TOKEN in .env
    assert plans["grafana-admin"].data["admin-user"] == "admin"
    assert plans["litellm-postgres"].action == "create"


def test_second_run_changes_nothing_and_keeps_generated_values():
    first = ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-1"}, {})
    cluster = existing_from(first)
    second = ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-1"}, cluster)
    assert [p.action for p in second] == ["none", "none", "none", "skip", "none", "none", "none"]
    for before, after in zip(first, second):
        assert before.data == after.data


def test_env_value_changes_only_that_key():
    cluster = existing_from(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-1"}, {}))
    plan = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-2"}, cluster))["litellm-env"]
    assert plan.action == "update" and plan.updated == ["ANTHROPIC_API_KEY"]
    assert sorted(plan.kept) == ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]
    body = ls.secret_body(plan)
    assert body == {"metadata": {"resourceVersion": "7"},
                    "data": {"ANTHROPIC_API_KEY": base64.b64encode(b"sk-ant-2").decode()}}


def test_operator_value_overrides_generated_then_kept_when_removed_from_env():
    cluster = existing_from(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, {}))
    imposed = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a", "LITELLM_MASTER_KEY": "sk-mine"}, cluster))
    assert imposed["litellm-env"].updated == ["LITELLM_MASTER_KEY"]
    cluster = existing_from(imposed.values())
    again = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, cluster))
    assert again["litellm-env"].action == "none" and again["litellm-env"].data["LITELLM_MASTER_KEY"] == "sk-mine"


def test_empty_generated_value_is_regenerated():
    cluster = existing_from(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, {}))
    cluster[("ai-lab", "qdrant-api-key")]["data"]["QDRANT__SERVICE__API_KEY"] = ""
    plan = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, cluster))["qdrant-api-key"]
    assert plan.action == "update" and plan.generated == ["QDRANT__SERVICE__API_KEY"]
    assert plan.data["QDRANT__SERVICE__API_KEY"] and "QDRANT__SERVICE__API_KEY" in ls.secret_body(plan)["data"]


def test_stale_keys_kept_without_prune_removed_with_prune():
    cluster = existing_from(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a", "HF_TOKEN": "hf_1"}, {}))
    keep = by_name(ls.plan_secrets(layout(models=[]), {}, cluster))
    assert keep["litellm-env"].action == "none" and keep["litellm-env"].stale == ["ANTHROPIC_API_KEY"]
    assert keep["hf-token"].stale == ["HF_TOKEN"] and keep["hf-token"].action == "none"
    pruned = by_name(ls.plan_secrets(layout(models=[]), {}, cluster, prune=True))
    assert pruned["litellm-env"].action == "update" and pruned["litellm-env"].remove == ["ANTHROPIC_API_KEY"]
    assert ls.secret_body(pruned["litellm-env"]) == {"metadata": {"resourceVersion": "7"}, "data": {"ANTHROPIC_API_KEY": None}}
    assert "LITELLM_MASTER_KEY" in pruned["litellm-env"].data  # generated keys are never pruned


def test_foreign_secret_is_adopted_labels_added_values_kept():
    cluster = {("ai-lab", "open-webui-secret"): {"data": {"WEBUI_SECRET_KEY": "handmade"}, "labels": {"team": "x"},
                                                 "resourceVersion": "3"}}
    plan = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, cluster))["open-webui-secret"]
    assert plan.action == "update" and plan.kept == ["WEBUI_SECRET_KEY"] and plan.data["WEBUI_SECRET_KEY"] == "handmade"
    assert ls.secret_body(plan) == {"metadata": {"resourceVersion": "3", "labels": ls.desired_labels(plan.spec)}}


def test_check_mode_does_not_draw_values():
    plans = ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, {}, generate=False)
    assert by_name(plans)["litellm-env"].data["LITELLM_MASTER_KEY"] == ls.TO_GENERATE


def test_redacted_diff_never_holds_values():
    secret_values = {"ANTHROPIC_API_KEY": "sk-ant-very-secret-1", "HF_TOKEN": "hf_very_secret_2"}
    first = ls.plan_secrets(layout(), secret_values, {})
    cluster = existing_from(first)
    changed = ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "sk-ant-very-secret-3"}, cluster, prune=True)
    diff = ls.redacted_diff(changed, cluster)
    text = json.dumps(diff)
    for plan in first:
        for value in plan.data.values():
            if value != "admin":
                assert value not in text
    assert "sk-ant-very-secret-3" not in text
    assert diff["before"]["ai-lab/litellm-env"]["ANTHROPIC_API_KEY"] == ls.REDACTED
    assert diff["after"]["ai-lab/litellm-env"]["ANTHROPIC_API_KEY"] == ls.REDACTED_CHANGED
    assert "HF_TOKEN" in diff["before"]["ai-lab/hf-token"] and diff["after"]["ai-lab/hf-token"] == {}
    new = ls.redacted_diff(first, {})
    assert new["before"] == {} and new["after"]["ai-lab/litellm-env"]["LITELLM_MASTER_KEY"] == "<redacted, new> (generated)"


def test_create_body_is_an_opaque_secret_with_labels():
    plan = by_name(ls.plan_secrets(layout(), {"ANTHROPIC_API_KEY": "a"}, {}))["grafana-admin"]
    body = ls.secret_body(plan)
    assert body["kind"] == "Secret" and body["type"] == "Opaque"
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ailab.gpu_lab"
    assert base64.b64decode(body["data"]["admin-user"]) == b"admin"


def test_grafana_namespace_override():
    specs = layout(grafana_namespace="monitoring")
    assert dict((s.name, s.namespace) for s in specs)["grafana-admin"] == "monitoring"


def test_decode_data_handles_binary():
    data = {"a": base64.b64encode(b"text").decode(), "b": base64.b64encode(b"\xff\xfe").decode(), "c": None}
    decoded = ls.decode_data(data)
    assert decoded["a"] == "text" and decoded["c"] == "" and decoded["b"].encode("utf-8", "surrogateescape") == b"\xff\xfe"


class _Failed(Exception):
    pass


class _StandInModule(object):
    """Just what LabSecrets.validate touches: params, no_log_values, warn, fail_json."""

    def __init__(self, **params):
        self.params = dict({"namespace": "ai-lab", "components": {"litellm": True}, "models": MODELS,
                            "interpolate": True, "example_file": None}, **params)
        self.no_log_values = set()
        self.warnings = []
        self.failure = None

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **kwargs):
        self.failure = kwargs
        raise _Failed()


def test_validate_registers_secret_values_but_not_short_unrelated_ones(tmp_path):
    env = tmp_path / "lab.env"
    env.write_text("DEBUG=1\nANTHROPIC_API_KEY=sk-ant-abc123456\nTAILSCALE_AUTH_KEY=tskey-x\nHF_TOKEN=hf\nbad line\n")
    module = _StandInModule(env_file=str(env))
    try:
        ls.LabSecrets(module).validate()
    except _Failed:
        pass
    assert module.failure["errors"] == [
        "%s:5: cannot parse this line: expected KEY=value (spaces in the key, or a stray word after the key?)" % env]
    assert module.no_log_values == {"sk-ant-abc123456", "tskey-x", "hf"}
    assert module.warnings == ["%s:1: DEBUG is not used by any enabled Secret and is ignored" % env]


def test_gpu_demand_token_is_a_generated_key_of_the_gateway_secret():
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
    specs, errors = ds.secret_layout(dict(COMPONENTS, gpu_demand=True))
    assert errors == []
    gateway = next(s for s in specs if s.name == "litellm-env")
    token = next(k for k in gateway.keys if k.key == "GPU_DEMAND_TOKEN")
    assert token.policy == "env_or_generate" and len(token.generator()) == 48
    specs, _errors = ds.secret_layout(COMPONENTS)   # off by default: no such key
    assert "GPU_DEMAND_TOKEN" not in [k.key for s in specs for k in s.keys]
    _specs, errors = ds.secret_layout({"litellm": False, "gpu_demand": True})
    assert errors == ["gpu_demand is enabled but litellm is not: the on-demand swap service is asked by the gateway; "
                      "enable litellm or disable gpu_demand"]


def test_llama_stack_gets_its_own_generated_gateway_key_and_its_name_is_reserved():
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
    specs, errors = ds.secret_layout(dict(COMPONENTS, llama_stack=True))
    assert errors == []
    secret = next(s for s in specs if s.name == "litellm-key-llama-stack")
    (key,) = secret.keys
    assert (key.key, key.env, key.policy) == ("api-key", "LITELLM_KEY_LLAMA_STACK", "env_or_generate")
    assert key.generator().startswith("sk-")
    specs, _errors = ds.secret_layout(COMPONENTS)   # off by default: no such Secret
    assert "litellm-key-llama-stack" not in [s.name for s in specs]
    _specs, errors = ds.secret_layout(COMPONENTS, litellm_keys=[{"name": "llama-stack"}])
    assert errors == ["litellm_keys: the name llama-stack is Llama Stack's own key: set litellm_llama_stack_key instead"]
