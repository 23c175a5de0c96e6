"""The fast path's decisions (vLLM sleep mode) as plain functions: when a hand-over may move the VRAM instead of the
pods, and reading vLLM's request gauges from its /metrics text. Real: the module_utils code; the metrics text is
vLLM's exposition format (names and labels of vllm/v1/metrics/loggers.py, tests/functional/data/metric_names.yml).
The HTTP side is tested against the vLLM stand-in and the real control plane in
tests/functional/test_gpu_swap_sleep_mode.py."""

from __future__ import annotations

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs

VLLM = {"owner": "vllm", "model": "qwen2.5-7b"}
OLLAMA = {"owner": "ollama", "model": ""}
NONE = {"owner": "none", "model": ""}


def vllm_dep(sleep_mode=True, replicas=1, model="qwen2.5-7b"):
    annotations = {gs.MODEL_ANNOTATION: model}
    if sleep_mode:
        annotations[gs.SLEEP_ANNOTATION] = "level1"
    return {"metadata": {"name": "vllm", "annotations": annotations}, "spec": {"replicas": replicas}}


@pytest.mark.parametrize("current, target, dep, slots, asleep, blocker", [
    (VLLM, OLLAMA, vllm_dep(), 2, "", None),
    (OLLAMA, VLLM, vllm_dep(), 2, "level1", None),
    (OLLAMA, VLLM, vllm_dep(), 4, "level1", None),
    (VLLM, NONE, vllm_dep(), 2, "", "only a hand-over between vllm and ollama"),            # a game stops vLLM
    (OLLAMA, NONE, vllm_dep(), 2, "level1", "only a hand-over between vllm and ollama"),
    ({"owner": "vllm", "model": "a"}, {"owner": "vllm", "model": "b"}, vllm_dep(), 2, "", "only a hand-over"),
    (VLLM, OLLAMA, vllm_dep(sleep_mode=False), 2, "", "no ailab.gpu-lab/sleep-mode annotation"),
    (VLLM, OLLAMA, None, 2, "", "no ailab.gpu-lab/sleep-mode annotation"),
    (VLLM, OLLAMA, vllm_dep(), 1, "", "the node has 1 slot(s)"),
    (OLLAMA, VLLM, vllm_dep(), 2, "", "vLLM is not sleeping"),                               # stopped: started
    (OLLAMA, VLLM, vllm_dep(replicas=0), 2, "level1", "vLLM is not sleeping"),
    (OLLAMA, {"owner": "vllm", "model": "mistral-7b"}, vllm_dep(), 2, "level1",
     "the sleeping vLLM serves qwen2.5-7b, not mistral-7b"),
])
def test_fast_path_blocker(current, target, dep, slots, asleep, blocker):
    found = gs.fast_path_blocker(current, target, dep, slots, asleep)
    if blocker is None:
        assert found is None
    else:
        assert found is not None and blocker in found, found


METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen2.5-7b"} 2.0
vllm:num_requests_running{engine="1",model_name="qwen2.5-7b"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen2.5-7b"} 0.0
# TYPE vllm:num_requests_running_extra gauge
vllm:num_requests_running_extra 7
process_open_fds 12.0
"""


def test_metric_value_sums_every_engine_and_only_the_named_metric():
    assert gs.metric_value(METRICS, "vllm:num_requests_running") == 3.0
    assert gs.metric_value(METRICS, "vllm:num_requests_waiting") == 0.0
    assert gs.metric_value(METRICS, "process_open_fds") == 12.0
    assert gs.metric_value(METRICS, "vllm:engine_sleep_state") is None  # absent is not 0: the drain refuses it
    assert gs.metric_value("", "vllm:num_requests_running") is None


def test_the_fast_path_is_recorded_in_the_intent_and_cleared_with_it():
    assert "intent_path" in gs.INTENT_KEYS  # commit and rollback remove every intent key in the owner's write
    assert gs.recovery_action({"intent_phase": "stopped", "intent_path": gs.FAST_PATH}) == "rollback"


def test_the_swap_may_relabel_pods_and_nothing_more_than_before():
    cluster_rules, lab_rules = gs.rbac_rules({"ollama": "ollama", "vllm": "vllm"}, "litellm-env")
    pods = [r for r in lab_rules if r["resources"] == ["pods"]]
    assert pods == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "patch"]}]


def test_the_docs_fast_path_table_follows_the_sequence():
    """docs/gpu_swap.md "Fast path: vLLM sleep mode" lists each SEQUENCE step's fast-path work, in order."""
    import pathlib  # pylint: disable=import-outside-toplevel
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs/gpu_swap.md").read_text()
    section = text.split("## Fast path: vLLM sleep mode", 1)[1]
    table = [line for line in section.split("| step | vllm -> ollama | ollama -> vllm |", 1)[1].split("\n\n", 1)[0]
             .splitlines() if line.startswith("| ") and not line.startswith("|---")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table]
    assert rows == [[row["step"], row["fast"][0] or "", row["fast"][1] or ""] for row in gs.SEQUENCE]
