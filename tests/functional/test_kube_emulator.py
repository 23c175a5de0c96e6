"""The Kubernetes API emulator itself, driven by the real kubernetes client (DynamicClient).

These pin down the behaviour every Kubernetes-facing test relies on: if the emulator drifted
from the real API in one of these points, the other tests would prove nothing.
"""

from __future__ import annotations

import base64

import pytest
from kubernetes import config as k8s_config
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ApiException, ConflictError, NotFoundError

from tests.support.kube_emulator import match_labels, match_fields, strategic_merge_patch, json_patch, merge_patch

NS = "ai-lab"


@pytest.fixture
def dyn(kube):
    cfg = Configuration()
    k8s_config.load_kube_config(config_file=kube.kubeconfig, client_configuration=cfg)
    return DynamicClient(ApiClient(cfg))


def deployment(name, strategy="Recreate", gpus=1, image="v1", runtime_class=None):
    spec = {"containers": [{"name": name, "image": f"example/{name}:{image}",
                            "resources": {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 1, "strategy": {"type": strategy}, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def pods(kube, app, live_only=True):
    return [p for p in kube.list("Pod", NS) if p["metadata"].get("labels", {}).get("app") == app
            and not (live_only and p["metadata"].get("deletionTimestamp"))]


@pytest.mark.parametrize("selector,labels,expected", [
    ("app=x", {"app": "x"}, True), ("app==x", {"app": "y"}, False), ("app!=x", {}, True),
    ("tier in (a, b),app", {"tier": "b", "app": "1"}, True), ("tier notin (a,b)", {"tier": "a"}, False),
    ("!gpu", {"gpu": "1"}, False), ("", {"any": "thing"}, True),
])
def test_label_selectors(selector, labels, expected):
    assert match_labels(selector, labels) is expected


def test_field_selectors():
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert match_fields("spec.nodeName=n1,status.phase!=Succeeded", pod)
    assert not match_fields("status.phase=Pending", pod)


def test_patch_flavours():
    base = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "1"}]}}
    smp = strategic_merge_patch(base, {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}})
    assert [c["name"] for c in smp["spec"]["containers"]] == ["a", "b"]
    assert smp["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    merged = merge_patch(base, {"spec": {"containers": [{"name": "a"}]}})
    assert merged["spec"]["containers"] == [{"name": "a"}]
    patched = json_patch(base, [{"op": "replace", "path": "/spec/containers/1/image", "value": "2"}])
    assert patched["spec"]["containers"][1]["image"] == "2"


def test_discovery_lists_the_groups_the_stack_uses(dyn):
    for api_version, kind in [("v1", "Pod"), ("apps/v1", "Deployment"), ("networking.k8s.io/v1", "NetworkPolicy"),
                              ("rbac.authorization.k8s.io/v1", "Role"), ("policy/v1", "PodDisruptionBudget"),
                              ("node.k8s.io/v1", "RuntimeClass"), ("helm.cattle.io/v1", "HelmChart"),
                              ("helm.cattle.io/v1", "HelmChartConfig"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
                              ("monitoring.coreos.com/v1", "PrometheusRule"), ("coordination.k8s.io/v1", "Lease")]:
        assert dyn.resources.get(api_version=api_version, kind=kind).kind == kind


def test_crud_resource_version_and_conflicts(dyn):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    created = cms.create(body={"metadata": {"name": "c", "namespace": NS}, "data": {"a": "1"}}, namespace=NS)
    rv = created.metadata.resourceVersion
    same = cms.patch(body={"data": {"a": "1"}}, name="c", namespace=NS, content_type="application/merge-patch+json")
    assert same.metadata.resourceVersion == rv, "a no-op write must keep resourceVersion"
    changed = cms.patch(body={"data": {"b": "2"}}, name="c", namespace=NS, content_type="application/merge-patch+json")
    assert int(changed.metadata.resourceVersion) > int(rv) and dict(changed.data) == {"a": "1", "b": "2"}
    with pytest.raises(ConflictError):
        cms.replace(body={"metadata": {"name": "c", "namespace": NS, "resourceVersion": rv}, "data": {}}, namespace=NS)
    with pytest.raises(ConflictError):
        cms.create(body={"metadata": {"name": "c", "namespace": NS}}, namespace=NS)
    listed = cms.get(namespace=NS, label_selector="")
    assert listed.kind == "ConfigMapList" and [i.metadata.name for i in listed.items] == ["c"]
    cms.delete(name="c", namespace=NS)
    with pytest.raises(NotFoundError):
        cms.get(name="c", namespace=NS)


def test_secret_string_data_is_folded_into_data(dyn):
    secrets = dyn.resources.get(api_version="v1", kind="Secret")
    obj = secrets.create(body={"metadata": {"name": "s", "namespace": NS}, "stringData": {"K": "v"}}, namespace=NS)
    assert "stringData" not in obj.to_dict() and base64.b64decode(obj.data.K).decode() == "v" and obj.type == "Opaque"


def test_custom_resources_refuse_strategic_merge_like_a_real_apiserver(dyn):
    charts = dyn.resources.get(api_version="helm.cattle.io/v1", kind="HelmChart")
    charts.create(body={"metadata": {"name": "dp", "namespace": "kube-system"}, "spec": {"chart": "a"}}, namespace="kube-system")
    with pytest.raises(ApiException) as err:
        charts.patch(body={"spec": {"chart": "b"}}, name="dp", namespace="kube-system")
    assert err.value.status == 415
    patched = charts.patch(body={"spec": {"chart": "b"}}, name="dp", namespace="kube-system", content_type="application/merge-patch+json")
    assert patched.spec.chart == "b"


def test_server_side_apply_creates_then_merges(dyn):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": NS}, "data": {"a": "1"}}
    cms.server_side_apply(body=body, name="ssa", namespace=NS, field_manager="t")
    body["data"] = {"a": "2"}
    assert cms.server_side_apply(body=body, name="ssa", namespace=NS, field_manager="t").data.a == "2"


def test_bad_token_is_401(kube, tmp_path):
    # A typed call, not DynamicClient(): the latter may answer discovery from its on-disk
    # cache (keyed by host:port, which a later emulator can reuse) without asking the server.
    cfg = Configuration()
    k8s_config.load_kube_config(config_file=kube.write_kubeconfig(str(tmp_path / "bad"), token="wrong"), client_configuration=cfg)
    with pytest.raises(ApiException) as err:
        CoreV1Api(ApiClient(cfg)).list_namespace()
    assert err.value.status == 401


def test_scale_subresource(dyn, kube):
    kube.load(deployment("web", gpus=0))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.subresources["scale"].patch(body={"spec": {"replicas": 3}}, name="web", namespace=NS)
    kube.wait_for(lambda e: len([p for p in pods(e, "web") if e.state.pod_ready(p)]) == 3)
    scale = deployments.subresources["scale"].get(name="web", namespace=NS)
    assert scale.spec.replicas == 3 and scale.status.replicas == 3


def test_recreate_starts_the_new_pod_only_after_the_old_one_is_gone(kube):
    kube.settings(terminating_seconds=1.0)
    kube.load(deployment("ollama"))
    old = kube.wait_for(lambda e: [p for p in pods(e, "ollama") if e.state.pod_ready(p)])[0]
    new_template = deployment("ollama", image="v2")
    kube.update(new_template)
    kube.wait_for(lambda e: (e.get("Pod", old["metadata"]["name"], NS) or {}).get("metadata", {}).get("deletionTimestamp"))
    assert pods(kube, "ollama") == [], "Recreate must not start a new pod while the old one exists"
    kube.wait_for(lambda e: e.get("Pod", old["metadata"]["name"], NS) is None, timeout=5)
    new = kube.wait_for(lambda e: [p for p in pods(e, "ollama") if e.state.pod_ready(p)])[0]
    assert new["spec"]["containers"][0]["image"] == "example/ollama:v2"


def test_rolling_update_on_one_gpu_deadlocks_as_on_a_real_cluster(kube):
    kube.load(deployment("vllm", strategy="RollingUpdate"))
    old = kube.wait_for(lambda e: [p for p in pods(e, "vllm") if e.state.pod_ready(p)])[0]
    kube.update(deployment("vllm", strategy="RollingUpdate", image="v2"))
    stuck = kube.wait_for(lambda e: [p for p in pods(e, "vllm") if p["status"].get("conditions", [{}])[0].get("reason") == "Unschedulable"])
    assert stuck[0]["spec"]["containers"][0]["image"] == "example/vllm:v2"
    assert kube.get("Pod", old["metadata"]["name"], NS)["status"]["phase"] == "Running"


def test_missing_runtime_class_keeps_the_pod_pending(kube):
    kube.load(deployment("gpu", runtime_class="nvidia"))
    pod = kube.wait_for(lambda e: [p for p in pods(e, "gpu") if p["status"].get("conditions")])[0]
    assert pod["status"]["conditions"][0]["reason"] == "RuntimeClassNotFound"
    kube.load({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"})
    kube.wait_for(lambda e: [p for p in pods(e, "gpu") if e.state.pod_ready(p)])


def test_behaviour_makes_readiness_fail(kube):
    kube.set_behaviour(namespace=NS, workload="vllm", fail_readiness=True)
    kube.load(deployment("vllm"))
    pod = kube.wait_for(lambda e: [p for p in pods(e, "vllm") if p["status"].get("phase") == "Running"])[0]
    assert not kube.state.pod_ready(kube.get("Pod", pod["metadata"]["name"], NS))
    assert kube.get("Deployment", "vllm", NS)["status"]["unavailableReplicas"] == 1


def test_deleting_a_namespace_deletes_its_objects(kube):
    kube.load({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS}})
    kube.delete("Namespace", NS)
    kube.wait_for(lambda e: e.get("Namespace", NS) is None)
    assert kube.list("ConfigMap", NS) == []
