# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy playbook's shared pieces: labels, the one pod shape, the GPU backend Deployment, the GPU owner,
input checks.

ONE place for what every workload of the lab shares (``workload()``: labels and selector, no service-account
token, seccomp and the pod's user, container hardening, termination message policy, resources), so no
template can drift from it; on top of it, one place for what the vLLM and Ollama Deployments share
(Recreate, runtimeClassName, the GPU limit, node selection, probes sized from one load budget), so the two
GPU backends cannot drift apart; the DaemonSet that pulls both backends' images on the GPU nodes
(from the same node selection); and the early validation of the deploy inputs (components, initial GPU owner, PVC sizes,
backup tiers, Qdrant collections), which collects EVERY problem and names the variable and the fix.

Plain Python (stdlib only), used by plugins/filter/deploy.py and unit-tested directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog
from ansible_collections.ailab.gpu_lab.plugins.module_utils import components as _components
from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as _litellm_config
from ansible_collections.ailab.gpu_lab.plugins.module_utils import neo4j_schema as _neo4j_schema

PART_OF = "ai-lab"
MANAGED_BY = "ailab.gpu_lab"
GPU_BACKENDS = ("ollama", "vllm")
OWNERS = GPU_BACKENDS + ("none",)
BACKUP_TIERS = ("gfs", "daily", "none")
QDRANT_DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
GPU_NODE_LABEL = "nvidia.com/gpu.present"

# Kubernetes resource.Quantity (the forms a PVC size takes): digits, optional fraction, optional suffix.
_QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_SUFFIX = {None: 1, "m": 0.001, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_COLLECTION_KEYS = ("name", "vector_size", "distance", "embedding_model")
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
TAILNET = ipaddress.ip_network("100.64.0.0/10")  # Tailscale's addresses (CGNAT range)


class DeployError(ValueError):
    """Deploy inputs that cannot be used; ``errors`` lists every problem (one sentence each)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(DeployError, self).__init__("deploy inputs: %d problem%s found:\n%s" % (
            len(self.errors), "" if len(self.errors) == 1 else "s", "\n".join("  - " + e for e in self.errors)))


# -- labels ----------------------------------------------------------------------------------------

def selector_labels(name, instance=None):
    """The labels a workload's selector uses (never change them: selectors are immutable)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance or name}


def standard_labels(name, component, instance=None, extra=None):
    """``app.kubernetes.io/*`` labels every object of the lab carries (part-of ai-lab, managed-by us)."""
    labels = selector_labels(name, instance)
    labels.update({"app.kubernetes.io/component": component, "app.kubernetes.io/part-of": PART_OF,
                   "app.kubernetes.io/managed-by": MANAGED_BY})
    labels.update(extra or {})
    return labels


# -- quantities --------------------------------------------------------------------------------------

def parse_quantity(value):
    """Bytes of a Kubernetes quantity such as ``20Gi`` or ``500M``; raises ValueError when it does not parse."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("must be a Kubernetes quantity string such as '20Gi', got %r" % (value,))
    match = _QUANTITY_RE.match(str(value).strip())
    if not match:
        raise ValueError("%r is not a Kubernetes quantity: write a number with a suffix Ki/Mi/Gi/Ti (binary) or "
                         "k/M/G/T (decimal), e.g. '20Gi'" % (value,))
    return float(match.group(1)) * _SUFFIX[match.group(3)]


def memory_plus(resources, extra):
    """``resources`` (``{requests, limits}``) with the quantity ``extra`` added to the memory request and limit that
    are set (in Mi, rounded up); the rest as it is. vLLM's level-1 sleep keeps the weights in host RAM: its pod's
    memory grows by their size (vllm_sleep_host_memory)."""
    add = parse_quantity(extra)
    out = dict((key, dict(value)) if isinstance(value, dict) else value for key, value in (resources or {}).items())
    for part in ("requests", "limits"):
        memory = (out.get(part) or {}).get("memory")
        if memory is not None:
            out[part]["memory"] = "%dMi" % -(-(parse_quantity(memory) + add) // _SUFFIX["Mi"])
    return out


# -- the GPU owner ------------------------------------------------------------------------------------

def parse_gpu_owner(value, models):
    """``ollama`` | ``vllm:<catalog alias>`` | ``vllm`` (the only vLLM model) | ``none`` -> {owner, model}.

    Raises DeployError naming gpu_lab_gpu_owner and the catalog's vLLM aliases.
    """
    vllm = [m["name"] for m in _catalog.models_by_backend(models, "vllm")]
    if not isinstance(value, str) or not value.strip():
        raise DeployError(["gpu_lab_gpu_owner: must be 'ollama', 'vllm:<alias>' or 'none', got %r" % (value,)])
    owner, _sep, model = value.strip().partition(":")
    if owner not in OWNERS:
        raise DeployError(["gpu_lab_gpu_owner: %r is not an owner%s; use 'ollama', 'vllm:<alias>' (vLLM aliases of the "
                           "catalog: %s) or 'none'" % (value, _catalog.did_you_mean(owner, OWNERS),
                                                       ", ".join(vllm) or "none")])
    if owner != "vllm":
        if model:
            raise DeployError(["gpu_lab_gpu_owner: %r: only vllm takes a model ('vllm:<alias>'); write '%s'"
                               % (value, owner)])
        return {"owner": owner, "model": ""}
    if not model:
        if len(vllm) == 1:
            model = vllm[0]
        else:
            raise DeployError(["gpu_lab_gpu_owner: 'vllm' needs the model: write 'vllm:<alias>' with one of the catalog's "
                               "vLLM aliases: %s" % (", ".join(vllm) or "(none: add a backend: vllm entry to "
                                                     "gpu_lab_models)")])
    if model not in vllm:
        raise DeployError(["gpu_lab_gpu_owner: %r: '%s' is not a vLLM alias of gpu_lab_models%s; vLLM aliases: %s"
                           % (value, model, _catalog.did_you_mean(model, vllm), ", ".join(vllm) or "none")])
    return {"owner": "vllm", "model": model}


def owner_replicas(state, backend):
    """Replicas of GPU backend ``backend`` under the recorded state: 1 for the owner, 0 for every other."""
    if backend not in GPU_BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (", ".join(GPU_BACKENDS), backend))
    return 1 if (state or {}).get("owner") == backend else 0


# -- one pod shape: every workload of the lab ---------------------------------------------------------
# What every Deployment, StatefulSet and DaemonSet of the lab shares is written here and nowhere else (issue
# 17, "One pod shape"): the standard labels on the object and its pods and the selector; no Service links;
# no service-account token unless the workload says it needs the API; the pod's seccomp profile and, where
# the image runs unprivileged, its user, group and fsGroup; each container's hardening (no privilege
# escalation, every capability dropped, a read-only root filesystem where the image allows it), its
# termination message policy and its resources. The templates pass only what differs; a unit test fails
# when a template writes one of these fields itself (tests/unit/test_deploy_pod_shape.py).

# A crashed container's last log lines become its termination message when it wrote none itself: a real
# kubelet then has something to report (lastState.terminated.message), which gpu_swap shows when it fails.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
SECCOMP_PROFILE = {"type": "RuntimeDefault"}
REVISION_HISTORY_LIMIT = 3
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# The fields the builder writes in every pod and every container (a container that writes one of its own is refused;
# the pod's are not keys of a spec at all).
POD_SHAPE_FIELDS = ("enableServiceLinks", "automountServiceAccountToken", "securityContext")
CONTAINER_SHAPE_FIELDS = ("securityContext", "terminationMessagePolicy")

_COMMON_KEYS = ("kind", "name", "namespace", "component", "instance", "annotations", "pod_annotations", "pod_labels",
                "containers",
                "init_containers", "volumes", "run_as", "needs_api", "service_account", "runtime_class",
                "node_selector", "affinity", "tolerations", "termination_grace_seconds")
_KIND_KEYS = {"Deployment": ("replicas", "strategy"),
              "StatefulSet": ("replicas", "service_name", "update_strategy", "volume_claim_templates"),
              "DaemonSet": ("update_strategy",)}
_RUN_AS_KEYS = ("user", "group", "fs_group")


def _uid(where, value):
    """A user or group id >= 0 (extra vars arrive as strings); ValueError naming ``where``."""
    try:
        number = None if isinstance(value, bool) else int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < 0:
        raise ValueError("%s must be a numeric id >= 0, got %r" % (where, value))
    return number


def pod_security_context(run_as=None, name="workload"):
    """The pod securityContext of the lab: ``seccompProfile: RuntimeDefault``, and with ``run_as``
    ({user, group, fs_group}, each optional) ``runAsNonRoot``/``runAsUser``/``runAsGroup`` (the group defaults to
    the user) and ``fsGroup``. An image that must start as root gives no user (it still drops every capability)."""
    run_as = dict(run_as or {})
    unknown = sorted(set(run_as) - set(_RUN_AS_KEYS))
    if unknown:
        raise ValueError("%s: run_as: unknown key%s %s; keys: %s" % (
            name, "" if len(unknown) == 1 else "s", ", ".join(unknown), ", ".join(_RUN_AS_KEYS)))
    context = {}
    if run_as.get("user") is not None:
        user = _uid("%s: run_as.user" % name, run_as["user"])
        if user == 0:
            raise ValueError("%s: run_as.user 0 is root; leave run_as.user out for an image that must start as root"
                             % name)
        context.update(runAsNonRoot=True, runAsUser=user,
                       runAsGroup=user if run_as.get("group") is None else _uid("%s: run_as.group" % name,
                                                                                run_as["group"]))
    elif run_as.get("group") is not None:
        raise ValueError("%s: run_as.group needs run_as.user" % name)
    if run_as.get("fs_group") is not None:
        context["fsGroup"] = _uid("%s: run_as.fs_group" % name, run_as["fs_group"])
    context["seccompProfile"] = dict(SECCOMP_PROFILE)
    return context


def container_security_context(read_only_root=False, extra=None, name="container"):
    """A container's securityContext: no privilege escalation, every capability dropped, a read-only root
    filesystem when ``read_only_root``; ``extra`` adds fields (``capabilities.add`` included) but cannot undo
    those (ValueError)."""
    context = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if read_only_root:
        context["readOnlyRootFilesystem"] = True
    extra = dict(extra or {})
    capabilities = dict(extra.pop("capabilities", None) or {})
    weakened = [key for key in ("allowPrivilegeEscalation", "privileged") if extra.get(key)]
    weakened += ["readOnlyRootFilesystem"] if read_only_root and extra.get("readOnlyRootFilesystem") is False else []
    weakened += ["capabilities.drop"] if capabilities.pop("drop", ["ALL"]) != ["ALL"] else []
    if weakened:
        raise ValueError("%s: security_context may add to the lab's container hardening, not undo it: %s"
                         % (name, ", ".join(weakened)))
    context.update(extra)
    if capabilities.get("add"):
        context["capabilities"]["add"] = [str(c) for c in capabilities["add"]]
    return context


def _container(workload_name, spec):
    """A container of the lab: ``spec`` in Kubernetes' own fields plus the builder's keys ``read_only_root`` and
    ``security_context``; the hardening and the termination message policy go in right after the resources."""
    spec = _plain(spec)
    name = spec.get("name")
    where = "%s: container %s" % (workload_name, name or "(no name)")
    if not name or not spec.get("image"):
        raise ValueError("%s: every container needs a name and an image" % where)
    written = [key for key in CONTAINER_SHAPE_FIELDS if key in spec]
    if written:
        raise ValueError("%s: %s %s written by the pod shape (module_utils/deploy.py workload()); use read_only_root "
                         "or security_context (additions) instead"
                         % (where, ", ".join(written), "is" if len(written) == 1 else "are"))
    if "resources" not in spec:
        raise ValueError("%s: no resources; every container of the lab declares its requests and limits" % where)
    context = container_security_context(spec.pop("read_only_root", False), spec.pop("security_context", None),
                                         where)
    container = {}
    for key, value in spec.items():
        container[key] = value
        if key == "resources":
            container["securityContext"] = context
            container["terminationMessagePolicy"] = TERMINATION_MESSAGE_POLICY
    return container


def workload(spec):
    """A Deployment, StatefulSet or DaemonSet of the lab in the one pod shape (the fields above, written here only).

    ``spec`` keys: kind, name, namespace, component, containers (each Kubernetes' container fields with resources,
    plus ``read_only_root`` and ``security_context`` additions); optional: instance (app.kubernetes.io/instance,
    default the name), annotations, pod_annotations, pod_labels (more labels of the pods only, never a standard
    one: e.g. vLLM's route label, which its Service selects and the swap turns off), init_containers, volumes, run_as {user, group, fs_group}
    (unprivileged images), needs_api (mount the service-account token; default false), service_account,
    runtime_class, node_selector, affinity, tolerations, termination_grace_seconds; Deployment: replicas (default
    1), strategy; StatefulSet: replicas, service_name, update_strategy, volume_claim_templates; DaemonSet:
    update_strategy. Empty optional values are left out. Raises ValueError naming the workload for an unknown key,
    a container without resources, or a field of the shape written by the caller.
    """
    kind = spec.get("kind")
    name = spec.get("name")
    if kind not in WORKLOAD_KINDS:
        raise ValueError("%s: kind must be one of %s, got %r" % (name or "workload", ", ".join(WORKLOAD_KINDS), kind))
    allowed = _COMMON_KEYS + _KIND_KEYS[kind]
    unknown = [key for key in spec if key not in allowed]
    if unknown:
        owners = sorted(k for k, keys in _KIND_KEYS.items() if unknown[0] in keys)
        hint = (" (a key of a %s only)" % " or ".join(owners)) if owners else _catalog.did_you_mean(unknown[0], allowed)
        raise ValueError("%s %s: unknown key%s %s%s; keys: %s" % (
            kind, name, "" if len(unknown) == 1 else "s", ", ".join(sorted(unknown)), hint, ", ".join(allowed)))
    for key in ("name", "namespace", "component"):
        if not spec.get(key):
            raise ValueError("%s %s: %s is required" % (kind, name or "(no name)", key))
    if not spec.get("containers"):
        raise ValueError("%s %s: no containers" % (kind, name))
    instance = spec.get("instance") or None
    labels = standard_labels(name, spec["component"], instance)
    needs_api = bool(spec.get("needs_api"))
    pod_spec = {"enableServiceLinks": False, "automountServiceAccountToken": needs_api}
    if spec.get("service_account"):
        pod_spec["serviceAccountName"] = spec["service_account"]
    if spec.get("termination_grace_seconds") is not None:
        pod_spec["terminationGracePeriodSeconds"] = int(spec["termination_grace_seconds"])
    pod_spec["securityContext"] = pod_security_context(spec.get("run_as"), "%s %s" % (kind, name))
    for key, field in (("runtime_class", "runtimeClassName"), ("node_selector", "nodeSelector"),
                       ("affinity", "affinity"), ("tolerations", "tolerations")):
        if spec.get(key):
            pod_spec[field] = _plain(spec[key])
    if spec.get("init_containers"):
        pod_spec["initContainers"] = [_container(name, c) for c in spec["init_containers"]]
    pod_spec["containers"] = [_container(name, c) for c in spec["containers"]]
    if spec.get("volumes"):
        pod_spec["volumes"] = _plain(spec["volumes"])
    template_meta = {"labels": dict(labels)}
    taken = sorted(set(spec.get("pod_labels") or {}) & set(labels))
    if taken:
        raise ValueError("%s %s: pod_labels may not set the standard label(s) %s" % (kind, name, ", ".join(taken)))
    template_meta["labels"].update(_plain(spec.get("pod_labels") or {}))
    if spec.get("pod_annotations"):
        template_meta["annotations"] = _plain(spec["pod_annotations"])
    metadata = {"name": name, "namespace": spec["namespace"], "labels": labels}
    if spec.get("annotations"):
        metadata["annotations"] = _plain(spec["annotations"])
    body = {}
    if kind == "StatefulSet":
        if not spec.get("service_name"):
            raise ValueError("StatefulSet %s: service_name (its headless Service) is required" % name)
        body["serviceName"] = spec["service_name"]
    if spec.get("update_strategy"):
        body["updateStrategy"] = _plain(spec["update_strategy"])
    if kind != "DaemonSet":
        body["replicas"] = int(spec.get("replicas", 1))
    body["revisionHistoryLimit"] = REVISION_HISTORY_LIMIT
    if spec.get("strategy"):
        body["strategy"] = _plain(spec["strategy"])
    body["selector"] = {"matchLabels": selector_labels(name, instance)}
    body["template"] = {"metadata": template_meta, "spec": pod_spec}
    if spec.get("volume_claim_templates"):
        body["volumeClaimTemplates"] = _plain(spec["volume_claim_templates"])
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": body}


# -- the GPU backend Deployment -----------------------------------------------------------------------


def _seconds(name, variable, value):
    """``value`` as a whole number of seconds > 0 (extra vars arrive as strings); ValueError naming the variable."""
    try:
        number = None if isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1 or str(number) != str(value).strip():
        raise ValueError("%s: %s_%s must be a whole number of seconds > 0, got %r" % (name, name, variable, value))
    return number


def startup_failure_threshold(name, budget, period):
    """failureThreshold of a startup probe that lets backend ``name`` load for ``budget`` seconds when it is
    probed every ``period`` seconds: ceil(budget / period), so failureThreshold x periodSeconds >= budget (the
    kubelet restarts the container after that many failures in a row; gpu_swap waits as long as the probe allows).
    Raises ValueError naming ``<name>_load_budget`` / ``<name>_startup_period`` for a budget shorter than a period."""
    budget = _seconds(name, "load_budget", budget)
    period = _seconds(name, "startup_period", period)
    if budget < period:
        raise ValueError("%s: %s_load_budget (%d s) is shorter than one startup probe period (%s_startup_period: %d s): "
                         "the budget is how long the backend may take from container start to a healthy answer; "
                         "give at least one period (minutes for a model load)" % (name, name, budget, name, period))
    return -(-budget // period)


def _probe(path, port, period, failure_threshold, timeout=5):
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": int(period), "timeoutSeconds": int(timeout),
            "failureThreshold": int(failure_threshold)}


def gpu_node_selector(node=None, extra=None):
    """The nodeSelector of the lab's GPU workloads: ``nvidia.com/gpu.present=true``, the node's hostname when
    ``node`` is given, then the ``extra`` entries (a backend's own node_selector)."""
    selector = {GPU_NODE_LABEL: "true"}
    if node:
        selector["kubernetes.io/hostname"] = node
    selector.update(extra or {})
    return selector


def gpu_backend_deployment(spec):
    """The Deployment of a GPU backend (vLLM or Ollama) from its component-specific ``spec``.

    What every GPU workload shares is set here and nowhere else, on top of the pod shape of every workload
    (``workload()``: labels, no service-account token, seccomp, container hardening, termination message
    policy): ``component: gpu-backend``, ``strategy: Recreate`` (a RollingUpdate deadlocks on one GPU),
    ``runtimeClassName``, ``limits: {<gpu_resource>: 1}``, the node selector on
    ``nvidia.com/gpu.present=true`` (+ the node's hostname when known), startup / readiness /
    liveness probes on one HTTP health path, the startup probe derived from the backend's load
    budget (``failureThreshold = ceil(budget / period)``), ``enableServiceLinks: false`` (a Service
    called ``vllm`` injects VLLM_PORT and crashes vLLM), and a Recreate-safe termination grace.
    ``spec`` keys: name, namespace, image, port, health_path, replicas, runtime_class, gpu_resource,
    startup {period, budget}, readiness {period, failure_threshold}, liveness {...}; optional:
    image_pull_policy, args, env, volumes, volume_mounts, resources, node, node_selector,
    tolerations, pod_annotations, pod_labels, annotations, security_context (additions to the container's hardening),
    termination_grace_seconds.
    """
    name = spec["name"]
    port = int(spec["port"])
    resources = {"requests": dict((spec.get("resources") or {}).get("requests") or {}),
                 "limits": dict((spec.get("resources") or {}).get("limits") or {})}
    resources["limits"][spec["gpu_resource"]] = 1
    resources["requests"].pop(spec["gpu_resource"], None)  # limits imply the request; one GPU, never more
    startup, readiness, liveness = spec["startup"], spec["readiness"], spec["liveness"]
    startup_threshold = startup_failure_threshold(name, startup["budget"], startup["period"])
    container = {
        "name": name,
        "image": spec["image"],
        "imagePullPolicy": spec.get("image_pull_policy") or "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": resources,
        "security_context": spec.get("security_context"),
        "startupProbe": _probe(spec["health_path"], "http", startup["period"], startup_threshold),
        "readinessProbe": _probe(spec["health_path"], "http", readiness["period"], readiness["failure_threshold"]),
        "livenessProbe": _probe(spec["health_path"], "http", liveness["period"], liveness["failure_threshold"]),
    }
    if spec.get("args"):
        container["args"] = [str(a) for a in spec["args"]]
    if spec.get("env"):
        container["env"] = list(spec["env"])
    if spec.get("volume_mounts"):
        container["volumeMounts"] = list(spec["volume_mounts"])
    return workload({
        "kind": "Deployment", "name": name, "namespace": spec["namespace"], "component": "gpu-backend",
        "annotations": spec.get("annotations"), "pod_annotations": spec.get("pod_annotations"),
        "pod_labels": spec.get("pod_labels"),
        "replicas": int(spec["replicas"]), "strategy": {"type": "Recreate"},
        "termination_grace_seconds": int(spec.get("termination_grace_seconds", 30)),
        "runtime_class": spec["runtime_class"],
        "node_selector": gpu_node_selector(spec.get("node"), spec.get("node_selector")),
        "tolerations": spec.get("tolerations"), "volumes": spec.get("volumes"), "containers": [container],
    })


# -- the GPU backends' images, pulled on the GPU nodes before a swap needs them ------------------------

PREPULL_NAME = "gpu-image-prepull"
PREPULL_USER = 65535  # the pause image's own user (kubernetes build/pause: USER 65535:65535); any non-root uid works


def _node_selector_term(selector):
    return {"matchExpressions": [{"key": key, "operator": "In", "values": [str(value)]}
                                 for key, value in sorted(selector.items())]}


def gpu_image_prepull_daemonset(spec):
    """The DaemonSet that keeps the GPU backends' images on every node the backends can run on.

    One init container per backend (``spec["backends"]``: name, image, image_pull_policy, node_selector,
    tolerations, optional command) with the backend's own image string and pull policy and a command that
    exits at once, so the kubelet pulls the image and the pod moves on; then one long-running pause
    container. Nodes: those of the backends' node selection without the hostname pin (a swap may pin a
    backend to any GPU node), i.e. ``gpu_node_selector(extra=<backend node_selector>)``: one distinct
    selection gives a plain nodeSelector, several give a required node affinity with one term each (OR);
    the tolerations are the backends' together. No GPU, no runtimeClassName (pulling needs neither), no
    service-account token, non-root, read-only root filesystem, small resources.
    ``spec`` keys: namespace, pause_image, backends; optional: command (default ``/bin/sh -c true``),
    pause_image_pull_policy, resources, pod_annotations, name (default gpu-image-prepull).
    Raises ValueError when no backend is given (nothing to pull: remove the DaemonSet instead).
    """
    backends = list(spec.get("backends") or [])
    if not backends:
        raise ValueError("%s: no GPU backend to pull images for; with both backends off the DaemonSet is removed, "
                         "not rendered" % spec.get("name", PREPULL_NAME))
    name = spec.get("name") or PREPULL_NAME
    command = [str(c) for c in spec.get("command") or ["/bin/sh", "-c", "true"]]
    resources = spec.get("resources") or {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}

    def container(cname, image, pull_policy, argv=None):
        out = {"name": cname, "image": image, "imagePullPolicy": pull_policy or "IfNotPresent",
               "resources": {k: dict(v) for k, v in resources.items()}, "read_only_root": True}
        if argv:
            out["command"] = list(argv)
            # Both backend images set NVIDIA_VISIBLE_DEVICES=all: on a node whose DEFAULT runtime is NVIDIA's, that
            # would hand every GPU to the pull, past the device plugin. "void" makes that runtime act as runc.
            out["env"] = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
        return out

    selectors, tolerations = [], []
    for backend in backends:
        selector = gpu_node_selector(extra=backend.get("node_selector"))
        if selector not in selectors:
            selectors.append(selector)
        for toleration in backend.get("tolerations") or []:
            if toleration not in tolerations:
                tolerations.append(dict(toleration))
    pod = {
        "kind": "DaemonSet", "name": name, "namespace": spec["namespace"], "component": "image-prepull",
        "pod_annotations": spec.get("pod_annotations"), "termination_grace_seconds": 5,
        "run_as": {"user": PREPULL_USER, "group": PREPULL_USER},
        "init_containers": [container("pull-" + b["name"], b["image"], b.get("image_pull_policy"),
                                      b.get("command") or command) for b in backends],
        "containers": [container("pause", spec["pause_image"], spec.get("pause_image_pull_policy"))],
        "tolerations": tolerations,
    }
    if len(selectors) == 1:
        pod["node_selector"] = selectors[0]
    else:
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [_node_selector_term(s) for s in selectors]}}}
    return workload(pod)


# -- what an apply changed ----------------------------------------------------------------------------

def apply_diff(registered):
    """The changed objects of a registered kubernetes.core.k8s result, each with its before/after diff.

    k8s reports the diff of a multi-object ``definition`` only per object (nested in
    ``result.results``), so the default callback shows none; the roles print this list under --diff.
    """
    result = (registered or {}).get("result") or {}
    items = result.get("results") if isinstance(result.get("results"), list) else [registered or {}]
    changes = []
    for item in items:
        if not item.get("changed"):
            continue
        obj = item.get("result") or {}
        meta = obj.get("metadata") or {}
        name = "/".join(p for p in (obj.get("kind", "?"), meta.get("namespace"), meta.get("name", "?")) if p)
        diff = item.get("diff") or {}
        changes.append({"object": name, "method": item.get("method", ""), "before": diff.get("before"),
                        "after": diff.get("after")})
    return changes


# -- early validation -----------------------------------------------------------------------------

def validate_deploy(inputs):
    """Check the deploy inputs before anything is applied; return the normalized view.

    ``inputs``: components (mapping component -> bool), known_components (list), models, routes,
    gpu_owner (initial owner string), namespace, sizes (mapping variable -> quantity),
    backup_tiers (mapping variable -> tier), qdrant_collections (list), embedding_model (alias or "").
    Optional, so that every role's own check runs here first too: render (bool: only the enabled
    components' roles run), vllm_model (an explicit vllm_model or ""), role_inputs (role -> the
    variables its own rule checks, see ROLE_INPUT_CHECKS; checked for enabled components),
    role_components (role -> component where the names differ, e.g. monitoring -> observability),
    role_specs (the registered results of ``validate_argument_spec`` run on each component role's
    meta/argument_specs.yml), litellm (what the litellm role's litellm_config task gets: config,
    models, routes, namespace, provided_env without the catalog's names, allow_*), load_budgets
    (GPU backend -> {budget, period}: its <backend>_load_budget and <backend>_startup_period), ports (the
    component registry's port variables -> their values, e.g. vllm_port; see module_utils/components.py).
    Returns {components: [enabled...], owner: {owner, model}, models: normalized catalog}.
    Raises DeployError listing every problem, each naming the variable and the fix.
    """
    errors = []
    known = list(inputs.get("known_components") or [])
    components = inputs.get("components")
    enabled = []
    if not isinstance(components, dict):
        errors.append("gpu_lab_components: must be a mapping component -> true/false (components: %s), got %s"
                      % (", ".join(known), type(components).__name__))
        components = {}
    for key, value in components.items():
        if key not in known:
            errors.append("gpu_lab_components: '%s' is not a component%s; components: %s"
                          % (key, _catalog.did_you_mean(key, known), ", ".join(known)))
        elif not isinstance(value, bool):
            errors.append("gpu_lab_components.%s: must be true or false, got %r" % (key, value))
        elif value:
            enabled.append(key)

    models = []
    try:
        models = _catalog.validate_catalog(inputs.get("models"), inputs.get("routes"))
    except _catalog.CatalogError as exc:
        errors.extend(exc.errors)

    owner = None
    if models or not errors:
        try:
            owner = parse_gpu_owner(inputs.get("gpu_owner"), models)
        except DeployError as exc:
            errors.extend(exc.errors)
    if "vllm" in enabled and models and not [m for m in models if m["backend"] == "vllm"]:
        errors.append("gpu_lab_components.vllm: is true but gpu_lab_models has no backend: vllm entry; add one (with a "
                      "pinned revision) or set gpu_lab_components.vllm: false")
    if owner and owner["owner"] != "none" and owner["owner"] not in enabled:
        errors.append("gpu_lab_gpu_owner: '%s' is the initial owner but gpu_lab_components.%s is false; enable it or "
                      "set gpu_lab_gpu_owner: none" % (owner["owner"], owner["owner"]))

    namespace = inputs.get("namespace")
    if not isinstance(namespace, str) or not _DNS_LABEL_RE.match(namespace):
        errors.append("gpu_lab_namespace: %r is not a namespace name (lowercase letters, digits and '-', at most 63)"
                      % (namespace,))

    for var, value in sorted((inputs.get("sizes") or {}).items()):
        try:
            if parse_quantity(value) <= 0:
                errors.append("%s: %r must be larger than zero" % (var, value))
        except ValueError as exc:
            errors.append("%s: %s" % (var, exc))
    for var, value in sorted((inputs.get("backup_tiers") or {}).items()):
        if value not in BACKUP_TIERS:
            errors.append("%s: %r is not a backup tier%s; use %s" % (
                var, value, _catalog.did_you_mean(value, BACKUP_TIERS), ", ".join(BACKUP_TIERS)))

    embedding = inputs.get("embedding_model")
    errors.extend(_check_collections(inputs.get("qdrant_collections") or [], models, embedding))
    if embedding and models:
        errors.extend(_embedding_alias_errors("open_webui_embedding_model", embedding, models))
    vllm_model = inputs.get("vllm_model")
    vllm_aliases = [m["name"] for m in models if m["backend"] == "vllm"]
    if vllm_model and models and vllm_model not in vllm_aliases:
        errors.append("vllm_model: '%s' is not a vLLM alias of gpu_lab_models%s; vLLM aliases: %s (or leave it empty: "
                      "the recorded GPU owner's model)"
                      % (vllm_model, _catalog.did_you_mean(vllm_model, vllm_aliases), ", ".join(vllm_aliases) or "none"))

    role_components = inputs.get("role_components") or {}
    for role, values in sorted((inputs.get("role_inputs") or {}).items()):
        if role_components.get(role, role) in enabled:
            errors.extend(role_input_errors(role, values))
    for result in inputs.get("role_specs") or []:
        role = str(result.get("item", "?")).rsplit(".", maxsplit=1)[-1]
        # A role whose component is off still runs (state absent) and checks its spec, unless deploy only renders.
        if not inputs.get("render") or role_components.get(role, role) in enabled:
            errors.extend("%s (meta/argument_specs.yml of role ailab.gpu_lab.%s)" % (e, role)
                          for e in result.get("argument_errors") or [])
    if "litellm" in enabled and models and inputs.get("litellm"):
        errors.extend(_litellm_errors(inputs["litellm"], models, inputs.get("routes")))
    for backend, probe in sorted((inputs.get("load_budgets") or {}).items()):
        # the role builds its Deployment in every state but rendering a component that is off
        if not inputs.get("render") or backend in enabled:
            try:
                startup_failure_threshold(backend, (probe or {}).get("budget"), (probe or {}).get("period"))
            except ValueError as exc:
                errors.append(str(exc))
    errors.extend(_components.registry_errors(inputs.get("ports") or {}))
    if errors:
        raise DeployError(errors)
    return {"components": enabled, "owner": owner, "models": models}


def _embedding_alias_errors(where, alias, models):
    """Problems of ``alias`` as an embedding model of the (valid, normalized) catalog ``models``."""
    names = dict((m["name"], m) for m in models)
    if alias not in names:
        return ["%s: '%s' is not an alias of gpu_lab_models%s" % (where, alias, _catalog.did_you_mean(alias, list(names)))]
    if names[alias]["mode"] != "embedding":
        return ["%s: '%s' is a %s model; name a catalog entry with mode: embedding" % (where, alias, names[alias]["mode"])]
    return []


def _check_collections(collections, models=(), lab_embedding=""):
    """Problems of qdrant_collections; with a valid catalog, each vector_size is checked against the
    ``dimensions`` of the embedding model the collection is used with (its ``embedding_model``, else the
    lab's ``lab_embedding``; ``embedding_model: ""`` for vectors from outside the catalog)."""
    errors = []
    if not isinstance(collections, list):
        return ["qdrant_collections: must be a list of {name, vector_size, distance}, got %s" % type(collections).__name__]
    by_name = dict((m["name"], m) for m in models or [])
    seen = set()
    for index, item in enumerate(collections):
        where = "qdrant_collections[%d]" % index
        if not isinstance(item, dict):
            errors.append("%s: must be a mapping {name, vector_size, distance}" % where)
            continue
        for key in item:
            if key not in _COLLECTION_KEYS:
                errors.append("%s: unknown key '%s'%s; keys: %s"
                              % (where, key, _catalog.did_you_mean(key, _COLLECTION_KEYS), ", ".join(_COLLECTION_KEYS)))
        name = item.get("name")
        if not isinstance(name, str) or not _COLLECTION_RE.match(name):
            errors.append("%s: name %r must be 1-255 letters, digits, '_' or '-'" % (where, name))
        elif name in seen:
            errors.append("%s: collection '%s' is declared twice" % (where, name))
        seen.add(name)
        size = item.get("vector_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            errors.append("%s: vector_size must be a positive integer (the embedding model's dimension, e.g. 768 "
                          "for nomic-embed-text), got %r" % (where, size))
        distance = item.get("distance", "Cosine")
        if distance not in QDRANT_DISTANCES:
            errors.append("%s: distance %r is not one of %s%s" % (
                where, distance, ", ".join(QDRANT_DISTANCES), _catalog.did_you_mean(distance, QDRANT_DISTANCES)))
        model = item.get("embedding_model", lab_embedding) if by_name else None
        if model and "embedding_model" in item:
            alias_errors = _embedding_alias_errors("%s: embedding_model" % where, model, models)
            errors.extend(alias_errors)
            model = None if alias_errors else model
        dimensions = by_name[model].get("dimensions") if model in by_name else None
        if dimensions and isinstance(size, int) and not isinstance(size, bool) and size >= 1 and size != dimensions:
            errors.append("%s (name '%s'): vector_size %d does not match embedding model '%s', whose vectors have %d "
                          "dimensions (dimensions in gpu_lab_models); Qdrant would refuse every vector it returns. Set "
                          "vector_size: %d, or name the collection's own model with embedding_model: <alias> (\"\" for "
                          "vectors from outside the catalog)%s" % (
                              where, name, size, model, dimensions, dimensions,
                              "" if "embedding_model" in item else "; '%s' is the lab's embedding model "
                              "(open_webui_embedding_model), the default for every collection" % model))
    return errors


# -- the component roles' own input rules -----------------------------------------------------------
# What an argument spec cannot express. Each role checks its rule when it starts (for use on its own;
# filter ailab.gpu_lab.deploy_input_errors), and the deploy playbook's early check runs the rule of every
# enabled component first, so nothing is applied before a later role would refuse its input. ``values``
# maps the role's variable names to their values, plus the role's own constants the rule compares with.

def _ingress_errors(values):
    errors = []
    address = values.get("ingress_tailnet_ip")
    try:
        ok = ipaddress.ip_address(str(address).strip()) in TAILNET
    except ValueError:
        ok = False
    if not ok:
        errors.append("ingress_tailnet_ip: got %r, not an address in %s (the tailnet): Traefik must bind the host's "
                      "tailnet address only, never a LAN or public one; set gpu_lab_tailnet_ip (or ingress_tailnet_ip, "
                      "provision_tailscale_ip) to the host's `tailscale ip -4`"
                      % ("" if address is None else address, str(TAILNET)))
    hostname = values.get("ingress_hostname")
    if not isinstance(hostname, str) or not _HOSTNAME_RE.match(hostname):
        errors.append("ingress_hostname: got %r, not a DNS name: set gpu_lab_tailnet_name (or ingress_hostname) to "
                      "the host's MagicDNS name, e.g. gpu-box.tail1234.ts.net" % ("" if hostname is None else hostname,))
    if values.get("ingress_tls_source") == "files":
        missing = [v for v in ("ingress_tls_cert_file", "ingress_tls_key_file") if not values.get(v)]
        if missing:
            errors.append("ingress_tls_source: files needs both ingress_tls_cert_file and ingress_tls_key_file (a PEM "
                          "pair on the controller); missing: %s" % ", ".join(missing))
    return errors


def _fraction(value, upper_open=False):
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return 0 < number < 1 if upper_open else 0 < number <= 1


def _monitoring_errors(values):
    errors = []
    for var in ("monitoring_alert_gpu_memory_ratio", "monitoring_alert_gateway_error_ratio",
                "monitoring_alert_fallback_ratio"):
        if var in values and not _fraction(values[var]):
            errors.append("%s: %r is not a fraction in (0, 1], e.g. 0.97 for 97 %%" % (var, values[var]))
    var = "monitoring_alert_disk_free_ratio"
    if var in values and not _fraction(values[var], upper_open=True):
        errors.append("%s: %r is not a fraction in (0, 1), e.g. 0.10 for 10 %% free" % (var, values[var]))
    for var in ("monitoring_alert_swap_failures", "monitoring_alert_unanswered_requests"):
        value = values.get(var, 1)
        if isinstance(value, bool) or not str(value).isdigit() or int(value) < 1:
            errors.append("%s: %r is not a count of at least 1 (the alert fires at that many events)" % (var, value))
    known = list(values.get("_monitoring_known_dashboards") or [])
    unknown = [d for d in values.get("monitoring_dashboards") or [] if d not in known]
    if unknown:
        errors.append("monitoring_dashboards: %s %s not shipped; choose from %s" % (
            ", ".join(map(repr, unknown)), "is" if len(unknown) == 1 else "are", ", ".join(known)))
    prefix = values.get("monitoring_prometheus_route_prefix")
    if "monitoring_prometheus_route_prefix" in values and not (isinstance(prefix, str) and prefix.startswith("/")):
        errors.append("monitoring_prometheus_route_prefix: %r must start with /, e.g. / or /prometheus" % (prefix,))
    return errors


def _network_policy_errors(values):
    # The ports the policies open come from the component registry (checked by validate_deploy).
    errors = []
    for cidr in values.get("network_policy_internet_except") or []:
        try:
            ok = "/" in str(cidr) and ipaddress.ip_network(str(cidr), strict=False).version == 4
        except ValueError:
            ok = False
        if not ok:
            errors.append("network_policy_internet_except: %r is not an IPv4 CIDR such as 10.0.0.0/8" % (cidr,))
    return errors


def _searxng_errors(values):
    """searxng_settings is merged into the settings.yml of a ConfigMap: no secret_key there (SearXNG reads it from
    env SEARXNG_SECRET, a Secret), and JSON output stays on (Open WebUI's searxng engine asks for format=json;
    SearXNG answers 403 to a format its search.formats does not list, searx/webapp.py)."""
    errors = []
    settings = values.get("searxng_settings")
    if settings in (None, ""):
        return errors
    if not isinstance(settings, dict):
        return ["searxng_settings: must be a mapping of settings.yml keys, got %s" % type(settings).__name__]
    server = settings.get("server")
    if isinstance(server, dict) and "secret_key" in server:
        errors.append("searxng_settings: server.secret_key would be written into the ConfigMap searxng-settings; "
                      "remove it: SearXNG reads it from env SEARXNG_SECRET (Secret searxng-secret, which the secrets "
                      "playbook fills from .env or generates)")
    search = settings.get("search")
    if isinstance(search, dict) and "formats" in search:
        formats = search["formats"]
        if not isinstance(formats, list) or "json" not in formats:
            errors.append("searxng_settings: search.formats %r has no json: Open WebUI's web search asks for "
                          "format=json and SearXNG would answer 403; add json (e.g. [html, json])" % (formats,))
    return errors


def _vllm_errors(values):
    """vLLM's sleep mode (the GPU hand-over's fast path, docs/gpu_swap.md) needs a GPU time-sliced into at least two
    slots, so that the sleeping vLLM and Ollama are both scheduled, and the host RAM its level-1 sleep holds."""
    errors = []
    sleep_mode = values.get("vllm_sleep_mode", False)
    words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    if not isinstance(sleep_mode, bool):  # -e vllm_sleep_mode=true arrives as a string
        if str(sleep_mode).strip().lower() not in words:
            errors.append("vllm_sleep_mode: must be true or false, got %r" % (sleep_mode,))
            return errors
        sleep_mode = words[str(sleep_mode).strip().lower()]
    if not sleep_mode:
        return errors
    replicas = values.get("gpu_runtime_time_slicing_replicas")
    try:
        slots = int(replicas or 0)
    except (TypeError, ValueError):
        slots = 0
    if slots < 2:
        errors.append("vllm_sleep_mode: true needs the GPU time-sliced into at least 2 slots (the sleeping vLLM keeps its "
                      "pod and its slot while Ollama gets the other), but gpu_runtime_time_slicing_replicas is %r: set "
                      "gpu_runtime_time_slicing_replicas: 2 (role gpu_runtime) or vllm_sleep_mode: false" % (replicas,))
    try:
        if parse_quantity(values.get("vllm_sleep_host_memory")) <= 0:
            errors.append("vllm_sleep_host_memory: %r must be larger than zero" % (values.get("vllm_sleep_host_memory"),))
    except ValueError as exc:
        errors.append("vllm_sleep_host_memory: %s (the host RAM a level-1 sleep holds: the weights of the largest vLLM "
                      "model of the catalog)" % exc)
    return errors


def _neo4j_errors(values):
    """The schema file (read on the controller, every statement checked: docs/neo4j.md) and the client selectors."""
    errors = _neo4j_schema.file_errors(values.get("neo4j_schema_file") or "")
    for index, selector in enumerate(values.get("neo4j_clients") or []):
        if not isinstance(selector, dict) or not selector or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
            errors.append("neo4j_clients[%d]: %r is not a matchLabels map of the client pods (label: value), e.g. "
                          "{app.kubernetes.io/name: my-app}" % (index, selector))
    return errors


# llama-stack releases whose remote::qdrant provider does not start (a method signature upstream fixed after 0.2.12,
# meta-llama/llama-stack#2503; tests/functional/test_llama_stack.py starts 0.2.12 with it) and whose images lack
# qdrant-client: an image tagged with one of them cannot have Qdrant as its vector store.
_LLAMA_STACK_NO_QDRANT = re.compile(r":v?0\.(0\.\d+|1\.\d+(\.\d+)?|2\.([0-9]|1[0-2])(\.\d+)?)$")


def _llama_stack_errors(values):
    qdrant = values.get("llama_stack_qdrant_enabled", False)
    if str(qdrant).strip().lower() not in ("true", "yes", "on", "1"):
        return []
    image = str(values.get("llama_stack_image") or "")
    if _LLAMA_STACK_NO_QDRANT.search(image):
        return ["llama_stack_qdrant_enabled: true needs an image built from a llama-stack release after 0.2.12 with "
                "the remote::qdrant provider (0.2.12 and earlier refuse to start with it, and their images lack "
                "qdrant-client), but llama_stack_image is %s: set llama_stack_image to such an image or "
                "llama_stack_qdrant_enabled: false (roles/llama_stack/README.md, \"Qdrant\")" % image]
    return []


ROLE_INPUT_CHECKS = {"ingress": _ingress_errors, "monitoring": _monitoring_errors,
                     "network_policy": _network_policy_errors, "searxng": _searxng_errors, "vllm": _vllm_errors,
                     "neo4j": _neo4j_errors, "llama_stack": _llama_stack_errors}


def role_input_errors(role, values):
    """The problems ``role``'s own input rule finds in ``values`` (variable name -> value): a list, [] when fine."""
    if role not in ROLE_INPUT_CHECKS:
        raise ValueError("no input rule for role %r; roles with one: %s" % (role, ", ".join(sorted(ROLE_INPUT_CHECKS))))
    if not isinstance(values, dict):
        raise ValueError("the values of role %s must be a mapping variable -> value, got %s" % (role, type(values).__name__))
    return ROLE_INPUT_CHECKS[role](values)


def _plain(value):
    """``value`` as plain dicts and lists (a template engine's lazy containers must not be deep-copied)."""
    if isinstance(value, dict):
        return dict((key, _plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _litellm_errors(litellm, models, routes):
    """What the litellm role's litellm_config task would refuse, found first (same assembly and checks)."""
    litellm = _plain(litellm)
    own_models = litellm.get("models", models)
    try:
        merged = _litellm_config.assemble(litellm.get("config"), own_models, litellm.get("routes", routes),
                                          litellm.get("namespace") or "ai-lab")
        provided = list(litellm.get("provided_env") or []) + _catalog.env_names(own_models)
        problems = _litellm_config.validate(merged, provided_env=provided,
                                            allow_duplicate_aliases=bool(litellm.get("allow_duplicate_aliases")),
                                            allow_literal_secrets=bool(litellm.get("allow_literal_secrets")),
                                            allow_unknown_keys=litellm.get("allow_unknown_keys") or [])
    except (_litellm_config.ConfigError, _catalog.CatalogError) as exc:
        problems = exc.errors
    return ["LiteLLM config (litellm role: litellm_models, litellm_*_settings, litellm_extra_models): %s" % p
            for p in problems]
