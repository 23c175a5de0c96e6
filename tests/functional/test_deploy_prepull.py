"""The GPU image pre-pull (role gpu_prepull) deployed by the real deploy playbook to the real control plane.

REAL: ansible-playbook and the roles, kubernetes.core, the kube-apiserver (validation, defaulting), the
DaemonSet controller and the scheduler deciding which node gets a pod (node selector, taints and the
tolerations the backends carry). EMULATED: the kubelet, by kwok (tests/support/controlplane_files/
kwok-stages.yaml): a scheduled pod becomes Running and Ready, no image is pulled and no container runs,
so the init containers' pulls are not exercised (what they are made of is checked in the render tests
and the unit tests of the builder).

Only the GPU backends are on (the other components are off, so nothing else runs); the owner is none,
so neither backend has a replica and the pre-pull is what is left on the nodes. Three nodes make "on
the GPU nodes only" mean something: gpu-box (the session's GPU node), a second GPU node tainted
dedicated=gpu:NoSchedule that the backends tolerate, and a node without a GPU.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import recap, write_lab_inventory
from tests.support.controlplane import DEFAULT_NODE, gpu_node

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
PREPULL = "gpu-image-prepull"
TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
OFF = ("gpu_runtime", "qdrant", "litellm", "open_webui", "observability", "ingress", "network_policy")


def _inventory(tmp_path, kube, **extra):
    host = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "gpu_lab_kubeconfig": kube.kubeconfig, "gpu_lab_kube_context": "", "gpu_lab_namespace": kube.namespace,
        "gpu_lab_gpu_owner": "none", "gpu_lab_gpu_node": DEFAULT_NODE,
        "gpu_lab_render_dir": str(tmp_path / "rendered"),
        "gpu_lab_models": [
            {"name": "tiny-vllm", "backend": "vllm", "source": "ailab-test/tiny-model",
             "revision": "718c3cb042c8a27662b545c4a5211726106f7c7d"},
            {"name": "tiny-chat", "backend": "ollama", "source": "tiny:1b"}],
        "gpu_lab_routes": {},
        "gpu_lab_components": {name: False for name in OFF},
        "vllm_pull_enabled": False, "ollama_pull_enabled": False,
        "vllm_models_host_path": str(tmp_path / "models"),
        "ollama_tolerations": [TOLERATION], "vllm_tolerations": [TOLERATION],
    }
    host.update(extra)
    return write_lab_inventory(tmp_path, host, DEFAULT_NODE)


def _pods(kube):
    return kube.pods(label_selector=f"app.kubernetes.io/name={PREPULL}")


def _ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def test_deploy_prepulls_on_every_gpu_node_waits_for_ready_and_removes_it_with_the_backends(kube, tmp_path):
    suffix = kube.namespace.rsplit("-", 1)[-1]
    tainted, cpu_only = f"gpu-tainted-{suffix}", f"cpu-only-{suffix}"
    node = gpu_node(tainted)
    node["spec"]["taints"] = [{k: v for k, v in TOLERATION.items() if k != "operator"}]
    kube.add_node(node)
    kube.add_node(gpu_node(cpu_only, gpus=0))
    try:
        inventory = _inventory(tmp_path, kube)
        first = run_playbook(PLAYBOOK, "-i", inventory)
        assert recap(first.stdout)[0] > 0

        # applied with the backends' images and pull policies ...
        daemonset = kube.get("DaemonSet", PREPULL, api_version="apps/v1")
        pod_spec = daemonset["spec"]["template"]["spec"]
        deployments = {name: kube.get("Deployment", name, api_version="apps/v1")["spec"]["template"]["spec"]
                       for name in ("ollama", "vllm")}
        assert [(c["name"], c["image"], c["imagePullPolicy"]) for c in pod_spec["initContainers"]] == [
            (f"pull-{name}", dep["containers"][0]["image"], dep["containers"][0]["imagePullPolicy"])
            for name, dep in deployments.items()]
        assert pod_spec["tolerations"] == [TOLERATION] == deployments["vllm"]["tolerations"]
        # ... Ready when deploy ended (it waited), one pod on each GPU node and none on the node without a GPU
        status = daemonset["status"]
        assert status["desiredNumberScheduled"] == status["numberReady"] == 2, status
        pods = _pods(kube)
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted([DEFAULT_NODE, tainted])
        assert all(_ready(p) for p in pods)
        # the pods hold no GPU: neither backend has a replica (owner none) and the GPU stays free for them
        assert all("nvidia.com/gpu" not in str(c.get("resources")) for p in pods
                   for c in p["spec"]["containers"] + p["spec"]["initContainers"])

        second = run_playbook(PLAYBOOK, "-i", inventory)
        assert recap(second.stdout) == (0, 0), second.stdout[-4000:]

        # both backends off: the DaemonSet goes with them (its pods are garbage-collected by the controller)
        both_off = _inventory(tmp_path, kube, gpu_lab_components=dict({name: False for name in OFF},
                                                                          ollama=False, vllm=False))
        run_playbook(PLAYBOOK, "-i", both_off)
        assert kube.get("DaemonSet", PREPULL, api_version="apps/v1") is None
        kube.wait_for(lambda: not _pods(kube), timeout=60, what="the pre-pull pods to go")
    finally:
        pv = kube.get("PersistentVolume", f"{kube.namespace}-vllm-models")
        if pv:
            kube.delete("PersistentVolume", pv["metadata"]["name"])


def test_a_pull_that_does_not_finish_fails_naming_the_node_and_the_kubelets_reason(kube, tmp_path):
    """The role on its own, waiting on a pod kwok never makes Ready (as a kubelet that cannot pull would)."""
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable},
             "roles": [{"role": "ailab.gpu_lab.gpu_prepull", "vars": {
                 "gpu_prepull_kubeconfig": kube.kubeconfig, "gpu_prepull_kube_context": "",
                 "gpu_prepull_namespace": kube.namespace, "gpu_prepull_wait_timeout": 15,
                 "gpu_prepull_pod_annotations": {"kwok.ailab.test/never-ready": "true"},
                 "gpu_prepull_backends": [{"name": "vllm", "image": "docker.io/vllm/vllm-openai:v0.11.2"}]}}]}]
    path = tmp_path / "prepull.yml"
    path.write_text(yaml.safe_dump(play))
    proc = run_playbook(path, "-i", "localhost,", check=False)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert f"DaemonSet {kube.namespace}/{PREPULL} did not get every node's images within 15 s" in text, text[-3000:]
    assert re.search(rf"{PREPULL}-\w+ on node {DEFAULT_NODE}: Ready: readiness probe failed \(simulated by "
                     r"kwok.ailab.test/never-ready\)", text), text[-3000:]
    assert "re-run deploy, or raise gpu_prepull_wait_timeout" in text
