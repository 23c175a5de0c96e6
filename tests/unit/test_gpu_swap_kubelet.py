"""gpu_swap's reading of what a kubelet reports, and the parts of the transaction that are pure functions.

The pod statuses below are written in the shape the kubelet writes them (pkg/kubelet/kubelet_pods.go
``generateAPIPodStatus``, pkg/kubelet/kuberuntime/kuberuntime_container.go); the functional tests
(tests/functional/test_gpu_swap_failures.py) get the same statuses from the kwok stages on the real control plane.
"""

from __future__ import annotations

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs


def pod(name="vllm-1", phase="Running", statuses=None, reason=None, message=None, **spec):
    status = {"phase": phase, "containerStatuses": statuses or []}
    if reason:
        status.update(reason=reason, message=message)
    return {"metadata": {"name": name, "namespace": "ai-lab"}, "spec": spec, "status": status}


def container(waiting=None, last=None, restarts=0, message=None):
    cs = {"name": "vllm", "restartCount": restarts, "state": {"running": {}} if not waiting else
          {"waiting": {"reason": waiting, "message": message}}}
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


@pytest.mark.parametrize("reason", gs.FAIL_FAST_WAITING)
def test_every_hopeless_waiting_reason_ends_the_wait_naming_it(reason):
    found = gs.pod_failure(pod(statuses=[container(waiting=reason, message="the kubelet says why")]))
    assert reason in found and "the kubelet says why" in found and "vllm-1" in found


@pytest.mark.parametrize("waiting", ["ContainerCreating", "PodInitializing"])
def test_waiting_while_starting_is_not_a_failure(waiting):
    assert gs.pod_failure(pod(phase="Pending", statuses=[container(waiting=waiting)])) is None


def test_oom_kill_and_restarts_carry_the_last_exit_and_its_message():
    oom = gs.pod_failure(pod(statuses=[container(last={"exitCode": 137, "reason": "OOMKilled"}, restarts=1)]))
    assert "OOM-killed" in oom and "137" in oom
    crashed = gs.pod_failure(pod(statuses=[container(
        last={"exitCode": 1, "reason": "Error", "message": "torch.OutOfMemoryError: CUDA out of memory\n"}, restarts=2)]))
    assert "restarted 2 time(s)" in crashed and "CUDA out of memory" in crashed
    back_off = gs.pod_failure(pod(statuses=[container(waiting="CrashLoopBackOff", restarts=1,
                                                      message="back-off 10s restarting failed container=vllm",
                                                      last={"exitCode": 1, "reason": "Error", "message": "boom"})]))
    assert back_off.startswith("container vllm of pod vllm-1: CrashLoopBackOff: back-off 10s") and "boom" in back_off


def test_a_failed_pod_is_a_failure_and_terminal():
    failed = pod(phase="Failed", reason="UnexpectedAdmissionError", message="Allocate failed due to requested number "
                 "of devices unavailable for nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected")
    assert "UnexpectedAdmissionError" in gs.pod_failure(failed) and gs.pod_terminal(failed)
    assert gs.describe_failed(failed).startswith("vllm-1 (UnexpectedAdmissionError: Allocate failed")
    assert gs.pod_terminal(pod(phase="Succeeded")) and not gs.pod_terminal(pod())
    assert gs.pod_failure(pod()) is None


