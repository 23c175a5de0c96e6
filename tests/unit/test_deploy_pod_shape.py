"""Unit tests of the one pod shape (plugins/module_utils/deploy.py ``workload()``, filter
``ailab.gpu_lab.deploy_workload``): what every Deployment, StatefulSet and DaemonSet of the lab shares
(labels and selector, no Service links, no service-account token unless the API is needed, seccomp
RuntimeDefault and the pod's user, each container's hardening, termination message policy and resources)
is written by the builder only. The GPU backends' Deployment and the image pre-pull DaemonSet are built
on it, and no template of a role writes one of those fields itself (so none can drift again).
Pure Python; expected values are written out by hand. The rendered example lab is checked against the
builder in tests/functional/test_deploy_pod_shape.py."""

import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.filter.deploy import FilterModule
from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy
from tests.support.pod_shape import shape

FILTERS = FilterModule().filters()
ROLES = Path(__file__).resolve().parents[2] / "roles"
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
LABELS = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web", "app.kubernetes.io/component": "web-ui",
          "app.kubernetes.io/part-of": "ai-lab", "app.kubernetes.io/managed-by": "ailab.gpu_lab"}
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def spec(**kw):
    base = {"kind": "Deployment", "name": "web", "namespace": "ai-lab", "component": "web-ui",
            "containers": [{"name": "web", "image": "example/web:1", "resources": RESOURCES}]}
    base.update(kw)
    return base


def test_a_deployment_gets_every_shared_field():
    assert FILTERS["deploy_workload"](spec()) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ai-lab", "labels": LABELS},
        "spec": {
            "replicas": 1, "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web"}},
            "template": {"metadata": {"labels": LABELS}, "spec": {
                # a Service called like an env prefix of the app (vllm -> VLLM_PORT) cannot reach its config
                "enableServiceLinks": False,
                # nothing of the lab's pods calls the API: no token in the pod
                "automountServiceAccountToken": False,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "web", "image": "example/web:1", "resources": RESOURCES,
                                "securityContext": HARDENED, "terminationMessagePolicy": "FallbackToLogsOnError"}],
            }},
        },
    }


def test_an_unprivileged_statefulset_with_its_own_instance_and_claims():
    claim = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    out = deploy.workload(spec(kind="StatefulSet", name="litellm-postgres", instance="litellm", component="database",
                               service_name="litellm-postgres", update_strategy={"type": "RollingUpdate"},
                               run_as={"user": 70, "fs_group": 70}, volume_claim_templates=[claim],
                               containers=[{"name": "postgres", "image": "postgres:16", "resources": RESOURCES,
                                            "read_only_root": True}]))
    assert out["metadata"]["labels"]["app.kubernetes.io/instance"] == "litellm"
    assert out["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "litellm-postgres",
                                                       "app.kubernetes.io/instance": "litellm"}}
    assert (out["spec"]["serviceName"], out["spec"]["updateStrategy"], out["spec"]["replicas"]) == (
        "litellm-postgres", {"type": "RollingUpdate"}, 1)
    assert out["spec"]["volumeClaimTemplates"] == [claim]
    pod = out["spec"]["template"]["spec"]
    # the group defaults to the user; the pod never runs as root
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 70, "runAsGroup": 70, "fsGroup": 70,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == dict(HARDENED, readOnlyRootFilesystem=True)


