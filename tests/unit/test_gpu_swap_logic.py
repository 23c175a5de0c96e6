"""gpu_swap's decisions as plain functions: targets, readiness, lease expiry, vLLM args, recovery.

Real: the module_utils code and the example catalog (inventory/example). Nothing is emulated:
these functions take API objects as dicts and return decisions; the cluster-facing parts are
tested against the real control plane in tests/functional/test_gpu_swap_playbook.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs
from tests.support.catalog_example import load_example_catalog

MODELS = load_example_catalog()["gpu_lab_models"]
SECOND = dict(MODELS[0], name="mistral-7b", source="mistralai/Mistral-7B-Instruct-v0.3",
              revision="e0bc86c23ce5aae1db576c8cca6f06f1f73af2db", vllm_args={"max_model_len": 4096})
TWO_VLLM = MODELS + [SECOND]


@pytest.mark.parametrize("text, current, expected", [
    ("none", None, {"owner": "none", "model": ""}),
    ("ollama", None, {"owner": "ollama", "model": ""}),
    ("vllm", None, {"owner": "vllm", "model": "qwen2.5-7b"}),
    ("vllm", {"owner": "vllm", "model": "mistral-7b"}, {"owner": "vllm", "model": "mistral-7b"}),
    ("vllm:mistral-7b", {"owner": "vllm", "model": "qwen2.5-7b"}, {"owner": "vllm", "model": "mistral-7b"}),
    (" vllm:qwen2.5-7b ", None, {"owner": "vllm", "model": "qwen2.5-7b"}),
])
def test_valid_targets(text, current, expected):
    assert gs.parse_target(text, TWO_VLLM, current) == expected


def test_bare_vllm_takes_the_configured_default_when_vllm_serves_nothing():
    assert gs.parse_target("vllm", TWO_VLLM, {"owner": "ollama", "model": ""}, "mistral-7b")["model"] == "mistral-7b"


@pytest.mark.parametrize("text, fragments", [
    ("vllm:qwen2.5-7", ["'qwen2.5-7' is not a vllm model of the catalog", "did you mean 'qwen2.5-7b'",
                        "Valid targets: status, none, ollama, vllm, vllm:qwen2.5-7b, vllm:mistral-7b"]),
    ("vllm:llama3.1-8b", ["'llama3.1-8b' is a ollama model: for Ollama models swap to ollama"]),
    ("olama", ["gpu_owner='olama' is not a swap target", "did you mean 'ollama'"]),
    ("ollama:llama3.1-8b", ["is not a swap target"]),
    ("vllm:", ["is not a swap target"]),
    ("", ["gpu_owner='' is not a swap target"]),
])
def test_invalid_targets_list_the_valid_ones(text, fragments):
    with pytest.raises(gs.SwapError) as err:
        gs.parse_target(text, TWO_VLLM)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_catalog_without_vllm_or_ollama_models():
    ollama_only = [m for m in MODELS if m["backend"] != "vllm"]
    with pytest.raises(gs.SwapError, match="has no backend: vllm model. Valid targets: status, none, ollama$"):
        gs.parse_target("vllm", ollama_only)
    vllm_only = [m for m in MODELS if m["backend"] != "ollama"]
    with pytest.raises(gs.SwapError, match="has no backend: ollama model"):
        gs.parse_target("ollama", vllm_only)


def test_broken_catalog_is_reported_before_any_target_check():
    with pytest.raises(gs.SwapError, match="(?s)the catalog is invalid.*revision"):
        gs.parse_target("vllm", [dict(MODELS[0], revision="main")])


def test_target_names_round_trip():
    for text in ("none", "ollama", "vllm:qwen2.5-7b"):
        assert gs.target_name(gs.parse_owner_text(text)) == text


def test_probe_alias_is_the_target_alias():
    assert gs.probe_alias(MODELS, {"owner": "vllm", "model": "qwen2.5-7b"}) == "qwen2.5-7b"
    assert gs.probe_alias(MODELS, {"owner": "ollama", "model": ""}) == "llama3.1-8b"  # first chat model, not the embedder
    assert gs.probe_alias(MODELS, {"owner": "ollama", "model": ""}, "nomic-embed") == "nomic-embed"
    assert gs.probe_alias(MODELS, {"owner": "none", "model": ""}) is None


def test_node_choice():
    assert gs.choose_node(None, None, None, ["gpu-box"]) == "gpu-box"
    assert gs.choose_node(None, None, "box-b", ["box-a", "box-b"]) == "box-b"
    assert gs.choose_node(None, "box-a", "box-b", ["box-a", "box-b"]) == "box-a"
    assert gs.choose_node("box-b", "box-a", None, ["box-a", "box-b"]) == "box-b"
    with pytest.raises(gs.SwapError, match=r"several nodes have a GPU \(box-a, box-b\).*gpu_swap_node"):
        gs.choose_node(None, None, None, ["box-a", "box-b"])
    with pytest.raises(gs.SwapError, match="node 'box-c' does not advertise a GPU; GPU nodes: box-a"):
        gs.choose_node("box-c", None, None, ["box-a"])
    with pytest.raises(gs.SwapError, match="no node advertises a GPU"):
        gs.choose_node(None, None, None, [])


def _dep(generation=2, observed=2, replicas=1, ready=1, updated=1):
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": updated}}


def _pod(ready=True, terminating=False, name="vllm-1"):
    meta = {"name": name}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    return {"metadata": meta, "status": {"phase": "Running",
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize("dep, pods, ready", [
    (_dep(), [_pod()], True),
    (_dep(observed=1), [_pod()], False),                       # the controller has not seen the scale-up yet
    (_dep(ready=0), [_pod(ready=False)], False),
    (_dep(), [_pod(ready=False)], False),                      # status lags the pod: trust the pod too
    (_dep(), [_pod(), _pod(terminating=True, name="old")], False),  # an old pod still Terminating
    (_dep(), [], False),
])
def test_deployment_ready(dep, pods, ready):
    assert gs.deployment_ready(dep, pods) is ready


def test_describe_pods_names_the_scheduler_reason():
    pending = {"metadata": {"name": "vllm-x"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}}
    text = gs.describe_pods([pending, _pod(terminating=True, name="ollama-y")])
    assert "vllm-x Pending, PodScheduled=False (Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.)" in text
    assert "ollama-y Terminating" in text
    assert gs.describe_pods([]) == "no pods"


def test_lease_expiry():
    now = gs.parse_time("2026-12-01T11:00:30.000000Z")
    lease = {"spec": {"holderIdentity": "ctl/1/ab", "leaseDurationSeconds": 60, "renewTime": "2026-12-01T11:00:00.000000Z"}}
    assert gs.lease_state(lease, now) == {"holder": "ctl/1/ab", "expires_in": 30.0, "free": False,
                                          "renewed_at": "2026-12-01T11:00:00.000000Z"}
    assert gs.lease_state(lease, now + 31)["free"] is True
    assert gs.lease_state({"spec": {"holderIdentity": None}}, now)["free"] is True
    assert gs.lease_state(None, now)["free"] is True


def test_micro_time_round_trip():
    stamp = 1796122144.25
    assert gs.parse_time(gs.micro_time(stamp)) == stamp
    assert gs.micro_time(stamp).endswith(".250000Z")


def test_vllm_args_swap_keeps_the_deploy_roles_own_arguments():
    qwen = gs.cat.vllm_args(TWO_VLLM, "qwen2.5-7b")
    mistral = gs.cat.vllm_args(TWO_VLLM, "mistral-7b")
    current = ["--port", "8000"] + qwen + ["--download-dir", "/models/hub"]
    assert gs.replace_vllm_args(current, qwen, mistral) == ["--port", "8000"] + mistral + ["--download-dir", "/models/hub"]
    # Old model unknown (edited by hand): the catalog's flags are replaced, the others kept after them.
    edited = ["--model", "x/y", "--max-model-len", "99", "--port", "8000"]
    assert gs.replace_vllm_args(edited, [], mistral) == mistral + ["--port", "8000"]
    assert gs.replace_vllm_args([], [], mistral) == mistral


@pytest.mark.parametrize("phase, action", [
    (None, None), ("begun", "rollback"), ("stopping", "rollback"), ("stopped", "rollback"),
    ("starting", "rollback"), ("verifying", "rollback"), ("rolling_back", "rollback"), ("committing", "complete"),
])
def test_recovery_action_per_phase(phase, action):
    data = {"owner": "ollama", "intent_from": "ollama", "intent_to": "vllm:qwen2.5-7b"}
    if phase:
        data["intent_phase"] = phase
    assert gs.recovery_action(data) == action


def test_recorded_owner():
    assert gs.owner_of({}) is None
    assert gs.owner_of({"owner": "vllm", "model": "qwen2.5-7b"}) == {"owner": "vllm", "model": "qwen2.5-7b"}
    assert gs.owner_of({"owner": "ollama", "model": "stale"}) == {"owner": "ollama", "model": ""}


def test_phase_line():
    assert gs.phase_line({"name": "wait for Ready", "seconds": 5.214, "waited": 5.02}) == \
        "wait for Ready: 5.21 s (5.02 s waiting)"
    assert gs.phase_line({"name": "scale", "seconds": 0.1, "waited": 0.0}) == "scale: 0.10 s"
