"""GPU admission and restarts against the REAL kubelet: an opt-in hollow GPU node (tests/support/hollow_node.py).

Real in every test: the kubelet's code (kubemark's hollow kubelet is pkg/kubelet: pod workers, admission, the status
manager, node status) with the kubelet's real device manager (pkg/kubelet/cm/devicemanager: plugin registration,
capacity from ListAndWatch, Allocate, its checkpoint ``kubelet_internal_checkpoint``), the deviceplugin/v1beta1 gRPC
API between them, and kube-apiserver, the ReplicaSet/Deployment controllers and kube-scheduler.
Emulated: the container runtime (the fake CRI of k8s.io/cri-client: containers are records, they start and stop at
once, nothing runs; ``crash_container`` marks one exited), the NVIDIA device plugin (a fake one advertising
``GPU-fake-0000``, ... on the real API), probes (the hollow kubelet's probe manager makes every container Ready at
once) and cAdvisor. The hollow kubelet records no Events (kubemark's fake recorder).

Timing: the kubelet reports a restart's admission result about 10 s after it starts (its status-reporting delay);
every wait is on a condition with a generous timeout (the machine is shared), no duration is asserted.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.gpu_swap_lab import Lab

GPU = "nvidia.com/gpu"
ADMISSION = ("Pod was rejected: Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. "
             "Requested: 1, Available: 0, which is unexpected")
NO_HEALTHY = ("Pod was rejected: Allocate failed due to no healthy devices present; cannot allocate unhealthy devices "
              "nvidia.com/gpu, which is unexpected")
WAIT = 180  # seconds: generous, the machine is shared with other builds and a second pytest worker


@pytest.fixture
def hollow_gpu_node(control_plane, tmp_path):
    """Start hollow GPU nodes for this test (``node = hollow_gpu_node(gpus=1)``); all stopped (Node deleted) at
    teardown, before the ``kube`` fixture deletes the namespace (tests list ``kube`` first)."""
    nodes = []

    def start(gpus=1):
        name = f"hollow-gpu-{uuid.uuid4().hex[:6]}"
        nodes.append(control_plane.add_hollow_gpu_node(name, str(tmp_path / f"hollow-{len(nodes)}"), gpus=gpus))
        return nodes[-1]
    yield start
    for node in nodes:
        node.stop()


def gpu_pod(name, node, gpus=1):
    """A bare pod asking for ``gpus`` nvidia.com/gpu, placed on ``node`` by the scheduler (node selector)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node.name}, "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "main", "image": "example.invalid/vllm:1",
                                     "resources": {"limits": {GPU: gpus}}}]}}


def gpu_deployment(name, node):
    """A Recreate Deployment of one GPU pod on ``node`` (as the deploy roles make the GPU backends)."""
    template = gpu_pod(name, node)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": template["metadata"], "spec": template["spec"]}}}


def status(kube, name):
    return (kube.get("Pod", name) or {}).get("status") or {}


def ready(pod):
    """Running and Ready (the hollow kubelet's fake probe manager can report Ready while the pod is still Pending)."""
    pod_status = pod.get("status") or {}
    return not pod["metadata"].get("deletionTimestamp") and pod_status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod_status.get("conditions") or [])


def wait_pod_ready(kube, name):
    def pod():
        current = kube.get("Pod", name)
        return current if current and ready(current) else None
    return kube.wait_for(pod, timeout=WAIT, what=f"pod {name} Running and Ready")


def wait_failed(kube, name):
    kube.wait_for(lambda: status(kube, name).get("phase") == "Failed", timeout=WAIT, what=f"pod {name} Failed")
    return status(kube, name)


def ready_pods(kube, selector):
    return [p for p in kube.pods(label_selector=selector) if ready(p)]


def kubelet_restart_under(kube, node, selector):
    """While the kubelet is down (runtime and device plugin keep running), the Deployment's running GPU pod is
    force-deleted (``kubectl delete --force``, as an operator does while a node's kubelet is down); the ReplicaSet's
    replacement is bound to the same node (its GPU looks free to the scheduler). Returns (old pod, replacement) names."""
    old = kube.pods(label_selector=selector)[0]["metadata"]["name"]
    bound = []

    def while_down():
        kube.delete("Pod", old, grace_period_seconds=0)

        def replacement():
            bound[:] = [p["metadata"]["name"] for p in kube.pods(label_selector=selector)
                        if p["metadata"]["name"] != old and p["spec"].get("nodeName") == node.name]
            return bound
        kube.wait_for(replacement, timeout=WAIT, what="the ReplicaSet's replacement bound to the hollow node")
    node.restart_kubelet(while_down=while_down)
    return old, bound[0]