def test_a_daemonset_has_no_replicas_and_init_containers_get_the_hardening_too():
    init = {"name": "pull", "image": "example/big:2", "command": ["/bin/sh", "-c", "true"], "resources": RESOURCES}
    out = deploy.workload(spec(kind="DaemonSet", init_containers=[init], termination_grace_seconds="5"))
    assert "replicas" not in out["spec"] and out["spec"]["revisionHistoryLimit"] == 3
    pod = out["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5
    assert pod["initContainers"] == [dict(init, securityContext=HARDENED,
                                          terminationMessagePolicy="FallbackToLogsOnError")]


def test_the_hardening_follows_the_resources_in_the_written_container():
    container = {"name": "web", "image": "example/web:1", "ports": [{"containerPort": 80}], "resources": RESOURCES,
                 "livenessProbe": {"tcpSocket": {"port": 80}}}
    out = deploy.workload(spec(containers=[container]))["spec"]["template"]["spec"]["containers"][0]
    assert list(out) == ["name", "image", "ports", "resources", "securityContext", "terminationMessagePolicy",
                         "livenessProbe"]


def test_only_a_workload_that_needs_the_api_gets_the_token():
    pod = deploy.workload(spec(needs_api=True, service_account="gpu-swap"))["spec"]["template"]["spec"]
    assert (pod["automountServiceAccountToken"], pod["serviceAccountName"]) == (True, "gpu-swap")
    pod = deploy.workload(spec(service_account="pull-only"))["spec"]["template"]["spec"]
    assert (pod["automountServiceAccountToken"], pod["serviceAccountName"]) == (False, "pull-only")


def test_empty_optional_values_are_left_out():
    out = deploy.workload(spec(annotations={}, pod_annotations={}, node_selector={}, tolerations=[], volumes=[],
                               init_containers=[], affinity={}, runtime_class="", strategy={}))
    assert "annotations" not in out["metadata"] and "annotations" not in out["spec"]["template"]["metadata"]
    assert set(out["spec"]["template"]["spec"]) == {"enableServiceLinks", "automountServiceAccountToken",
                                                    "securityContext", "containers"}
    assert "strategy" not in out["spec"]


def test_additions_to_the_container_hardening_are_kept():
    container = {"name": "web", "image": "example/web:1", "resources": RESOURCES,
                 "security_context": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "runAsUser": 101}}
    out = deploy.workload(spec(containers=[container]))["spec"]["template"]["spec"]["containers"][0]
    assert out["securityContext"] == {"allowPrivilegeEscalation": False, "runAsUser": 101,
                                      "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert "security_context" not in out and "read_only_root" not in out


@pytest.mark.parametrize("change, message", [
    ({"kind": "Job"}, "web: kind must be one of Deployment, StatefulSet, DaemonSet, got 'Job'"),
    ({"replica": 2}, "Deployment web: unknown key replica (did you mean 'replicas'?); keys: "),
    ({"service_name": "x"}, "Deployment web: unknown key service_name (a key of a StatefulSet only); keys: "),
    ({"component": ""}, "Deployment web: component is required"),
    ({"containers": []}, "Deployment web: no containers"),
    ({"kind": "StatefulSet"}, "StatefulSet web: service_name (its headless Service) is required"),
    ({"containers": [{"name": "web", "image": "example/web:1"}]},
     "web: container web: no resources; every container of the lab declares its requests and limits"),
    ({"containers": [{"name": "web", "image": "example/web:1", "resources": RESOURCES,
                      "securityContext": {"privileged": True}}]},
     "web: container web: securityContext is written by the pod shape (module_utils/deploy.py workload()); use "
     "read_only_root or security_context (additions) instead"),
    ({"containers": [{"name": "web", "image": "example/web:1", "resources": RESOURCES,
                      "terminationMessagePolicy": "File"}]},
     "web: container web: terminationMessagePolicy is written by the pod shape"),
    ({"containers": [{"name": "web", "image": "example/web:1", "resources": RESOURCES,
                      "security_context": {"allowPrivilegeEscalation": True, "capabilities": {"drop": []}}}]},
     "web: container web: security_context may add to the lab's container hardening, not undo it: "
     "allowPrivilegeEscalation, capabilities.drop"),
    ({"run_as": {"user": 0}}, "Deployment web: run_as.user 0 is root; leave run_as.user out for an image that must "
                              "start as root"),
    ({"run_as": {"group": 10}}, "Deployment web: run_as.group needs run_as.user"),
    ({"run_as": {"user": "abc"}}, "Deployment web: run_as.user must be a numeric id >= 0, got 'abc'"),
    ({"run_as": {"uid": 10}}, "Deployment web: run_as: unknown key uid; keys: user, group, fs_group"),
])
def test_what_the_builder_refuses_names_the_workload(change, message):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["deploy_workload"](spec(**change))
    assert str(err.value).startswith(message)


GPU = {"name": "ollama", "namespace": "ai-lab", "image": "ollama/ollama:0.13.0", "port": 11434, "health_path": "/",
       "replicas": 1, "runtime_class": "nvidia-cdi", "gpu_resource": "nvidia.com/gpu", "resources": RESOURCES,
       "startup": {"period": 5, "budget": 300}, "readiness": {"period": 5, "failure_threshold": 3},
       "liveness": {"period": 15, "failure_threshold": 4}}
PREPULL = {"namespace": "ai-lab", "pause_image": "rancher/mirrored-pause:3.6",
           "backends": [{"name": "ollama", "image": "ollama/ollama:0.13.0"}]}


@pytest.mark.parametrize("built, reference", [
    (lambda: deploy.gpu_backend_deployment(GPU),
     dict(kind="Deployment", name="ollama", component="gpu-backend",
          containers=[{"name": "ollama", "image": "x", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                                     "limits": {"memory": "128Mi",
                                                                                "nvidia.com/gpu": 1}}}])),
    (lambda: deploy.gpu_image_prepull_daemonset(PREPULL),
     dict(kind="DaemonSet", name="gpu-image-prepull", component="image-prepull", run_as={"user": 65535},
          init_containers=[{"name": "pull-ollama", "image": "x", "read_only_root": True,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}],
          containers=[{"name": "pause", "image": "x", "read_only_root": True,
                       "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}])),
])
def test_the_gpu_builders_are_built_on_the_one_shape(built, reference):
    assert shape(built()) == shape(deploy.workload(dict(reference, namespace="ai-lab")))


def test_changing_the_shape_changes_every_builder(monkeypatch):
    """The GPU builders have no hardening of their own: a field changed in the shape reaches both."""
    monkeypatch.setattr(deploy, "SECCOMP_PROFILE", {"type": "Localhost", "localhostProfile": "lab.json"})
    monkeypatch.setattr(deploy, "TERMINATION_MESSAGE_POLICY", "File")
    for obj in (deploy.gpu_backend_deployment(GPU), deploy.gpu_image_prepull_daemonset(PREPULL)):
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "lab.json"}
        assert {c["terminationMessagePolicy"] for c in pod.get("initContainers", []) + pod["containers"]} == {"File"}


# -- no template writes the shape itself ----------------------------------------------------------------

# The pod-shape fields, and apiVersion apps/v1 (a workload written out by hand instead of by the builder).
_HAND_WRITTEN = re.compile(r"\b(securityContext|automountServiceAccountToken|enableServiceLinks|seccompProfile|"
                           r"terminationMessagePolicy|allowPrivilegeEscalation|readOnlyRootFilesystem|runAsNonRoot|"
                           r"runAsUser|runAsGroup|fsGroup|apps/v1)\b")
TEMPLATES = sorted(p for p in ROLES.glob("*/templates/**/*.j2"))


@pytest.mark.parametrize("path", TEMPLATES, ids=[str(p.relative_to(ROLES)) for p in TEMPLATES])
def test_no_template_writes_a_field_of_the_pod_shape(path):
    found = ["%s:%d: %s" % (path.relative_to(ROLES), number, match.group(1))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for match in _HAND_WRITTEN.finditer(line)]
    assert not found, ("written by ailab.gpu_lab.deploy_workload (module_utils/deploy.py workload()), not by a "
                       "template: %s" % "; ".join(found))


def test_every_workload_template_goes_through_a_builder():
    users = {p.relative_to(ROLES).parts[0] for p in TEMPLATES
             if re.search(r"ailab\.gpu_lab\.deploy_(workload|gpu_deployment|gpu_image_prepull)\b", p.read_text())}
    assert users == {"gpu_demand", "gpu_prepull", "litellm", "llama_stack", "neo4j", "ollama", "open_webui", "phoenix",
                     "qdrant", "searxng", "vllm"}
