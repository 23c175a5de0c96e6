"""Unit tests of plugins/module_utils/deploy.py and plugins/filter/deploy.py: quantities, the initial
GPU owner, the GPU backend Deployment both vLLM and Ollama are built from (its startup probe derived
from the load budget), the DaemonSet that pre-pulls their images, and the early check of the deploy
inputs (every problem at once, each naming the variable). Pure Python; expected values are written
out by hand."""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.filter.deploy import FilterModule
from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy
from tests.support.catalog_example import load_example_catalog

EXAMPLE = load_example_catalog()
MODELS = EXAMPLE["gpu_lab_models"]
FILTERS = FilterModule().filters()
PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "filter"
KNOWN = ["gpu_runtime", "qdrant", "litellm", "ollama", "vllm", "open_webui"]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_documented(name):
    doc = yaml.safe_load((PLUGIN_DIR / (name + ".yml")).read_text())
    assert doc["DOCUMENTATION"]["name"] == name
    assert "_value" in doc["RETURN"] and name in doc["EXAMPLES"]


@pytest.mark.parametrize("value, expected", [
    ("20Gi", 20 * 1024 ** 3), ("500M", 500 * 10 ** 6), ("1.5Gi", 1.5 * 1024 ** 3), ("100", 100), (64, 64),
    ("2Ti", 2 * 1024 ** 4), ("250m", 0.25),
])
def test_quantities_parse(value, expected):
    assert deploy.parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["20GB", "twenty", "", "1.5.2Gi", "-5Gi", True, None, "20 Gi"])
def test_bad_quantities_say_how_to_write_one(value):
    with pytest.raises(ValueError, match="quantity"):
        deploy.parse_quantity(value)


@pytest.mark.parametrize("value, expected", [
    ("ollama", {"owner": "ollama", "model": ""}),
    ("none", {"owner": "none", "model": ""}),
    ("vllm:qwen2.5-7b", {"owner": "vllm", "model": "qwen2.5-7b"}),
    ("vllm", {"owner": "vllm", "model": "qwen2.5-7b"}),   # the example catalog has one vLLM model
    (" ollama ", {"owner": "ollama", "model": ""}),
])
def test_gpu_owner_parses(value, expected):
    assert deploy.parse_gpu_owner(value, MODELS) == expected


@pytest.mark.parametrize("value, message", [
    ("vllm:qwen3", "'qwen3' is not a vLLM alias of gpu_lab_models; vLLM aliases: qwen2.5-7b"),
    ("vllm:llama3.1-8b", "'llama3.1-8b' is not a vLLM alias"),
    ("olama", "'olama' is not an owner (did you mean 'ollama'?)"),
    ("ollama:llama3.1-8b", "only vllm takes a model"),
    ("", "must be 'ollama', 'vllm:<alias>' or 'none'"),
])
def test_bad_gpu_owner_names_the_variable_and_the_choices(value, message):
    with pytest.raises(deploy.DeployError) as err:
        deploy.parse_gpu_owner(value, MODELS)
    assert "gpu_lab_gpu_owner" in str(err.value) and message in str(err.value)


def test_bare_vllm_needs_the_model_when_the_catalog_has_two():
    two = MODELS + [{"name": "mistral-7b", "backend": "vllm", "source": "mistralai/Mistral-7B-Instruct-v0.3",
                     "revision": "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db"}]
    with pytest.raises(deploy.DeployError, match="'vllm' needs the model: write 'vllm:<alias>' with one of the "
                                                 "catalog's vLLM aliases: qwen2.5-7b, mistral-7b"):
        deploy.parse_gpu_owner("vllm", two)


@pytest.mark.parametrize("owner, ollama, vllm", [("ollama", 1, 0), ("vllm", 0, 1), ("none", 0, 0), ("", 0, 0)])
def test_exactly_the_owner_gets_a_replica(owner, ollama, vllm):
    state = {"owner": owner, "model": ""}
    assert (deploy.owner_replicas(state, "ollama"), deploy.owner_replicas(state, "vllm")) == (ollama, vllm)


SPEC = {"name": "ollama", "namespace": "ai-lab", "image": "ollama/ollama:0.13.0", "port": 11434, "health_path": "/",
        "replicas": 0, "runtime_class": "nvidia-cdi", "gpu_resource": "nvidia.com/gpu", "node": "gpu-box",
        "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": 2}, "limits": {"memory": "8Gi"}},
        "startup": {"period": 5, "budget": 300}, "readiness": {"period": 5, "failure_threshold": 3},
        "liveness": {"period": 15, "failure_threshold": 4}}