def test_the_load_budget_is_read_from_the_startup_probe_with_the_api_defaults():
    def dep(probe):
        return {"spec": {"template": {"spec": {"containers": [{"name": "sidecar"},
                                                              {"name": "vllm", "startupProbe": probe}]}}}}
    assert gs.probe_budget(dep({"periodSeconds": 10, "failureThreshold": 90}), "vllm") == 900
    assert gs.probe_budget(dep({"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 10}), "vllm") == 25
    assert gs.probe_budget(dep({"httpGet": {"path": "/health"}}), "vllm") == 30  # defaults: 3 x 10 s
    assert gs.probe_budget(dep(None), "vllm") is None and gs.probe_budget(None) is None


NODE = {"metadata": {"name": "gpu-box", "labels": {"nvidia.com/gpu.present": "true", "kubernetes.io/hostname": "gpu-box",
                                                   "gpu.memory": "24"}},
        "spec": {"taints": [{"key": "gpu", "value": "only", "effect": "NoSchedule"}]}}
TOLERATE = [{"key": "gpu", "operator": "Equal", "value": "only", "effect": "NoSchedule"}]


def affinity(*expressions, fields=()):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": list(expressions), "matchFields": list(fields)}]}}}


@pytest.mark.parametrize("spec, fits", [
    ({"tolerations": TOLERATE}, True),
    ({}, False),  # the node's NoSchedule taint
    ({"tolerations": [{"operator": "Exists"}]}, True),
    ({"tolerations": TOLERATE, "nodeSelector": {"nvidia.com/gpu.present": "true"}}, True),
    ({"tolerations": TOLERATE, "nodeSelector": {"kubernetes.io/hostname": "other"}}, False),
    ({"tolerations": TOLERATE, "affinity": affinity({"key": "gpu.memory", "operator": "Gt", "values": ["16"]})}, True),
    ({"tolerations": TOLERATE, "affinity": affinity({"key": "gpu.memory", "operator": "Lt", "values": ["16"]})}, False),
    ({"tolerations": TOLERATE, "affinity": affinity({"key": "gpu.kind", "operator": "DoesNotExist"})}, True),
    ({"tolerations": TOLERATE, "affinity": affinity({"key": "gpu.kind", "operator": "Exists"})}, False),
    ({"tolerations": TOLERATE, "affinity": affinity(fields=[{"key": "metadata.name", "operator": "In",
                                                             "values": ["gpu-box"]}])}, True),
    ({"tolerations": TOLERATE, "affinity": affinity(fields=[{"key": "metadata.name", "operator": "NotIn",
                                                             "values": ["gpu-box"]}])}, False),
])
def test_a_pending_pod_fits_the_node_as_the_scheduler_would_decide(spec, fits):
    assert gs.pod_fits_node({"spec": spec}, NODE) is fits


def test_a_cordoned_node_fits_only_pods_that_tolerate_it():
    cordoned = dict(NODE, spec={"unschedulable": True})
    assert not gs.pod_fits_node({"spec": {}}, cordoned)
    assert gs.pod_fits_node({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable",
                                                       "operator": "Exists"}]}}, cordoned)


def gpu_pod(name, namespace="notebooks", node=None, phase="Pending", **spec):
    spec = dict(spec, containers=[{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}])
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": {"phase": phase}}


def test_gpu_claimants_are_other_holders_and_waiting_pods_that_fit():
    pods = [gpu_pod("jupyter", tolerations=TOLERATE),                                   # waits, fits: named
            gpu_pod("elsewhere", nodeSelector={"kubernetes.io/hostname": "other"}),     # waits for another node
            gpu_pod("no-toleration"),                                                   # cannot land on gpu-box
            gpu_pod("holder", namespace="games", node="gpu-box", phase="Running"),      # holds it: named
            gpu_pod("evicted", node="gpu-box", phase="Failed"),                         # terminal: not counted
            gpu_pod("ollama-1", namespace="ai-lab", node="gpu-box", phase="Running")]   # the lab's own backend
    found = gs.gpu_claimants(pods, NODE, "nvidia.com/gpu", lambda p: p["metadata"]["name"].startswith("ollama"))
    assert found == [("notebooks/jupyter is Pending for nvidia.com/gpu and fits node gpu-box", 1),
                     ("games/holder holds nvidia.com/gpu on gpu-box", 1)]


def deployment(args, model, selector):
    return {"metadata": {"annotations": {gs.MODEL_ANNOTATION: model}},
            "spec": {"template": {"metadata": {"annotations": {gs.MODEL_ANNOTATION: model}},
                                  "spec": {"nodeSelector": selector,
                                           "containers": [{"name": "vllm", "args": args}]}}}}


def test_restore_ops_put_back_args_model_and_node_pin_and_nothing_when_equal():
    before = deployment(["--model", "A"], "a", {"nvidia.com/gpu.present": "true"})
    after = deployment(["--model", "B"], "b", {"kubernetes.io/hostname": "gpu-box-2"})
    snap = gs.template_snapshot(before, "vllm")
    assert gs.restore_ops(before, snap) == []
    ops = gs.restore_ops(after, snap)
    assert {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "vllm"} == ops[0]
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": ["--model", "A"]} in ops
    assert {"op": "replace", "path": "/metadata/annotations/ailab.gpu-lab~1model", "value": "a"} in ops
    assert {"op": "replace", "path": "/spec/template/metadata/annotations/ailab.gpu-lab~1model", "value": "a"} in ops
    assert {"op": "replace", "path": "/spec/template/spec/nodeSelector", "value": {"nvidia.com/gpu.present": "true"}} in ops


