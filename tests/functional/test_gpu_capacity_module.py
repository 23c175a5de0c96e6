"""gpu_capacity through real Ansible against the real Kubernetes control plane.

Real: Ansible, the module and its argument spec, the collection's client (module_utils/kube_client.py), kube-apiserver,
the Deployment/ReplicaSet controllers and kube-scheduler (which binds GPU pods, leaves a second
one Pending as Unschedulable, and keeps counting a Terminating pod's GPU until it is terminal or
deleted).
Emulated: the kubelet (kwok marks pods Running/Ready; a deleted pod is reported terminal after the
``kwok.ailab.test/delete-delay`` annotation, then removed; the finalizer ailab.test/hold keeps it
Terminating and running until the test removes it: tests/support/kubelet_knobs.py), and, for the
host view, nvidia-smi (tests/support/nvidia_smi_fake.py: answers only the module's exact queries
with a hand-written case).
"""

from __future__ import annotations

import pathlib
import threading

import yaml

from tests.support.ansible_run import run_module
from tests.support.controlplane import DEFAULT_NODE, gpu_node
from tests.support.kubelet_knobs import HOLD_FINALIZER
from tests.support.nvidia_smi_fake import write_fake_nvidia_smi
from tests.support.serve import free_port

SMI_CASES = {c["id"]: c for c in yaml.safe_load((pathlib.Path(__file__).parents[1] / "unit/data/nvidia_smi_cases.yml").read_text())}


def gpu_deployment(name, gpus=1, resource="nvidia.com/gpu", node_selector=None, annotations=None):
    spec = {"containers": [{"name": name, "image": f"example/{name}", "resources": {"limits": {resource: gpus}}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                                  "spec": spec}}}


def capacity(kube, **args):
    return run_module("ailab.gpu_lab.gpu_capacity", dict({"kubeconfig": kube.kubeconfig}, **args))


def test_reports_holder_then_requirement_fails_naming_it(kube):
    kube.apply(gpu_deployment("ollama"))
    kube.wait_for(lambda: kube.pods("app=ollama", running=True), what="ollama Running")
    result, _ = capacity(kube)
    assert not result.get("failed") and result["changed"] is False
    node = result["nodes"][0]
    assert (node["name"], node["capacity"], node["allocatable"], node["requested"], node["free"]) == (DEFAULT_NODE, 1, 1, 1, 0)
    holder = node["holders"][0]
    assert holder["workload"] == {"kind": "Deployment", "name": "ollama"} and holder["phase"] == "Running"
    assert holder["terminating"] is False and holder["amount"] == 1 and holder["name"].startswith("ollama-")
    result, _ = capacity(kube, node=DEFAULT_NODE, require_free=1)
    assert result["failed"] is True
    assert f"1 nvidia.com/gpu required free on node {DEFAULT_NODE}" in result["msg"]
    assert f"{kube.namespace}/{holder['name']} (Deployment ollama, Running, 1)" in result["msg"]