def test_gpu_backend_deployment_sets_every_shared_field():
    labels = {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": "ollama",
              "app.kubernetes.io/component": "gpu-backend", "app.kubernetes.io/part-of": "ai-lab",
              "app.kubernetes.io/managed-by": "ailab.gpu_lab"}
    assert FILTERS["deploy_gpu_deployment"](SPEC) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ollama", "namespace": "ai-lab", "labels": labels},
        "spec": {
            "replicas": 0, "revisionHistoryLimit": 3, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": "ollama"}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "enableServiceLinks": False, "automountServiceAccountToken": False, "runtimeClassName": "nvidia-cdi",
                "nodeSelector": {"nvidia.com/gpu.present": "true", "kubernetes.io/hostname": "gpu-box"},
                "terminationGracePeriodSeconds": 30, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "ollama", "image": "ollama/ollama:0.13.0", "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 11434, "protocol": "TCP"}],
                    # a GPU request in the spec is dropped: the limit says one GPU, never more
                    "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "8Gi", "nvidia.com/gpu": 1}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    # a crashed container's last log lines become its termination message (gpu_swap reports it)
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    # the load budget of 300 s in probes every 5 s: 60 failures in a row before a restart
                    "startupProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 5,
                                     "failureThreshold": 60},
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5,
                                       "timeoutSeconds": 5, "failureThreshold": 3},
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 15,
                                      "timeoutSeconds": 5, "failureThreshold": 4},
                }],
            }},
        },
    }


def test_gpu_backend_deployment_without_a_node_selects_any_gpu_node_and_carries_the_extras():
    spec = dict(SPEC, node="", args=["--x", 1], env=[{"name": "A", "value": "b"}], pod_annotations={"k": "v"},
                volumes=[{"name": "m", "emptyDir": {}}], volume_mounts=[{"name": "m", "mountPath": "/m"}])
    dep = deploy.gpu_backend_deployment(spec)
    pod = dep["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["metadata"]["annotations"] == {"k": "v"}
    assert pod["spec"]["containers"][0]["args"] == ["--x", "1"]
    assert pod["spec"]["volumes"] == [{"name": "m", "emptyDir": {}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "m", "mountPath": "/m"}]


@pytest.mark.parametrize("budget, period, threshold", [
    (900, 10, 90),      # vLLM's defaults: exactly the budget
    (905, 10, 91),      # rounded up: the probe never allows less than the budget
    (300, 5, 60),       # Ollama's defaults
    (10, 10, 1),        # one period is the least
    ("1200", "10", 120),  # extra vars on the command line arrive as strings
])
def test_startup_probe_carries_the_whole_load_budget(budget, period, threshold):
    spec = dict(SPEC, name="vllm", startup={"period": period, "budget": budget})
    probe = deploy.gpu_backend_deployment(spec)["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (int(period), threshold)
    # what gpu_swap reads back as its ready timeout: initialDelaySeconds (unset: 0) + threshold x period
    assert probe.get("initialDelaySeconds", 0) + probe["failureThreshold"] * probe["periodSeconds"] >= int(budget)
    assert (probe["failureThreshold"] - 1) * probe["periodSeconds"] < int(budget)


@pytest.mark.parametrize("budget, period, message", [
    (5, 10, "vllm: vllm_load_budget (5 s) is shorter than one startup probe period (vllm_startup_period: 10 s): the "
            "budget is how long the backend may take from container start to a healthy answer; give at least one "
            "period (minutes for a model load)"),
    (0, 10, "vllm: vllm_load_budget must be a whole number of seconds > 0, got 0"),
    ("15m", 10, "vllm: vllm_load_budget must be a whole number of seconds > 0, got '15m'"),
    (900, True, "vllm: vllm_startup_period must be a whole number of seconds > 0, got True"),
    (900, 2.5, "vllm: vllm_startup_period must be a whole number of seconds > 0, got 2.5"),
])
def test_a_budget_that_no_probe_can_carry_is_refused_naming_the_variables(budget, period, message):
    spec = dict(SPEC, name="vllm", startup={"period": period, "budget": budget})
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["deploy_gpu_deployment"](spec)
    assert str(err.value) == message


PREPULL = {"namespace": "ai-lab", "pause_image": "docker.io/rancher/mirrored-pause:3.6", "backends": [
    {"name": "ollama", "image": "docker.io/ollama/ollama:0.13.0", "image_pull_policy": "IfNotPresent",
     "node_selector": {}, "tolerations": []},
    {"name": "vllm", "image": "docker.io/vllm/vllm-openai:v0.11.2", "image_pull_policy": "Always",
     "node_selector": {}, "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}]}


def test_image_prepull_daemonset_pulls_each_backend_image_where_the_backends_run():
    labels = {"app.kubernetes.io/name": "gpu-image-prepull", "app.kubernetes.io/instance": "gpu-image-prepull",
              "app.kubernetes.io/component": "image-prepull", "app.kubernetes.io/part-of": "ai-lab",
              "app.kubernetes.io/managed-by": "ailab.gpu_lab"}
    small = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}
    hardened = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}

    def container(name, image, policy, command=None):
        out = {"name": name, "image": image, "imagePullPolicy": policy, "resources": small,
               "securityContext": hardened, "terminationMessagePolicy": "FallbackToLogsOnError"}
        # the backend images' NVIDIA_VISIBLE_DEVICES=all must not reach a default NVIDIA runtime: no GPU for a pull
        return dict(out, command=command, env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]) if command else out

    assert FILTERS["deploy_gpu_image_prepull"](PREPULL) == {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "gpu-image-prepull", "namespace": "ai-lab", "labels": labels},
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "gpu-image-prepull",
                                         "app.kubernetes.io/instance": "gpu-image-prepull"}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "enableServiceLinks": False, "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 5,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "runAsGroup": 65535,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                # the same image strings and pull policies as the Deployments; each exits at once once pulled
                "initContainers": [
                    container("pull-ollama", "docker.io/ollama/ollama:0.13.0", "IfNotPresent", ["/bin/sh", "-c", "true"]),
                    container("pull-vllm", "docker.io/vllm/vllm-openai:v0.11.2", "Always", ["/bin/sh", "-c", "true"])],
                "containers": [container("pause", "docker.io/rancher/mirrored-pause:3.6", "IfNotPresent")],
                # the backends' node selection without the hostname pin: every GPU node a swap may pin them to
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            }},
        },
    }


