"""module_utils/apply.py without a cluster: the pieces of deploy's one apply that are pure data.

What talks to an API server (phases, dry run, prune, adoption, field ownership) is tested against the real
control plane in tests/functional/test_deploy_apply.py; the ApplySet id is also checked there against the
id kubectl itself computes.
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.ailab.gpu_lab.plugins.action import lab_apply as action
from ansible_collections.ailab.gpu_lab.plugins.module_utils import apply as ap
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap

VLLM = {"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "vllm", "namespace": "ai-lab", "labels": {"a": "b"},
                     "annotations": {gpu_swap.MODEL_ANNOTATION: "qwen", "other": "kept"}},
        "spec": {"replicas": 1, "template": {
            "metadata": {"annotations": {gpu_swap.MODEL_ANNOTATION: "qwen"}},
            "spec": {"nodeSelector": {"nvidia.com/gpu.present": "true"},
                     "containers": [{"name": "vllm", "image": "vllm:1", "args": ["--model", "x"]},
                                    {"name": "sidecar", "image": "s:1", "args": ["keep"]}]}}}}


def test_take_fields_moves_exactly_the_swap_owned_paths_to_the_second_body():
    paths = gpu_swap.SWAP_OWNED_PATHS["vllm"]
    rest, owned = ap.take_fields(VLLM, paths)
    assert "replicas" not in rest["spec"] and owned["spec"]["replicas"] == 1
    assert rest["metadata"]["annotations"] == {"other": "kept"}
    assert owned["metadata"]["annotations"] == {gpu_swap.MODEL_ANNOTATION: "qwen"}
    assert "nodeSelector" not in rest["spec"]["template"]["spec"]
    assert rest["spec"]["template"]["spec"]["containers"] == [{"name": "vllm", "image": "vllm:1"},
                                                              {"name": "sidecar", "image": "s:1", "args": ["keep"]}]
    assert owned["spec"]["template"]["spec"]["containers"] == [{"name": "vllm", "args": ["--model", "x"]}]
    assert owned["metadata"] == {"name": "vllm", "namespace": "ai-lab",
                                 "annotations": {gpu_swap.MODEL_ANNOTATION: "qwen"}}
    # the input is left alone, and the two bodies hold every field of it between them
    assert VLLM["spec"]["replicas"] == 1 and VLLM["spec"]["template"]["spec"]["containers"][0]["args"]


def test_take_fields_without_any_of_the_paths_returns_no_second_body():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vllm"}, "spec": {"ports": []}}
    rest, owned = ap.take_fields(svc, gpu_swap.SWAP_OWNED_PATHS["vllm"])
    assert rest == svc and owned is None


def test_bodies_orders_the_other_owner_first_only_for_the_named_object():
    applier = ap.Applier(api=None, owned_fields=gpu_swap.swap_owned_fields("ai-lab"))
    bodies = applier.bodies(VLLM)
    assert [m for m, _ in bodies] == [ap.FIELD_MANAGER, gpu_swap.SWAP_FIELD_MANAGER]
    other_ns = copy.deepcopy(VLLM)
    other_ns["metadata"]["namespace"] = "elsewhere"
    assert [m for m, _ in applier.bodies(other_ns)] == [ap.FIELD_MANAGER]


def test_check_objects_names_each_problem_and_where_it_was_declared():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai-lab"}}
    problems = ap.check_objects([ns, {"kind": "Service", "metadata": {}}, "text", ns],
                                ["lab/ns.yaml document 1", "qdrant/q.yaml document 2", "x/y document 1",
                                 "observability/k.yaml document 1"])
    assert problems[0].startswith("qdrant/q.yaml document 2: apiVersion, kind and metadata.name are required")
    assert problems[1].startswith("x/y document 1: not a mapping")
    assert problems[2] == ("Namespace ai-lab is declared twice (lab/ns.yaml document 1 and "
                           "observability/k.yaml document 1): keep one")


def test_parent_lists_group_kinds_sorted_and_only_the_other_namespaces():
    parent = ap.parent_object("gpu-lab-applyset", "ai-lab", "applyset-x-v1",
                              {"Deployment.apps", "Service", "HelmChart.helm.cattle.io", "Service"},
                              {"ai-lab", "kube-system", "monitoring"}, "1.2.3")
    ann = parent["metadata"]["annotations"]
    assert ann[ap.GROUP_KINDS_ANN] == "Deployment.apps,HelmChart.helm.cattle.io,Service"
    assert ann[ap.NAMESPACES_ANN] == "kube-system,monitoring"
    assert ann[ap.TOOLING_ANN] == "ailab.gpu_lab/1.2.3"
    assert parent["metadata"]["labels"][ap.ID_LABEL] == "applyset-x-v1"
    assert ap.parent_contents(parent) == ({"Deployment.apps", "HelmChart.helm.cattle.io", "Service"},
                                          {"ai-lab", "kube-system", "monitoring"})


def test_applyset_id_follows_the_kep_format():
    set_id = ap.applyset_id("gpu-lab-applyset", "ai-lab")
    assert set_id.startswith("applyset-") and set_id.endswith("-v1")
    assert "=" not in set_id and "+" not in set_id and "/" not in set_id   # base64 URL alphabet, no padding
    assert set_id != ap.applyset_id("gpu-lab-applyset", "other-lab")
    assert len(set_id) <= 63   # a label value


@pytest.mark.parametrize("obj, ready", [
    ({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1},
      "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}}, False),
    ({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 1},
      "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}, True),
    ({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": 0},
      "status": {"observedGeneration": 1}}, True),
    ({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
      "status": {"observedGeneration": 1, "readyReplicas": 0, "updatedReplicas": 1}}, False),
    ({"kind": "DaemonSet", "metadata": {"generation": 1}, "spec": {},
      "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "numberReady": 2, "updatedNumberScheduled": 1}},
     False),
])
def test_workload_ready_reads_generation_ready_and_updated(obj, ready):
    assert ap.workload_ready(obj)[0] is ready


def test_render_tree_writes_the_labelled_members_a_kustomization_each_and_the_parent():
    comps = [{"name": "lab", "files": {"namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": "ai-lab"}}]}},
             {"name": "litellm", "files": {"config.yaml": "model_list: []\n",
                                           "gateway.yaml": [{"apiVersion": "v1", "kind": "Service",
                                                             "metadata": {"name": "litellm", "namespace": "ai-lab"}}]}}]
    set_id = ap.applyset_id("p", "ai-lab")
    files = action.render_tree(comps, set_id, {"name": "p", "namespace": "ai-lab"}, "0.2.0")
    assert sorted(files) == ["applyset.yaml", "kustomization.yaml", "lab/kustomization.yaml", "lab/namespace.yaml",
                             "litellm/config.yaml", "litellm/gateway.yaml", "litellm/kustomization.yaml"]
    assert files["litellm/config.yaml"] == "model_list: []\n"      # beside the manifests, not a resource
    assert "config.yaml" not in files["litellm/kustomization.yaml"]
    assert ap.PART_OF + ": " + set_id in files["litellm/gateway.yaml"]
    assert "Namespace,Service" in files["applyset.yaml"]
    flat = action.render_tree(comps[1:], None, None, "0.2.0", flat=True)
    assert sorted(flat) == ["config.yaml", "gateway.yaml", "kustomization.yaml"]
    assert ap.PART_OF not in flat["gateway.yaml"]
