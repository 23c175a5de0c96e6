"""Unit tests of plugins/module_utils/gpu_demand.py's pure parts: the alias table derived from the catalog, the
decision a request gets from the record (residency, gaming, a swap in progress, embeddings), the fallback chosen,
the policy checks, and that the service runs every step of gpu_swap.SEQUENCE. Nothing emulated; the service itself
is tested against the real control plane and the real LiteLLM proxy (tests/functional/test_gpu_demand.py)."""

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_demand as gd
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs
from tests.support.catalog_example import load_example_catalog

CATALOG = load_example_catalog()
MODELS = [dict(m, on_demand=True) if m["name"] in ("qwen2.5-7b", "llama3.1-8b") else dict(m)
          for m in CATALOG["gpu_lab_models"]]
TABLE = gd.alias_table(MODELS, CATALOG["gpu_lab_routes"])
POLICY = dict(gd.POLICY_DEFAULTS, residency=300)
NOW = gs.parse_time("2026-12-05T12:00:00Z")


def record(owner="ollama", model="", since="2026-12-05T11:00:00Z", **extra):
    data = {"owner": owner, "model": model, "node": "gpu-box", "owner_since": since}
    data.update(extra)
    return data


def test_alias_table_from_the_catalog():
    assert TABLE["qwen2.5-7b"] == {"target": "vllm:qwen2.5-7b", "embedding": False, "on_demand": True,
                                   "fallbacks": ["llama3.1-8b", "cloud-fallback"]}
    assert TABLE["llama3.1-8b"]["target"] == "ollama" and TABLE["llama3.1-8b"]["fallbacks"] == ["cloud-fallback"]
    assert TABLE["nomic-embed"]["embedding"] and not TABLE["nomic-embed"]["on_demand"]
    assert TABLE["cloud-fallback"]["target"] is None
    # on_demand defaults to off: today's behaviour stays
    assert not gd.alias_table(CATALOG["gpu_lab_models"], CATALOG["gpu_lab_routes"])["qwen2.5-7b"]["on_demand"]


@pytest.mark.parametrize("alias,data,expected", [
    ("nomic-embed", record(), ("serve", "never hands the GPU over")),
    ("cloud-fallback", record(), ("serve", "hosted model")),
    ("unknown", record(), ("serve", "not an alias")),
    ("llama3.1-8b", record(), ("serve", "ollama holds the GPU")),
    ("qwen2.5-7b", record(), ("swap", "ollama -> vllm:qwen2.5-7b")),
    ("qwen2.5-7b", record(since="2026-12-05T11:58:00Z"), ("refuse", "minimum residency of 300s")),
    ("qwen2.5-7b", record(owner="none", since="2026-12-05T11:59:59Z"), ("swap", "none -> vllm:qwen2.5-7b")),
    ("qwen2.5-7b", record(owner="vllm", model="other"), ("swap", "vllm:other -> vllm:qwen2.5-7b")),
    ("qwen2.5-7b", record(gaming="on", gaming_at="2026-12-05T11:30:00Z"), ("refuse", "gaming mode holds the GPU")),
    ("qwen2.5-7b", record(intent_phase="stopping", intent_from="ollama", intent_to="none", intent_holder="ctl/1/x"),
     ("refuse", "a swap ollama -> none (holder ctl/1/x) is in progress")),
    ("llama3.1-8b", record(owner="ollama", intent_phase="begun"), ("refuse", "is in progress")),
])
def test_decide(alias, data, expected):
    action, reason, _retry = gd.decide(TABLE[alias] if alias in TABLE else None, data, NOW, POLICY)
    assert action == expected[0] and expected[1] in reason, (action, reason)


def test_decide_residency_retry_after_and_an_alias_that_is_not_on_demand():
    _action, _reason, retry = gd.decide(TABLE["qwen2.5-7b"], record(since="2026-12-05T11:58:00Z"), NOW, POLICY)
    assert retry == 181   # 300 s from 11:58:00, at 12:00:00
    off = dict(TABLE["qwen2.5-7b"], on_demand=False)
    assert gd.decide(off, record(), NOW, POLICY)[0] == "refuse"
    # the service's own hand-over to this very target is joined, one to another target refuses
    assert gd.decide(TABLE["qwen2.5-7b"], record(), NOW, POLICY, busy="vllm:qwen2.5-7b")[0] == "swap"
    assert gd.decide(TABLE["qwen2.5-7b"], record(), NOW, POLICY, busy="ollama")[0] == "refuse"