def test_restore_data_tolerates_a_hand_edited_record():
    assert gs.restore_data('{"vllm": {"args": []}}') == {"vllm": {"args": []}}
    assert gs.restore_data("not json") == {} and gs.restore_data("[1]") == {} and gs.restore_data(None) == {}


def test_every_request_the_swap_makes_has_its_rbac_rule_and_no_rule_is_unused():
    assert set(gs._RBAC) == set(gs._ROUTES)  # pylint: disable=protected-access
    cluster, lab = gs.rbac_rules({"ollama": "ollama", "vllm": "vllm"}, "litellm-env")
    granted = [(tuple(r["apiGroups"]), tuple(r["resources"]), verb, cl) for cl, rules in ((True, cluster), (False, lab))
               for r in rules for verb in r["verbs"]]
    for route, (group, resource, verb, cluster_wide) in gs._RBAC.items():  # pylint: disable=protected-access
        assert ((group,), (resource,), verb, cluster_wide) in granted, route
    assert len(granted) == len(set(gs._RBAC.values()))  # pylint: disable=protected-access
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["litellm-env"]} in lab
    assert all(r["verbs"] == ["list"] for r in cluster)  # cluster-wide: reads only


def test_the_transition_table_follows_the_phases():
    recorded = [phase for _step, _froms, phases in gs.TRANSITIONS for phase in phases]
    assert recorded == list(gs.PHASES)
    steps = [step for step, _froms, _phases in gs.TRANSITIONS]
    assert steps == ["begin", "stop", "start", "rollback"]
    for (_s, _f, phases), (_s2, froms, _p) in zip(gs.TRANSITIONS, gs.TRANSITIONS[1:3]):
        assert phases[-1] in froms  # each step starts from the phase the one before it ends in


class _OneDeployment:
    """Only what Swap.ready_timeout reads: a Deployment by name (as the API server returns it)."""

    namespace = "ai-lab"
    api_retries = 0
    host = "https://test"

    def __init__(self, dep):
        self.dep = dep

    def deployment(self, name, missing_ok=False):
        return self.dep


@pytest.mark.parametrize("probe, setting, expected", [
    ({"initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 90}, 0, 30 + 900 + gs.READY_MARGIN),
    ({"periodSeconds": 10, "failureThreshold": 30}, 0, 300 + gs.READY_MARGIN),
    (None, 0, gs.DEFAULT_READY_TIMEOUT),
    ({"periodSeconds": 10, "failureThreshold": 30}, 45, 45),  # gpu_swap_ready_timeout set: it wins
])
def test_the_ready_wait_is_the_targets_startup_probe_budget_plus_the_margin(probe, setting, expected):
    container = {"name": "vllm"}
    if probe:
        container["startupProbe"] = probe
    dep = {"spec": {"template": {"spec": {"containers": [container]}}}}
    swap = gs.Swap(_OneDeployment(dep), {"ready_timeout": setting, "vllm_container": "vllm"})
    assert swap.ready_timeout("vllm") == expected


def _role_task_names():
    import pathlib  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    path = pathlib.Path(__file__).resolve().parents[2] / "roles/gpu_swap/tasks/state_swap.yml"

    def walk(tasks):
        for task in tasks or []:
            yield task.get("name", "")
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key))
    return list(walk(yaml.safe_load(path.read_text())))


def test_the_role_runs_its_tasks_in_the_sequence_order():
    names = _role_task_names()
    positions = [next((i for i, n in enumerate(names) if n.startswith(row["task"])), None) for row in gs.SEQUENCE]
    assert None not in positions, [row["task"] for row, pos in zip(gs.SEQUENCE, positions) if pos is None]
    assert positions == sorted(positions)


def test_the_docs_sequence_table_follows_the_sequence():
    import pathlib  # pylint: disable=import-outside-toplevel
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs/gpu_swap.md").read_text()
    table = text.split("## The sequence", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    phases = [" -> ".join(row["records"]) for row in gs.SEQUENCE]
    documented = [[cell.replace("`", "").strip().split(" -> (cleared)")[0] for cell in row] for row in rows]
    assert [d[-1] for d in documented] == phases, documented
    assert [("controller" if "controller" in d[1] else "GPU host") for d in documented] == \
        [row["where"] for row in gs.SEQUENCE]


def test_recovery_completes_only_what_the_start_step_records_last():
    assert [gs.recovery_action({"intent_phase": p}) for p in gs.PHASES] == \
        ["rollback"] * 5 + ["complete", "rollback"]
