"""One pod shape, proved on everything the deploy renders: each Deployment, StatefulSet and DaemonSet of the
example lab carries exactly the shared fields the builder (plugins/module_utils/deploy.py ``workload()``)
writes for that workload's options (labels and selector, no Service links, no service-account token,
seccomp RuntimeDefault and the pod's user, each container's hardening and termination message policy),
and every container declares its requests and a memory limit.

REAL: ansible-playbook renders the whole deploy playbook for the example lab (render mode, every component on,
the optional tracing (Phoenix), gpu_demand, searxng and LiteLLM's Postgres too), with the roles' real templates and filters.
No cluster: nothing is applied (the render's validity is tests/functional/test_deploy_playbook.py's).
"""

from __future__ import annotations

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy
from tests.support.deploy_render import render_example_lab
from tests.support.pod_shape import WORKLOAD_KINDS, containers, shape

RW, RO = False, True

# Each workload of the lab with its own options of the shape: component (and instance where it is not the name),
# the unprivileged user of its image (None: the image starts as root and keeps only the shape's hardening), and
# which containers have a read-only root filesystem. A new workload is added here with its options.
EXPECTED = {
    ("StatefulSet", "qdrant"): ("vector-db", None, {"user": 1000, "group": 1000, "fs_group": 1000}, {"qdrant": RO}),
    ("Deployment", "litellm"): ("gateway", None, None, {"litellm": RW}),
    ("StatefulSet", "litellm-postgres"): ("database", "litellm", {"user": 70, "group": 70, "fs_group": 70},
                                          {"postgres": RW}),
    ("Deployment", "ollama"): ("gpu-backend", None, None, {"ollama": RW}),
    ("Deployment", "ollama-embed"): ("embeddings", None, None, {"ollama": RW}),
    ("Deployment", "vllm"): ("gpu-backend", None, None, {"vllm": RW}),
    ("Deployment", "open-webui"): ("web-ui", None, None, {"open-webui": RW}),
    ("Deployment", "phoenix"): ("tracing", None, {"user": 65532, "group": 65532, "fs_group": 65532}, {"phoenix": RW}),
    ("DaemonSet", "gpu-image-prepull"): ("image-prepull", None, {"user": 65535, "group": 65535},
                                         {"pull-ollama": RO, "pull-vllm": RO, "pause": RO}),
    ("Deployment", "gpu-demand"): ("gpu_demand", None, {"user": 65534, "group": 65534}, {"gpu-demand": RW}),
    ("StatefulSet", "neo4j"): ("graph-db", None, {"user": 7474, "group": 7474, "fs_group": 7474}, {"neo4j": RW}),
    ("Deployment", "searxng"): ("searxng", None, {"user": 977, "group": 977, "fs_group": 977}, {"searxng": RO}),
    ("Deployment", "llama-stack"): ("llama-stack", None, {"user": 1000, "group": 1000, "fs_group": 1000},
                                    {"llama-stack": RW}),
}
# The only workloads that talk to the API server: their token is mounted (needs_api), under their own account.
NEEDS_API = {("Deployment", "gpu-demand"): "gpu-demand"}


@pytest.fixture(scope="module")
def workloads(tmp_path_factory):
    return {(o["kind"], o["metadata"]["name"]): o
            for o in render_example_lab(tmp_path_factory.mktemp("deploy") / "rendered") if o["kind"] in WORKLOAD_KINDS}


def test_render_has_exactly_the_known_workloads(workloads):
    assert sorted(workloads) == sorted(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=["%s/%s" % k for k in sorted(EXPECTED)])
def test_render_of_each_workload_has_the_builders_shared_fields(workloads, key):
    obj = workloads[key]
    component, instance, run_as, read_only = EXPECTED[key]
    pod = obj["spec"]["template"]["spec"]
    spec = {"kind": key[0], "name": key[1], "namespace": obj["metadata"]["namespace"], "component": component,
            "instance": instance, "run_as": run_as}
    for field, containers_key in (("initContainers", "init_containers"), ("containers", "containers")):
        spec[containers_key] = [{"name": c["name"], "image": "x", "resources": {}, "read_only_root": read_only[c["name"]]}
                                for c in pod.get(field, [])]
    if key[0] == "StatefulSet":
        spec["service_name"] = obj["spec"]["serviceName"]
    if key in NEEDS_API:
        spec.update(needs_api=True, service_account=NEEDS_API[key])
    reference = deploy.workload(spec)
    assert shape(obj, resources=False) == shape(reference, resources=False)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=["%s/%s" % k for k in sorted(EXPECTED)])
def test_render_of_each_workload_is_hardened_and_sized(workloads, key):
    """The shape spelled out, in case the builder itself were changed: what docs/deploy.md promises of every pod."""
    pod = workloads[key]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is (key in NEEDS_API) and pod["enableServiceLinks"] is False
    assert pod.get("serviceAccountName") == NEEDS_API.get(key)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"].get("runAsUser", 1) != 0
    for container in containers(workloads[key]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in context and "add" not in context["capabilities"]
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], container["name"]
