"""Unit tests of plugins/module_utils/gpu_capacity.py (pure functions, no server; the nvidia-smi
side of collect() runs tests/support/nvidia_smi_fake.py, a script standing in for nvidia-smi)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_capacity as gc
from tests.support.nvidia_smi_fake import APP_ARGS, GPU_ARGS, write_fake_nvidia_smi

DATA = pathlib.Path(__file__).parent / "data"
SMI_CASES = yaml.safe_load((DATA / "nvidia_smi_cases.yml").read_text())
SMI_FAILURES = yaml.safe_load((DATA / "nvidia_smi_failures.yml").read_text())


def _node(name, gpus=1, resource="nvidia.com/gpu", ready=True):
    cap = {"cpu": "8"}
    if gpus is not None:
        cap[resource] = str(gpus)
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true"}},
            "status": {"capacity": cap, "allocatable": dict(cap),
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _pod(name, node=None, gpus=1, phase="Running", terminating=False, owner=("ReplicaSet", "ollama-abc"), ns="ai-lab",
         resource="nvidia.com/gpu", where="limits"):
    meta = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if terminating:
        meta["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    spec = {"containers": [{"name": "c", "resources": {where: {resource: str(gpus)}} if gpus else {}}]}
    if node:
        spec["nodeName"] = node
    status = {"phase": phase}
    if not node:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]
    return {"metadata": meta, "spec": spec, "status": status}


RS = [{"metadata": {"name": "ollama-abc", "namespace": "ai-lab",
                    "ownerReferences": [{"kind": "Deployment", "name": "ollama", "controller": True}]}}]


@pytest.mark.parametrize("text,expected", [("1", 1), ("0", 0), ("", 0), (None, 0), ("2k", 2000), ("1Ki", 1024)])
def test_parse_quantity(text, expected):
    assert gc.parse_quantity(text) == expected


def test_parse_quantity_rejects_fractions():
    with pytest.raises(ValueError, match="whole numbers"):
        gc.parse_quantity("500m")


def test_pod_request_counts_limits_requests_and_init_containers():
    pod = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}},
                                   {"resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}],
                    "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "3"}}}]}}
    assert gc.pod_request(pod, "nvidia.com/gpu") == 3
    pod["spec"]["initContainers"] = []
    assert gc.pod_request(pod, "nvidia.com/gpu") == 2
    assert gc.pod_request(pod, "nvidia.com/gpu.shared") == 0


def test_summarize_running_terminating_pending_and_owner():
    nodes = [_node("a"), _node("b", gpus=2)]
    pods = [
        _pod("ollama-abc-1", node="a", terminating=True),
        _pod("vllm-0", node="b", owner=("StatefulSet", "vllm")),
        _pod("loose", node="b", owner=None),
        _pod("waiting", node=None, phase="Pending"),
        _pod("done", node="a", phase="Succeeded"),
        _pod("cpu-only", node="a", gpus=0),
    ]
    report = gc.summarize(nodes, pods, replicasets=RS)
    a, b = report["nodes"]
    assert (a["requested"], a["free"]) == (1, 0)
    assert a["holders"] == [{"namespace": "ai-lab", "name": "ollama-abc-1", "phase": "Running", "terminating": True,
                             "workload": {"kind": "Deployment", "name": "ollama"}, "amount": 1}]
    assert (b["allocatable"], b["requested"], b["free"]) == (2, 2, 0)
    assert [h["workload"] for h in b["holders"]] == [{"kind": "Pod", "name": "loose"}, {"kind": "StatefulSet", "name": "vllm"}]
    assert report["totals"] == {"capacity": 3, "allocatable": 3, "requested": 3, "free": 0}
    assert [(p["name"], p["reason"]) for p in report["pending"]] == [("waiting", "Unschedulable")]


def test_summarize_time_sliced_resource_name():
    nodes = [_node("a", gpus=4, resource="nvidia.com/gpu.shared")]
    pods = [_pod("p", node="a", resource="nvidia.com/gpu.shared")]
    plain = gc.summarize(nodes, pods)
    assert plain["advertised"] is False and plain["nodes"][0]["free"] == 0
    shared = gc.summarize(nodes, pods, resource="nvidia.com/gpu.shared")
    assert shared["nodes"][0]["free"] == 3


def test_unknown_node_names_the_known_ones():
    with pytest.raises(gc.CapacityError, match=r"node 'nope' not found; the cluster has: a, b"):
        gc.summarize([_node("a"), _node("b")], [], node="nope")


def test_check_free_names_holders_and_terminating_hint():
    report = gc.summarize([_node("a")], [_pod("ollama-abc-1", node="a", terminating=True)], replicasets=RS)
    msg = gc.check_free(report, 1, "a")
    assert "1 nvidia.com/gpu required free on node a" in msg
    assert "ai-lab/ollama-abc-1 (Deployment ollama, Terminating, 1)" in msg
    assert "Terminating pods still count" in msg
    assert gc.check_free(gc.summarize([_node("a")], []), 1, "a") is None
    assert gc.check_free(report, None) is None


def test_check_free_on_any_node_and_not_ready_node():
    report = gc.summarize([_node("a"), _node("b", ready=False)], [_pod("x", node="a")])
    msg = gc.check_free(report, 1)
    assert "on any node" in msg and "b: 1 of 1 free (node NotReady)" in msg


def test_not_advertised_says_device_plugin_and_lists_resources():
    report = gc.summarize([_node("a", gpus=2, resource="nvidia.com/gpu.shared"), _node("b", gpus=None)], [])
    msg = gc.check_free(report, 1)
    assert "no node advertises nvidia.com/gpu" in msg and "device plugin" in msg
    assert "nvidia.com/gpu.shared" in msg and "resource_name" in msg


def _subset(actual, expected):
    if isinstance(expected, dict):
        return all(_subset(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(_subset(a, e) for a, e in zip(actual, expected))
    return actual == expected


@pytest.mark.parametrize("case", SMI_CASES, ids=[c["id"] for c in SMI_CASES])
def test_nvidia_smi_parsing(case):
    host = gc.host_view(gc.parse_gpus(case["gpus"]), gc.parse_apps(case["apps"]))
    assert _subset(host["gpus"], case["expect"]), host["gpus"]


@pytest.mark.parametrize("case", SMI_FAILURES, ids=[c["id"] for c in SMI_FAILURES])
def test_nvidia_smi_failures(case):
    msg = gc.nvidia_smi_failure(case["rc"], case.get("stdout", ""), case.get("stderr", ""), "nvidia-smi")
    assert case["expect"] in msg


def test_nvidia_smi_success_is_not_a_failure():
    assert gc.nvidia_smi_failure(0, "0, GPU-x, n, 1, 1, 0, 0, 550", "", "nvidia-smi") is None


def test_nvidia_smi_malformed_line():
    with pytest.raises(gc.CapacityError, match="expected 8 fields"):
        gc.parse_gpus("0, GPU-x, only three\n")


def _run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_every_case_names_its_layout():
    assert {c["id"]: c.get("format") in ("csv", "csv,noheader,nounits") for c in SMI_CASES} == {
        c["id"]: True for c in SMI_CASES}


@pytest.mark.parametrize("case", [c for c in SMI_CASES if c["format"] == "csv,noheader,nounits"],
                         ids=lambda c: c["id"])
def test_collect_asks_nvidia_smi_the_exact_query(case, tmp_path):
    """The fake answers only the exact field lists and format (else exit 2): a wrong field, order or
    missing noheader,nounits in the module's query fails here."""
    smi = write_fake_nvidia_smi(tmp_path, case)
    report, failure = gc.collect({"sources": ["nvidia-smi"], "nvidia_smi_path": smi}, run_command=_run)
    assert failure is None and _subset(report["host"]["gpus"], case["expect"]), report