def test_pending_pod_is_reported_with_scheduler_reason(kube):
    kube.apply(gpu_deployment("ollama"))
    kube.wait_for(lambda: kube.pods("app=ollama", running=True), what="ollama Running")
    kube.apply(gpu_deployment("vllm"))

    def unschedulable():
        return [p for p in kube.pods("app=vllm") for c in (p["status"].get("conditions") or [])
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"]
    kube.wait_for(unschedulable, what="the real scheduler to mark the second GPU pod Unschedulable")
    result, _ = capacity(kube)
    assert result["totals"]["requested"] == 1 and result["totals"]["free"] == 0
    assert len(result["pending"]) == 1
    pending = result["pending"][0]
    assert pending["reason"] == "Unschedulable" and pending["workload"] == {"kind": "Deployment", "name": "vllm"}


HOLD = HOLD_FINALIZER  # the API server keeps the object and the test kubelet keeps the pod running until it is removed


def _set_finalizers(kube, name, finalizers):
    kube.client.resources.get(api_version="v1", kind="Pod").patch(
        name=name, namespace=kube.namespace, body={"metadata": {"finalizers": finalizers}},
        content_type="application/merge-patch+json")


def test_terminating_pod_counts_until_deleted_and_wait_timeout_waits_for_it(kube):
    # The test holds the pod Terminating, not terminal, with the hold finalizer (the test kubelet does not
    # stop a pod carrying it), so neither module run races the deletion, however slow the machine.
    kube.apply(gpu_deployment("ollama"))
    pod = kube.wait_for(lambda: kube.pods("app=ollama", running=True), what="ollama Running")[0]
    name = pod["metadata"]["name"]
    _set_finalizers(kube, name, [HOLD])
    kube.delete("Deployment", "ollama", api_version="apps/v1")
    kube.wait_for(lambda: (kube.get("Pod", name) or {}).get("metadata", {}).get("deletionTimestamp"),
                  what="the pod to be Terminating")
    result, _ = capacity(kube, node=DEFAULT_NODE, require_free=1)
    assert result["failed"] is True and "Terminating" in result["msg"] and "Terminating pods still count" in result["msg"]
    assert result["looks"] == 1

    # Released 30 s after the waiting call starts: it must have looked while the pod was there, then
    # kept polling until kwok reported the pod terminal (and then removed it).
    release = threading.Timer(30, _set_finalizers, (kube, name, None))
    release.start()
    try:
        result, _ = capacity(kube, node=DEFAULT_NODE, require_free=1, wait_timeout=180, wait_sleep=1)
    finally:
        release.cancel()
        if kube.get("Pod", name):
            _set_finalizers(kube, name, None)
    assert not result.get("failed"), result.get("msg")
    assert result["looks"] > 1 and result["waited_seconds"] > 0, "it never saw the Terminating pod: nothing was waited for"
    assert result["nodes"][0]["free"] == 1 and result["nodes"][0]["holders"] == []
    kube.wait_for(lambda: kube.get("Pod", name) is None, what="the terminal pod removed")


def test_several_nodes_and_time_sliced_resource(kube):
    kube.add_node(gpu_node("box-a", gpus=4, resource="nvidia.com/gpu.shared", labels={"lab/box": "a"}))
    kube.add_node(gpu_node("box-b", gpus=1, labels={"lab/box": "b"}))
    for i in range(3):
        kube.apply(gpu_deployment(f"shared-{i}", resource="nvidia.com/gpu.shared", node_selector={"lab/box": "a"}))
    kube.apply(gpu_deployment("whole", node_selector={"lab/box": "b"}))
    kube.wait_for(lambda: len(kube.pods(running=True)) == 4, what="4 pods Running")
    shared, _ = capacity(kube, resource_name="nvidia.com/gpu.shared", require_free=1)
    assert not shared.get("failed"), shared.get("msg")
    by_name = {n["name"]: n for n in shared["nodes"]}
    assert (by_name["box-a"]["allocatable"], by_name["box-a"]["requested"], by_name["box-a"]["free"]) == (4, 3, 1)
    assert by_name["box-b"]["advertised"] is False and shared["totals"]["free"] == 1
    whole, _ = capacity(kube, node="box-b")
    assert [n["name"] for n in whole["nodes"]] == ["box-b"] and whole["nodes"][0]["free"] == 0
    assert whole["nodes"][0]["holders"][0]["workload"]["name"] == "whole"
    failed, _ = capacity(kube, node="box-b", require_free=1)
    assert failed["failed"] and "whole" in failed["msg"]


def test_device_plugin_missing_is_named(kube):
    # No node advertises the time-sliced resource: what a cluster without a (renaming) device plugin shows.
    warned, _ = capacity(kube, resource_name="nvidia.com/gpu.shared")
    assert not warned.get("failed") and warned["advertised"] is False
    assert any("device plugin" in w for w in warned.get("warnings", []))
    failed, _ = capacity(kube, resource_name="nvidia.com/gpu.shared", require_free=1)
    assert failed["failed"] and "no node advertises nvidia.com/gpu.shared" in failed["msg"]
    assert "device plugin" in failed["msg"]


def test_unknown_node(kube):
    result, _ = capacity(kube, node="gpu-node-9")
    assert result["failed"] and f"node 'gpu-node-9' not found; the cluster has: {DEFAULT_NODE}" in result["msg"]


def test_bad_credentials_say_401_and_what_to_do(kube, tmp_path):
    wrong = kube.write_kubeconfig(str(tmp_path / "wrong"), token="not-the-token")
    result, out = run_module("ailab.gpu_lab.gpu_capacity", {"kubeconfig": wrong})
    assert result["failed"] and "401 Unauthorized" in result["msg"] and "re-run the provision playbook" in result["msg"]
    assert "not-the-token" not in out


def test_unreachable_api(kube, tmp_path):
    port = free_port()
    cfg = yaml.safe_load(pathlib.Path(kube.kubeconfig).read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "closed"
    path.write_text(yaml.safe_dump(cfg))
    result, _ = run_module("ailab.gpu_lab.gpu_capacity", {"kubeconfig": str(path), "api_retry_timeout": 2})
    assert result["failed"] and f"127.0.0.1:{port} is unreachable" in result["msg"]
    assert "retried for 2s" in result["msg"]  # connection refused is waited out, as a restarting apiserver is


def test_missing_kubeconfig_file(tmp_path):
    result, _ = run_module("ailab.gpu_lab.gpu_capacity", {"kubeconfig": str(tmp_path / "nope.yaml")})
    assert result["failed"] and "does not exist" in result["msg"] and "provision" in result["msg"]


def test_check_mode_runs_the_same(kube):
    result, _ = run_module("ailab.gpu_lab.gpu_capacity", {"kubeconfig": kube.kubeconfig}, check=True)
    assert not result.get("failed") and result["changed"] is False and result["totals"]["free"] == 1


def test_host_view_reports_a_game_kubernetes_cannot_see(tmp_path):
    smi = write_fake_nvidia_smi(tmp_path, SMI_CASES["driver-550-game-running-invisible-to-compute-apps"])
    result, _ = run_module("ailab.gpu_lab.gpu_capacity", {"sources": ["nvidia-smi"], "nvidia_smi_path": smi})
    gpu = result["host"]["gpus"][0]
    assert gpu["memory_used_mib"] == 9213 and gpu["unattributed_memory_mib"] == 9213 and gpu["processes"] == []
    failed, _ = run_module("ailab.gpu_lab.gpu_capacity", {"sources": ["nvidia-smi"], "nvidia_smi_path": smi,
                                                           "require_host_free_mib": 20000})
    assert failed["failed"] and "graphics clients such as a game" in failed["msg"]


def test_no_nvidia_smi_on_host_is_a_clear_error(tmp_path):
    result, _ = run_module("ailab.gpu_lab.gpu_capacity", {"sources": ["nvidia-smi"], "nvidia_smi_path": str(tmp_path / "nvidia-smi")})
    assert result["failed"] and "not found on this host" in result["msg"]
