# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy playbook's shared pieces: labels, the GPU backend Deployment, the GPU owner, input checks.

ONE place for what the vLLM and Ollama Deployments share (labels, Recreate, runtimeClassName,
the GPU limit, node selection, probes, enableServiceLinks), so the two GPU backends cannot drift
apart; and the early validation of the deploy inputs (components, initial GPU owner, PVC sizes,
backup tiers, Qdrant collections), which collects EVERY problem and names the variable and the fix.

Plain Python (stdlib only), used by plugins/filter/deploy.py and unit-tested directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog

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


# -- the GPU backend Deployment -----------------------------------------------------------------------

def _probe(path, port, period, failure_threshold, timeout=5):
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": int(period), "timeoutSeconds": int(timeout),
            "failureThreshold": int(failure_threshold)}


def gpu_backend_deployment(spec):
    """The Deployment of a GPU backend (vLLM or Ollama) from its component-specific ``spec``.

    What every GPU workload shares is set here and nowhere else: the standard labels with
    ``component: gpu-backend``, ``strategy: Recreate`` (a RollingUpdate deadlocks on one GPU),
    ``runtimeClassName``, ``limits: {<gpu_resource>: 1}``, the node selector on
    ``nvidia.com/gpu.present=true`` (+ the node's hostname when known), startup / readiness /
    liveness probes on one HTTP health path, ``enableServiceLinks: false`` (a Service called
    ``vllm`` injects VLLM_PORT and crashes vLLM), no service-account token, and a Recreate-safe
    termination grace. ``spec`` keys: name, namespace, image, port, health_path, replicas,
    runtime_class, gpu_resource, startup {period, failure_threshold}, readiness {...}, liveness {...};
    optional: image_pull_policy, args, env, volumes, volume_mounts, resources, node, node_selector,
    tolerations, pod_annotations, annotations, security_context, termination_grace_seconds.
    """
    name = spec["name"]
    port = int(spec["port"])
    resources = {"requests": dict((spec.get("resources") or {}).get("requests") or {}),
                 "limits": dict((spec.get("resources") or {}).get("limits") or {})}
    resources["limits"][spec["gpu_resource"]] = 1
    resources["requests"].pop(spec["gpu_resource"], None)  # limits imply the request; one GPU, never more
    node_selector = {GPU_NODE_LABEL: "true"}
    if spec.get("node"):
        node_selector["kubernetes.io/hostname"] = spec["node"]
    node_selector.update(spec.get("node_selector") or {})
    startup, readiness, liveness = spec["startup"], spec["readiness"], spec["liveness"]
    container = {
        "name": name,
        "image": spec["image"],
        "imagePullPolicy": spec.get("image_pull_policy") or "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": dict({"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                                **(spec.get("security_context") or {})),
        "startupProbe": _probe(spec["health_path"], "http", startup["period"], startup["failure_threshold"]),
        "readinessProbe": _probe(spec["health_path"], "http", readiness["period"], readiness["failure_threshold"]),
        "livenessProbe": _probe(spec["health_path"], "http", liveness["period"], liveness["failure_threshold"]),
    }
    if spec.get("args"):
        container["args"] = [str(a) for a in spec["args"]]
    if spec.get("env"):
        container["env"] = list(spec["env"])
    if spec.get("volume_mounts"):
        container["volumeMounts"] = list(spec["volume_mounts"])
    labels = standard_labels(name, "gpu-backend")
    pod_spec = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "runtimeClassName": spec["runtime_class"],
        "nodeSelector": node_selector,
        "terminationGracePeriodSeconds": int(spec.get("termination_grace_seconds", 30)),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if spec.get("tolerations"):
        pod_spec["tolerations"] = list(spec["tolerations"])
    if spec.get("volumes"):
        pod_spec["volumes"] = list(spec["volumes"])
    template_meta = {"labels": labels}
    if spec.get("pod_annotations"):
        template_meta["annotations"] = dict(spec["pod_annotations"])
    metadata = {"name": name, "namespace": spec["namespace"], "labels": labels}
    if spec.get("annotations"):
        metadata["annotations"] = dict(spec["annotations"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": int(spec["replicas"]),
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


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

    errors.extend(_check_collections(inputs.get("qdrant_collections") or []))

    embedding = inputs.get("embedding_model")
    if embedding and models:
        names = dict((m["name"], m) for m in models)
        if embedding not in names:
            errors.append("open_webui_embedding_model: '%s' is not an alias of gpu_lab_models%s" % (
                embedding, _catalog.did_you_mean(embedding, list(names))))
        elif names[embedding]["mode"] != "embedding":
            errors.append("open_webui_embedding_model: '%s' is a %s model; name a catalog entry with mode: embedding"
                          % (embedding, names[embedding]["mode"]))
    if errors:
        raise DeployError(errors)
    return {"components": enabled, "owner": owner, "models": models}


def _check_collections(collections):
    errors = []
    if not isinstance(collections, list):
        return ["qdrant_collections: must be a list of {name, vector_size, distance}, got %s" % type(collections).__name__]
    seen = set()
    for index, item in enumerate(collections):
        where = "qdrant_collections[%d]" % index
        if not isinstance(item, dict):
            errors.append("%s: must be a mapping {name, vector_size, distance}" % where)
            continue
        for key in item:
            if key not in ("name", "vector_size", "distance"):
                errors.append("%s: unknown key '%s'%s; keys: name, vector_size, distance"
                              % (where, key, _catalog.did_you_mean(key, ("name", "vector_size", "distance"))))
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
    return errors