def test_fake_nvidia_smi_refuses_every_other_query(tmp_path):
    smi = write_fake_nvidia_smi(tmp_path, next(c for c in SMI_CASES if c["id"] == "driver-550-rtx4090-idle"))
    assert _run([smi, *GPU_ARGS])[:2] == (0, "0, GPU-5d3cbe57-0a8f-3b1e-77c2-9e4b1f08a6d2, NVIDIA GeForce RTX 4090, "
                                             "24564, 1, 24143, 0, 550.54.14\n")
    assert _run([smi, *APP_ARGS])[:2] == (0, "")
    swapped = GPU_ARGS[0].replace("memory.used,memory.free", "memory.free,memory.used")
    for argv in ([GPU_ARGS[0], "--format=csv"], [GPU_ARGS[0], "--format=csv,noheader"], [GPU_ARGS[0]],
                 [swapped, GPU_ARGS[1]], [GPU_ARGS[0] + ",name", GPU_ARGS[1]], [GPU_ARGS[1], GPU_ARGS[0]],
                 [APP_ARGS[0].replace("used_memory", "used_gpu_memory"), APP_ARGS[1]], [*GPU_ARGS, "-i", "0"]):
        rc, _out, err = _run([smi, *argv])
        assert rc == 2 and "unexpected arguments" in err, argv
    with pytest.raises(ValueError, match="never asks"):
        write_fake_nvidia_smi(tmp_path, next(c for c in SMI_CASES if c["format"] == "csv"))


def test_check_host_free_names_processes_and_unattributed_memory():
    case = next(c for c in SMI_CASES if c["id"] == "driver-550-game-running-invisible-to-compute-apps")
    host = gc.host_view(gc.parse_gpus(case["gpus"]), gc.parse_apps(case["apps"]))
    msg = gc.check_host_free(host, 20000)
    assert "14930 MiB free of 24564 MiB" in msg and "graphics clients such as a game" in msg and "9213 MiB" in msg
    assert gc.check_host_free(host, 10000) is None
    assert "no GPU visible" in gc.check_host_free({"gpus": []}, 1)


def test_collect_waits_on_condition_not_on_time():
    """The wait loop polls until the requirement holds, and gives up at the deadline."""
    states = [[_pod("old", node="a", terminating=True)], [_pod("old", node="a", terminating=True)], []]
    calls = {"pods": 0}
    now = {"t": 0.0}

    def kube_list(api, method, action, **kwargs):
        if method == "list_node":
            return {"items": [_node("a")]}
        if method == "list_pod_for_all_namespaces":
            calls["pods"] += 1
            return {"items": states[min(calls["pods"] - 1, len(states) - 1)]}
        return {"items": []}

    def sleep(seconds):
        now["t"] += seconds

    params = {"require_free": 1, "node": "a", "wait_timeout": 60, "wait_sleep": 2}
    report, failure = gc.collect(params, kube_list=kube_list, sleep=sleep, clock=lambda: now["t"])
    assert failure is None and calls["pods"] == 3 and now["t"] == 4
    states[:] = [[_pod("stuck", node="a")]]
    calls["pods"] = 0
    report, failure = gc.collect(dict(params, wait_timeout=5), kube_list=kube_list, sleep=sleep, clock=lambda: now["t"])
    assert "stuck" in failure and "after waiting 5s" in failure and report["nodes"][0]["free"] == 0