def test_the_fallback_is_one_that_answers_without_a_hand_over():
    # vLLM's alias while Ollama holds the GPU: its first fallback (Ollama's alias) answers
    assert gd.servable_fallback(TABLE, TABLE["qwen2.5-7b"], record()) == "llama3.1-8b"
    # while nobody holds it (a game): the hosted one
    assert gd.servable_fallback(TABLE, TABLE["qwen2.5-7b"], record(owner="none")) == "cloud-fallback"
    assert gd.servable_fallback(TABLE, dict(TABLE["qwen2.5-7b"], fallbacks=["llama3.1-8b"]), record(owner="none")) \
        is None


def test_the_service_runs_every_step_of_the_swap_sequence():
    steps = [row["step"] for row in gs.SEQUENCE]
    assert set(gd.STEPS) == set(steps) - {"begin", "rollback"}, "a step of gpu_swap.SEQUENCE the service skips"


def test_policy_and_config_errors_name_the_variable():
    with pytest.raises(gd.DemandError) as info:
        gd.service_config(MODELS, CATALOG["gpu_lab_routes"], "ai-lab", {}, policy={"idle_owner": "olama",
                                                                                   "residency": -1})
    message = str(info.value)
    assert "gpu_demand_idle_owner: gpu_owner='olama' is not a swap target (did you mean 'ollama'?)" in message
    assert "gpu_demand_residency: -1 is not a number of seconds >= 0" in message


def test_config_holds_nothing_secret_and_the_gateway_gets_the_hook():
    config = gd.service_config(MODELS, CATALOG["gpu_lab_routes"], "ai-lab", {"ollama": "http://ollama:11434"})
    assert gd.TOKEN_KEY not in str(config) and "sk-" not in str(config)
    assert config["swap"]["models"] == MODELS and config["policy"] == gd.POLICY_DEFAULTS
    settings = gd.gateway_litellm_settings({"callbacks": ["otel"], "drop_params": True})
    assert settings == {"callbacks": ["otel", gd.HOOK_CALLBACK], "drop_params": True}
    assert gd.gateway_litellm_settings(settings) == settings


def test_role_defaults_are_the_service_defaults():
    """The role's policy variables and the service's POLICY_DEFAULTS are one fact: a change to one fails here."""
    import yaml
    from pathlib import Path
    role = Path(__file__).resolve().parents[2] / "roles" / "gpu_demand"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    assert dict((k, defaults["gpu_demand_" + k]) for k in gd.POLICY_DEFAULTS) == gd.POLICY_DEFAULTS
    assert defaults["gpu_demand_host_reserved_mib"] == gd.HOST_DEFAULTS["reserved_mib"]
    assert defaults["gpu_demand_host_timeout"] == gd.HOST_DEFAULTS["timeout"]
    assert defaults["gpu_demand_host_sleep_residual_mib"] == gd.HOST_DEFAULTS["sleep_residual_mib"]
    # ...and the playbook's swap allows the same on the host (roles/gpu_swap): one policy, two drivers
    swap = yaml.safe_load((role.parent / "gpu_swap" / "defaults" / "main.yml").read_text())
    assert (swap["gpu_swap_host_reserved_mib"], swap["gpu_swap_host_timeout"], swap["gpu_swap_sleep_residual_mib"]) == (
        gd.HOST_DEFAULTS["reserved_mib"], gd.HOST_DEFAULTS["timeout"], gd.HOST_DEFAULTS["sleep_residual_mib"])


def test_the_pod_mounts_exactly_the_modules_the_service_imports():
    """roles/gpu_demand/vars/main.yml _gpu_demand_modules == the import closure of module_utils/gpu_demand.py (a
    module missing there fails the pod at start, one too many is dead weight in the ConfigMap)."""
    import ast
    import yaml
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    prefix = "ansible_collections.ailab.gpu_lab.plugins.module_utils"
    seen, todo = set(), ["gpu_demand"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((repo / "plugins" / "module_utils" / (name + ".py")).read_text())
        todo += [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == prefix
                 for alias in node.names]
    listed = yaml.safe_load((repo / "roles" / "gpu_demand" / "vars" / "main.yml").read_text())["_gpu_demand_modules"]
    assert sorted(listed) == sorted(seen)
    server = ast.parse((repo / "roles" / "gpu_demand" / "files" / "gpu_demand_server.py").read_text())
    used = set(alias.name for node in ast.walk(server) if isinstance(node, ast.ImportFrom) and node.module == prefix
               for alias in node.names)
    assert used and used <= seen, "the server imports a module_utils the pod does not mount: %s" % (used - seen)