# ------------------------------------------------------------------ capacity and allocation
def test_gpu_capacity_is_discovered_from_the_device_plugin_and_allocated_across_a_kubelet_restart(kube, hollow_gpu_node):
    """Real: the kubelet takes nvidia.com/gpu from the plugin's ListAndWatch (it is told no number), its device
    manager calls the plugin's Allocate for a GPU pod and checkpoints the assignment; after a kubelet-only restart the
    running pod is kept (no new Allocate) and the checkpoint makes the next pod get the OTHER device.
    Emulated: the plugin (2 fake devices), the runtime (nothing runs), Ready (at once)."""
    node = hollow_gpu_node(gpus=2)
    info = node.node()["status"]
    assert info["capacity"][GPU] == "2" and info["allocatable"][GPU] == "2"
    assert info["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    assert info["nodeInfo"]["containerRuntimeVersion"].startswith("fakeRuntime://")

    kube.apply(gpu_pod("vllm-a", node))
    first = wait_pod_ready(kube, "vllm-a")
    assert first["spec"]["nodeName"] == node.name and first["status"]["phase"] == "Running"
    assert node.allocations() in (["[GPU-fake-0000]"], ["[GPU-fake-0001]"]), node.allocations()
    device = node.allocations()[0].strip("[]")
    assert first["status"]["containerStatuses"][0]["allocatedResourcesStatus"] == \
        [{"name": GPU, "resources": [{"resourceID": device, "health": "Healthy"}]}]
    with open(node.checkpoint, encoding="utf-8") as handle:
        entries = json.load(handle)["Data"]["PodDeviceEntries"]
    assert [(e["PodUID"], e["ResourceName"], sorted(sum(e["DeviceIDs"].values(), []))) for e in entries] == \
        [(first["metadata"]["uid"], GPU, [device])]

    node.restart_kubelet()
    node.wait(lambda: node.log("gpu-plugin").count("registered nvidia.com/gpu") >= 2, WAIT,
              "the device plugin registered again with the restarted kubelet")
    kube.apply(gpu_pod("vllm-b", node))
    second = wait_pod_ready(kube, "vllm-b")
    assert len(node.allocations()) == 2, node.allocations()
    assert node.allocations()[1].strip("[]") != device, node.allocations()  # the checkpoint kept device for vllm-a
    kept = kube.get("Pod", "vllm-a")
    assert ready(kept) and kept["metadata"]["uid"] == first["metadata"]["uid"]
    assert kept["status"]["containerStatuses"][0]["restartCount"] == 0
    assert kept["status"]["containerStatuses"][0]["containerID"] == first["status"]["containerStatuses"][0]["containerID"]
    assert second["spec"]["nodeName"] == node.name


def test_a_crashed_container_is_restarted_by_the_kubelet_and_keeps_its_gpu(kube, hollow_gpu_node):
    """Real: the kubelet sees the container exit (its PLEG relist), restarts it at once (restartCount 1,
    lastState.terminated exit 137 reason Error) and reuses the pod's GPU: no second Allocate.
    Emulated: the crash itself (the fake runtime marks the container exited; no process died)."""
    node = hollow_gpu_node()
    kube.apply(gpu_pod("vllm", node))
    wait_pod_ready(kube, "vllm")
    assert len(node.allocations()) == 1
    assert node.crash_container("main") == 1

    def restarted():
        statuses = status(kube, "vllm").get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount") == 1 and "running" in statuses[0].get("state", {}) \
            else None
    container = kube.wait_for(restarted, timeout=WAIT, what="the container restarted by the kubelet")
    assert container["lastState"]["terminated"]["exitCode"] == 137
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert len(node.allocations()) == 1, node.allocations()
    assert status(kube, "vllm")["phase"] == "Running"
    assert [c["state"] for c in node.containers() if c["pod"] == "vllm"].count("CONTAINER_RUNNING") == 1


# ------------------------------------------------------------------ admission after restarts
def test_after_a_kubelet_restart_a_new_gpu_pod_is_rejected_and_left_failed_while_the_replacement_runs(
        kube, hollow_gpu_node):
    """Real: the restarted kubelet admits the pods bound to it before its sources are ready; its device manager still
    holds the GPU for the force-deleted pod (checkpoint), so Allocate fails: the kubelet rejects the new pod with
    UnexpectedAdmissionError and the exact message a GPU host shows. The ReplicaSet controller leaves the Failed pod
    and makes a replacement, which the kubelet admits (the old assignment freed by then) and runs.
    Emulated: runtime, plugin, readiness (see the module docstring)."""
    node = hollow_gpu_node()
    kube.apply(gpu_deployment("vllm", node))
    kube.wait_for(lambda: ready_pods(kube, "app=vllm"), timeout=WAIT, what="vllm Ready")
    old, rejected = kubelet_restart_under(kube, node, "app=vllm")

    failed = wait_failed(kube, rejected)
    assert failed["reason"] == "UnexpectedAdmissionError", failed
    assert failed["message"] == ADMISSION
    survivors = kube.wait_for(lambda: [p for p in ready_pods(kube, "app=vllm") if p["metadata"]["name"] != rejected],
                              timeout=WAIT, what="the ReplicaSet's replacement Ready")
    assert survivors[0]["metadata"]["name"] != old and survivors[0]["spec"]["nodeName"] == node.name
    left = kube.get("Pod", rejected)
    assert left["status"]["phase"] == "Failed" and left["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert len(node.allocations()) == 2, node.allocations()  # the first pod, then the replacement; never the rejected


def test_a_node_reboot_with_the_device_plugin_late_fails_the_running_gpu_pod(kube, hollow_gpu_node):
    """Real: after a reboot (runtime and kubelet restarted, every container gone) the kubelet re-admits the pod it ran
    before the device plugin is back: the device manager has no healthy device, so the pod is rejected with
    UnexpectedAdmissionError ("no healthy devices present"); until the plugin registers the kubelet reports
    nvidia.com/gpu 0 and the scheduler keeps a new GPU pod Pending; once it registers, that pod runs.
    Emulated: runtime, plugin, readiness; the plugin comes back when the test starts it (a DaemonSet pod on k3s)."""
    node = hollow_gpu_node()
    kube.apply(gpu_pod("vllm", node))
    wait_pod_ready(kube, "vllm")
    node.reboot(plugin=False)

    failed = wait_failed(kube, "vllm")
    assert failed["reason"] == "UnexpectedAdmissionError", failed
    assert failed["message"] == NO_HEALTHY
    node.wait(lambda: node.allocatable() == "0", WAIT, "nvidia.com/gpu 0 while the plugin is away")
    kube.apply(gpu_pod("vllm-next", node))
    kube.wait_for(lambda: any(c.get("reason") == "Unschedulable" for c in status(kube, "vllm-next").get("conditions")
                              or []), timeout=WAIT, what="the new GPU pod Pending (no GPU allocatable)")

    node.start_plugin()
    node.wait(lambda: node.allocatable() == "1", WAIT, "nvidia.com/gpu 1 again")
    wait_pod_ready(kube, "vllm-next")
    assert status(kube, "vllm")["phase"] == "Failed"  # nothing brings a rejected pod back


# ------------------------------------------------------------------ gpu_swap on the real kubelet
def test_gpu_swap_deletes_the_pod_the_real_kubelet_rejected_after_a_restart(kube, tmp_path, hollow_gpu_node):
    """The lab's Ollama Deployment on the hollow node; a kubelet restart leaves one of its pods Failed with the real
    UnexpectedAdmissionError (as in the test above) while its replacement serves. gpu_swap to vLLM counts the Failed
    pod as gone, deletes it and names it, and ends with vLLM Ready on the node (its GPU Allocated by the real device
    manager) and recorded.
    Real: ansible-playbook with the gpu_swap role and module, the control plane, the kubelet and its device manager.
    Emulated: runtime (pods stop at once), plugin, readiness (Ready at once), nvidia-smi (tests/support/
    nvidia_smi_fake.py, GPU free); no gateway check (gpu_swap_verify_gateway false, as in the other lab tests)."""
    node = hollow_gpu_node()
    lab = Lab(kube, tmp_path, owner="ollama", node=node.name).setup()
    _old, rejected = kubelet_restart_under(kube, node, "app.kubernetes.io/name=ollama")
    failed = wait_failed(kube, rejected)
    assert (failed["reason"], failed["message"]) == ("UnexpectedAdmissionError", ADMISSION)
    kube.wait_for(lambda: lab.ready("ollama"), timeout=WAIT, what="Ollama's replacement Ready")
    allocations = len(node.allocations())

    out = lab.swap("vllm:qwen2.5-7b", gpu_swap_node=node.name)
    assert "deleted the GPU backends' Failed pods" in out.stdout, out.stdout[-4000:]
    assert f"{rejected} (UnexpectedAdmissionError: {ADMISSION})" in out.stdout, out.stdout[-4000:]
    assert kube.get("Pod", rejected) is None
    problems = lab.owner_settled("vllm", "qwen2.5-7b")
    assert not problems, problems
    assert lab.state()["node"] == node.name
    # The hollow kubelet's fake probe manager may report Ready a moment before the phase says Running.
    vllm = kube.wait_for(lambda: [p for p in lab.pods("vllm") if ready(p)], timeout=WAIT, what="vLLM Running and Ready")
    assert [p["spec"]["nodeName"] for p in vllm] == [node.name]
    assert len(node.allocations()) == allocations + 1, node.allocations()