def test_image_prepull_uses_the_backends_node_selection_and_requests_no_gpu():
    """The same helper selects the nodes of both: the Deployment's selector minus its hostname pin."""
    dep = deploy.gpu_backend_deployment(dict(SPEC, node_selector={"lab/gpu": "rtx4090"}))["spec"]["template"]["spec"]
    backends = [dict(PREPULL["backends"][0], node_selector={"lab/gpu": "rtx4090"})]
    pod = deploy.gpu_image_prepull_daemonset(dict(PREPULL, backends=backends))["spec"]["template"]["spec"]
    pinned = dict(pod["nodeSelector"], **{"kubernetes.io/hostname": "gpu-box"})
    assert pinned == dep["nodeSelector"] == {"nvidia.com/gpu.present": "true", "kubernetes.io/hostname": "gpu-box",
                                             "lab/gpu": "rtx4090"}
    assert [c.get("resources") for c in pod["initContainers"] + pod["containers"]] == [
        {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}] * 2   # no GPU
    assert "runtimeClassName" not in pod


def test_image_prepull_with_two_node_selections_runs_on_either_and_tolerates_each_once():
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    backends = [dict(PREPULL["backends"][0], node_selector={"lab/box": "a"}, tolerations=[toleration]),
                dict(PREPULL["backends"][1], node_selector={"lab/box": "b"}, tolerations=[toleration],
                     command=["/usr/bin/true"])]
    pod = deploy.gpu_image_prepull_daemonset(dict(PREPULL, backends=backends, command=["/bin/true"],
                                                  pod_annotations={"k": "v"}))["spec"]["template"]
    assert "nodeSelector" not in pod["spec"]
    assert pod["spec"]["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "lab/box", "operator": "In", "values": ["a"]},
                                  {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]},
            {"matchExpressions": [{"key": "lab/box", "operator": "In", "values": ["b"]},
                                  {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}}
    assert pod["spec"]["tolerations"] == [toleration]
    assert [c["command"] for c in pod["spec"]["initContainers"]] == [["/bin/true"], ["/usr/bin/true"]]
    assert pod["metadata"]["annotations"] == {"k": "v"}


def test_image_prepull_without_a_backend_is_refused():
    with pytest.raises(AnsibleFilterError, match="gpu-image-prepull: no GPU backend to pull images for; with both "
                                                 "backends off the DaemonSet is removed, not rendered"):
        FILTERS["deploy_gpu_image_prepull"](dict(PREPULL, backends=[]))


def _inputs(**over):
    base = {"components": dict((c, True) for c in KNOWN), "known_components": KNOWN, "models": MODELS,
            "routes": EXAMPLE["gpu_lab_routes"], "gpu_owner": "vllm:qwen2.5-7b", "namespace": "ai-lab",
            "sizes": {"qdrant_storage_size": "20Gi"}, "backup_tiers": {"qdrant_backup_tier": "gfs"},
            "qdrant_collections": [{"name": "docs", "vector_size": 768, "distance": "Cosine"}],
            "embedding_model": "nomic-embed"}
    base.update(over)
    return base


def test_good_inputs_give_the_enabled_components_and_the_owner():
    result = FILTERS["deploy_validate"](_inputs(components={"gpu_runtime": True, "vllm": True, "open_webui": False}))
    assert result["components"] == ["gpu_runtime", "vllm"]
    assert result["owner"] == {"owner": "vllm", "model": "qwen2.5-7b"}
    assert [m["name"] for m in result["models"]] == ["qwen2.5-7b", "llama3.1-8b", "nomic-embed", "cloud-fallback"]


def test_every_bad_input_is_reported_at_once_naming_the_variable():
    models = [dict(MODELS[0], revision=None)] + MODELS[1:]
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["deploy_validate"](_inputs(
            components={"vllm": True, "ollama": True, "open_webui": True, "grafana": True},
            models=models, routes={}, gpu_owner="vllm:qwen3", sizes={"ollama_storage_size": "100GB"},
            backup_tiers={"qdrant_backup_tier": "weekly"},
            qdrant_collections=[{"name": "docs", "vector_size": "768"}, {"name": "docs", "vector_size": 3, "distance": "cos"}],
            embedding_model="llama3.1-8b"))
    text = str(err.value)
    expected = [
        "gpu_lab_components: 'grafana' is not a component; components: gpu_runtime, qdrant, litellm, ollama, vllm, open_webui",
        "gpu_lab_models[0] (name 'qwen2.5-7b'): field 'revision': is required for vllm models",
        "ollama_storage_size: '100GB' is not a Kubernetes quantity",
        "qdrant_backup_tier: 'weekly' is not a backup tier; use gfs, daily, none",
        "qdrant_collections[0]: vector_size must be a positive integer",
        "qdrant_collections[1]: collection 'docs' is declared twice",
        "qdrant_collections[1]: distance 'cos' is not one of Cosine, Euclid, Dot, Manhattan",
    ]
    for line in expected:
        assert line in text, line
    # the owner and the embedding model cannot be checked against a catalog that failed, and are not guessed at
    assert text.startswith("deploy inputs: 7 problems found:")


def test_owner_and_embedding_model_are_checked_against_a_good_catalog():
    with pytest.raises(deploy.DeployError) as err:
        deploy.validate_deploy(_inputs(gpu_owner="vllm:qwen3", embedding_model="llama3.1-8b",
                                       components={"vllm": False, "ollama": True}))
    assert err.value.errors == [
        "gpu_lab_gpu_owner: 'vllm:qwen3': 'qwen3' is not a vLLM alias of gpu_lab_models; vLLM aliases: qwen2.5-7b",
        "open_webui_embedding_model: 'llama3.1-8b' is a chat model; name a catalog entry with mode: embedding",
    ]


def test_owner_whose_component_is_off_and_vllm_without_a_model_are_refused():
    no_vllm = [m for m in MODELS if m["backend"] != "vllm"]
    with pytest.raises(deploy.DeployError) as err:
        deploy.validate_deploy(_inputs(models=no_vllm, routes={}, gpu_owner="ollama",
                                       components={"vllm": True, "ollama": False}))
    assert err.value.errors == [
        "gpu_lab_components.vllm: is true but gpu_lab_models has no backend: vllm entry; add one (with a pinned "
        "revision) or set gpu_lab_components.vllm: false",
        "gpu_lab_gpu_owner: 'ollama' is the initial owner but gpu_lab_components.ollama is false; enable it or set "
        "gpu_lab_gpu_owner: none",
    ]


def test_bad_namespace_and_non_mapping_components():
    with pytest.raises(deploy.DeployError) as err:
        deploy.validate_deploy(_inputs(components=["vllm"], namespace="AI_Lab", gpu_owner="none"))
    assert err.value.errors == [
        "gpu_lab_components: must be a mapping component -> true/false (components: gpu_runtime, qdrant, litellm, "
        "ollama, vllm, open_webui), got list",
        "gpu_lab_namespace: 'AI_Lab' is not a namespace name (lowercase letters, digits and '-', at most 63)",
    ]


def test_labels_filters():
    assert FILTERS["deploy_labels"]("qdrant", "vector-db") == {
        "app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": "qdrant",
        "app.kubernetes.io/component": "vector-db", "app.kubernetes.io/part-of": "ai-lab",
        "app.kubernetes.io/managed-by": "ailab.gpu_lab"}
    assert FILTERS["deploy_selector"]("qdrant", "lab2") == {"app.kubernetes.io/name": "qdrant",
                                                            "app.kubernetes.io/instance": "lab2"}


def test_apply_diff_lists_only_the_changed_objects_of_a_multi_object_apply():
    registered = {"changed": True, "result": {"results": [
        {"changed": True, "method": "update", "diff": {"before": {"data": {"a": "1"}}, "after": {"data": {"a": "2"}}},
         "result": {"kind": "ConfigMap", "metadata": {"name": "one", "namespace": "ai-lab"}}},
        {"changed": False, "method": "update", "diff": {},
         "result": {"kind": "ConfigMap", "metadata": {"name": "two", "namespace": "ai-lab"}}},
        {"changed": True, "method": "create", "result": {"kind": "PersistentVolume", "metadata": {"name": "pv"}}},
    ]}}
    assert FILTERS["deploy_apply_diff"](registered) == [
        {"object": "ConfigMap/ai-lab/one", "method": "update", "before": {"data": {"a": "1"}}, "after": {"data": {"a": "2"}}},
        {"object": "PersistentVolume/pv", "method": "create", "before": None, "after": None},
    ]
    # a single-object apply has no nested results
    assert FILTERS["deploy_apply_diff"]({"changed": True, "method": "patch", "diff": {"before": 1, "after": 2},
                                         "result": {"kind": "Namespace", "metadata": {"name": "ai-lab"}}}) == [
        {"object": "Namespace/ai-lab", "method": "patch", "before": 1, "after": 2}]


def test_memory_plus_grows_the_memory_request_and_limit_only():
    """vLLM's level-1 sleep keeps the weights in host RAM: its memory request and limit grow by their size."""
    grown = deploy.memory_plus({"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi",
                                                                                       "nvidia.com/gpu": 1}}, "5.5Gi")
    assert grown == {"requests": {"cpu": "2", "memory": "13824Mi"}, "limits": {"memory": "38400Mi", "nvidia.com/gpu": 1}}
    assert deploy.memory_plus({"requests": {"cpu": "1"}}, "1G") == {"requests": {"cpu": "1"}}  # no memory set: none added
    assert deploy.memory_plus({"limits": {"memory": "1000M"}}, "1M") == {"limits": {"memory": "955Mi"}}  # rounded up
    with pytest.raises(ValueError, match="'16GB' is not a Kubernetes quantity"):
        deploy.memory_plus({"limits": {"memory": "1Gi"}}, "16GB")


def test_pod_labels_go_to_the_pods_only_and_never_replace_a_standard_label():
    spec = {"kind": "Deployment", "name": "vllm", "namespace": "ai-lab", "component": "gpu-backend",
            "pod_labels": {"ailab.gpu-lab/route": "on"},
            "containers": [{"name": "vllm", "image": "x", "resources": {"limits": {"memory": "1Gi"}}}]}
    obj = deploy.workload(spec)
    assert obj["spec"]["template"]["metadata"]["labels"]["ailab.gpu-lab/route"] == "on"
    assert "ailab.gpu-lab/route" not in obj["metadata"]["labels"]
    assert "ailab.gpu-lab/route" not in obj["spec"]["selector"]["matchLabels"]  # the ReplicaSet keeps its pod
    spec["pod_labels"] = {"app.kubernetes.io/name": "other"}
    with pytest.raises(ValueError, match="pod_labels may not set the standard label"):
        deploy.workload(spec)
