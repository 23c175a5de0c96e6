"""What the test control plane gives the GPU hand-over, pinned against the REAL components.

Real: kube-apiserver (validation, defaulting, admission, server-side apply), the Deployment,
ReplicaSet, PV and garbage-collector controllers, kube-scheduler, kubernetes.core.k8s and kubectl.
Emulated: the kubelet (kwok Stages; annotations in docs/testing.md), the local-path provisioner
and, for kube-prometheus-stack, the CRD install its chart would do (tests/support/controlplane.py).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading

import pytest
from kubernetes.dynamic.exceptions import ApiException

from tests.conftest import run_playbook
from tests.support.controlplane import DEFAULT_NODE, ControlPlane
from tests.support.kube_ns import KubeNamespace

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")


def gpu_deployment(name="backend", strategy=None, annotations=None):
    spec = {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                         "spec": {"containers": [{"name": name, "image": "example/backend:1",
                                                  "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def bump(deployment, value):
    changed = copy.deepcopy(deployment)
    changed["spec"]["template"]["metadata"]["annotations"]["ailab.test/revision"] = value
    return changed


def unschedulable(pod):
    return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in pod["status"].get("conditions") or [])


def test_defaults_are_applied_by_the_real_apiserver(kube):
    live = kube.apply(gpu_deployment())
    assert live["spec"]["replicas"] == 1
    assert live["spec"]["strategy"] == {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    kube.wait_for(lambda: kube.pods("app=backend", running=True), what="the pod Running")


def test_rolling_update_on_one_gpu_leaves_the_new_pod_pending(kube):
    base = gpu_deployment(annotations={"ailab.test/revision": "1"})
    kube.apply(base)
    old = kube.wait_for(lambda: kube.pods("app=backend", running=True), what="first pod Running")[0]
    kube.apply(bump(base, "2"))
    pending = kube.wait_for(lambda: [p for p in kube.pods("app=backend") if unschedulable(p)],
                            what="the surge pod Unschedulable")
    assert pending[0]["metadata"]["name"] != old["metadata"]["name"]
    assert "Insufficient nvidia.com/gpu" in next(c["message"] for c in pending[0]["status"]["conditions"]
                                                 if c["type"] == "PodScheduled")
    assert [p["metadata"]["name"] for p in kube.pods("app=backend", running=True)] == [old["metadata"]["name"]]


def test_max_surge_zero_deletes_first_and_does_not_deadlock(kube):
    base = gpu_deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                          annotations={"ailab.test/revision": "1"})
    kube.apply(base)
    old = kube.wait_for(lambda: kube.pods("app=backend", running=True), what="first pod Running")[0]
    kube.apply(bump(base, "2"))
    new = kube.wait_for(lambda: [p for p in kube.pods("app=backend", running=True)
                                 if p["metadata"]["name"] != old["metadata"]["name"]], what="replacement Running")
    assert new[0]["spec"]["nodeName"] == DEFAULT_NODE


def test_recreate_creates_the_new_pod_only_after_the_old_one_is_terminal(kube):
    """The real Deployment controller (recreate.go oldPodsRunning) waits until the old pod is terminal (Failed or
    Succeeded), not until its object is gone: the test kubelet reports it terminal 3 s after the deletion
    (delete-delay), then removes it; the new pod may come before or after that removal."""
    base = gpu_deployment(strategy={"type": "Recreate"},
                          annotations={"ailab.test/revision": "1", "kwok.ailab.test/delete-delay": "3s"})
    kube.apply(base)
    old = kube.wait_for(lambda: kube.pods("app=backend", running=True), what="first pod Running")[0]["metadata"]["name"]
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    events = []
    # The watch starts from the list's resourceVersion taken BEFORE the bump, so no event of the change is missed
    # however late the thread gets going on a loaded machine.
    since = pods.get(namespace=kube.namespace).metadata.resourceVersion

    def watch():
        for event in pods.watch(namespace=kube.namespace, timeout=60, resource_version=since):
            obj = event["object"]
            events.append((event["type"], obj.metadata.name, obj.status.phase))
            if event["type"] == "ADDED" and obj.metadata.name != old:
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    kube.apply(bump(base, "2"))
    thread.join(60)
    assert not thread.is_alive(), f"no new pod within 60s: {events}"
    terminal_at = next(i for i, (kind, name, phase) in enumerate(events)
                       if name == old and (kind == "DELETED" or phase in ("Succeeded", "Failed")))
    added_at = next(i for i, (kind, name, _) in enumerate(events) if kind == "ADDED" and name != old)
    assert terminal_at < added_at, events
    assert ("MODIFIED", old, "Running") in events[:terminal_at], "never seen Terminating before it was terminal"


def test_terminating_pod_still_holds_its_gpu(kube):
    kube.apply(gpu_deployment(strategy={"type": "Recreate"}, annotations={"kwok.ailab.test/delete-delay": "30s"}))
    old = kube.wait_for(lambda: kube.pods("app=backend", running=True), what="pod Running")[0]["metadata"]["name"]
    kube.delete("Deployment", "backend", api_version="apps/v1")
    kube.wait_for(lambda: (kube.get("Pod", old) or {}).get("metadata", {}).get("deletionTimestamp"),
                  what="the pod Terminating")
    second = gpu_deployment("second")
    kube.apply(second)
    kube.wait_for(lambda: [p for p in kube.pods("app=second") if unschedulable(p)],
                  what="the scheduler to refuse the GPU a Terminating pod still holds")
    kube.delete("Pod", old, grace_period_seconds=0)  # the kubelet is done: the object goes
    kube.wait_for(lambda: kube.pods("app=second", running=True), what="the second pod Running once the GPU is free")


@pytest.mark.parametrize("case,mutate,message", [
    ("limit-not-whole", lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].update(
        limits={"nvidia.com/gpu": "0.5"}), "must be an integer"),
    ("request-without-limit", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
        resources={"requests": {"nvidia.com/gpu": "1"}}), "Limit must be set"),
    ("selector-does-not-match", lambda d: d["spec"]["selector"].update(matchLabels={"app": "other"}),
     "`selector` does not match template `labels`"),
    ("lowercase-strategy", lambda d: d["spec"].update(strategy={"type": "recreate"}), "Unsupported value"),
])
def test_invalid_objects_are_refused(kube, case, mutate, message):
    obj = gpu_deployment(case)
    mutate(obj)
    with pytest.raises(ApiException) as err:
        kube.apply(obj)
    assert err.value.status == 422 and message in json.loads(err.value.body)["message"]


def test_pod_with_a_missing_runtime_class_is_refused(kube):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"runtimeClassName": "nvidia-legacy", "containers": [{"name": "c", "image": "x"}]}}
    with pytest.raises(ApiException) as err:
        kube.apply(pod)
    assert err.value.status == 403
    assert 'RuntimeClass "nvidia-legacy" not found' in json.loads(err.value.body)["message"]
    pod["spec"]["runtimeClassName"] = "nvidia-cdi"
    kube.apply(pod)
    kube.wait_for(lambda: (kube.get("Pod", "p") or {}).get("status", {}).get("phase") == "Running", what="pod Running")


def test_pvc_of_the_default_class_binds_once_a_pod_uses_it(kube):
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}})
    claim = kube.get("PersistentVolumeClaim", "models")
    assert claim["spec"]["storageClassName"] == "local-path" and claim["status"]["phase"] == "Pending"
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
                "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "m", "mountPath": "/m"}]}],
                         "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "models"}}]}})
    kube.wait_for(lambda: kube.get("PersistentVolumeClaim", "models")["status"].get("phase") == "Bound", what="PVC Bound")
    kube.wait_for(lambda: kube.get("Pod", "user")["status"].get("phase") == "Running", what="pod Running")
    volume = kube.get("PersistentVolume", kube.get("PersistentVolumeClaim", "models")["spec"]["volumeName"])
    assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [DEFAULT_NODE]


def test_kubernetes_core_reapply_is_unchanged_and_wait_works(kube, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Apply a GPU Deployment and wait for it",
        "kubernetes.core.k8s": {"kubeconfig": kube.kubeconfig, "namespace": kube.namespace, "wait": True,
                                "wait_timeout": 60, "definition": gpu_deployment(strategy={"type": "Recreate"})},
        "register": "applied"}, {"ansible.builtin.debug": {"msg": "ready={{ applied.result.status.readyReplicas }}"}}]}]))
    args = ("-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}")
    first = run_playbook(str(play), *args)
    assert "changed=1" in first.stdout and '"msg": "ready=1"' in first.stdout
    second = run_playbook(str(play), *args)
    assert "changed=0" in second.stdout and '"msg": "ready=1"' in second.stdout


def test_snapshot_sees_client_writes_but_not_controller_status(kube):
    """The harness's "nothing was written" check: a controller's status update is not a write of the
    code under test (a Deployment's status keeps changing after its pod is Ready); a label is."""
    kube.apply(gpu_deployment(strategy={"type": "Recreate"}))
    kube.wait_for(lambda: (kube.get("Deployment", "backend", "apps/v1")["status"].get("readyReplicas") == 1),
                  what="the Deployment Available")
    before = kube.snapshot()
    rv = kube.get("Deployment", "backend", "apps/v1")["metadata"]["resourceVersion"]
    from kubernetes.client import AppsV1Api  # pylint: disable=import-outside-toplevel
    AppsV1Api(kube.client.client).patch_namespaced_deployment_status(   # what a controller does
        "backend", kube.namespace, {"status": {"observedGeneration": 99}})
    assert kube.get("Deployment", "backend", "apps/v1")["metadata"]["resourceVersion"] != rv
    assert kube.snapshot() == before
    kube.client.resources.get(api_version="apps/v1", kind="Deployment").patch(
        name="backend", namespace=kube.namespace, content_type="application/merge-patch+json",
        body={"metadata": {"labels": {"ailab.test/written": "yes"}}})
    assert kube.snapshot() != before


def test_kubectl_talks_to_it(kube):
    out = subprocess.run([KUBECTL, "--kubeconfig", kube.kubeconfig, "get", "nodes", "-o", "json"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    node = next(n for n in json.loads(out)["items"] if n["metadata"]["name"] == DEFAULT_NODE)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"


def test_monitoring_crds_exist_only_after_the_kube_prometheus_stack_helmchart(tmp_path):
    """A private control plane: the CRD install is cluster-wide and one-way, as on k3s."""
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "m", "namespace": "default"},
               "spec": {"selector": {"matchLabels": {"app": "x"}}, "endpoints": [{"port": "metrics"}]}}
    with ControlPlane(str(tmp_path / "cp")) as cp:
        out = subprocess.run([KUBECTL, "--kubeconfig", cp.kubeconfig, "apply", "-f", "-"], input=json.dumps(monitor),
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode != 0 and 'no matches for kind "ServiceMonitor"' in out.stderr
        cp.apply({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
                  "metadata": {"name": "kube-prometheus-stack", "namespace": "kube-system"},
                  "spec": {"chart": "kube-prometheus-stack", "targetNamespace": "monitoring"}})

        def applied():
            proc = subprocess.run([KUBECTL, "--kubeconfig", cp.kubeconfig, "apply", "-f", "-"],
                                  input=json.dumps(monitor), capture_output=True, text=True, timeout=60, check=False)
            return proc.returncode == 0
        # The stand-in installs seven CRDs (750 kB): give a loaded machine time.
        KubeNamespace.wait_for(applied, timeout=240, interval=0.5, what="the ServiceMonitor to be accepted")
