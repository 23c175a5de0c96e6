# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU hand-over as a transaction: intent, lock, stop, start, verify, commit, roll back.

Plain Python, importable without Ansible running. The ``gpu_swap`` module calls one step per
task (``status``, ``begin``, ``stop``, ``start``, ``rollback``, ``recover``); the role runs the
host-side steps between them (``model_pull state=unloaded``, ``gpu_capacity`` with
``nvidia-smi``). Everything a later run needs to finish or undo an interrupted swap is in the
cluster, never in the controller's memory:

* ConfigMap ``gpu-lab-state`` (lab namespace): ``owner`` / ``model`` / ``node`` (the recorded
  owner, written by deploy when absent and by this module on commit) and, while a swap runs,
  ``intent_from`` / ``intent_to`` / ``intent_phase`` / ``intent_holder`` / ``intent_started_at``.
* Lease ``gpu-lab-swap`` (coordination.k8s.io/v1): the lock. Taken with optimistic concurrency
  (``resourceVersion``), renewed by every step and while waiting, released on commit or rollback.
  A holder that died is recognised by its lease expiring (``leaseDurationSeconds`` after its
  last renewal).

The pure functions at the top (targets, readiness, lease expiry, vLLM arguments, recovery
decision) are unit-tested directly; ``Cluster`` and ``Swap`` are tested against the real
control plane.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import os
import socket
import time
import uuid

try:
    from http import client as http_client
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    http_client = None

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as cat
from ansible_collections.ailab.gpu_lab.plugins.module_utils import components as _components
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_capacity as cap
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc


STATE_CONFIGMAP = "gpu-lab-state"
LEASE_NAME = "gpu-lab-swap"
BACKENDS = ("ollama", "vllm")
OWNERS = BACKENDS + ("none",)
INTENT_KEYS = ("intent_from", "intent_to", "intent_phase", "intent_holder", "intent_started_at", "intent_restore",
               "intent_path")
# Phases recorded in intent_phase, in order. Only "committing" (target verified, only the record
# left to write) is completed by a recovering run; every earlier phase is rolled back.
PHASES = ("begun", "stopping", "stopped", "starting", "verifying", "committing", "rolling_back")
# The swap's sequence, in order: every task of the role (roles/gpu_swap/tasks/state_swap.yml, by name), where it
# runs, the recorded phase a gpu_swap step may start from (its intent must also be this run's: intent_holder), and
# the phases it records. It drives the steps' intent checks (TRANSITIONS), the check-mode plan (Swap.plan) and the
# recovery (recovery_action: only what the last step records before the commit is completed); unit tests hold the
# role's task order and docs/gpu_swap.md's sequence table to it.
SEQUENCE = (
    {"step": "pull", "where": "GPU host", "from": None, "records": (),
     "task": "Make sure the target vLLM model's weights are on the GPU host",
     "fast": (None, "as usual (the weights are there: nothing is fetched)")},
    {"step": "begin", "where": "controller", "from": (None,), "records": ("begun",),
     "task": "Recover an interrupted swap, validate the target, take the lock and record the intent",
     "fast": ("as usual; the intent says intent_path: sleep", "as usual; the intent says intent_path: sleep")},
    {"step": "unload", "where": "GPU host", "from": None, "records": (),
     "task": "Unload Ollama's models (keep_alive 0) before Ollama stops",
     "fast": (None, "unload Ollama's models (keep_alive: 0)")},
    {"step": "stop", "where": "controller", "from": ("begun",), "records": ("stopping", "stopped"),
     "task": "Scale the GPU backends to 0 and wait until their pods are gone and the GPU is free",
     "fast": ("take vLLM out of its Service (route label off), drain it (vllm:num_requests_running and "
              "vllm:num_requests_waiting 0), POST /sleep?level=1, /is_sleeping true; vLLM keeps its pod; a GPU slot free",
              "scale Ollama to 0 and wait until its pods are gone; the sleeping vLLM keeps its pod; a GPU slot free")},
    {"step": "host-check", "where": "GPU host", "from": None, "records": (),
     "task": "Require the GPU memory released, naming any process (a game) that holds it",
     "fast": ("the memory free on the host, the sleeping vLLM's CUDA context allowed (gpu_swap_sleep_residual_mib)",
              "the memory free on the host, the sleeping vLLM's CUDA context allowed (gpu_swap_sleep_residual_mib)")},
    {"step": "start", "where": "controller", "from": ("stopped",), "records": ("starting", "verifying", "committing"),
     "task": "Start the new owner, wait for Ready, check it through the gateway, record it, release the lock",
     "fast": ("scale Ollama to 1, wait for Ready, the gateway check; record vllm_asleep: level1",
              "POST /wake_up, /is_sleeping false, one 1-token warm-up request to vLLM, vLLM back in its Service, "
              "Ready, the gateway check; vllm_asleep removed")},
    {"step": "rollback", "where": "controller", "from": PHASES, "records": ("rolling_back",),
     "task": "Restore the previous owner (and its model) and wait for it",
     "fast": ("stop Ollama; wake vLLM (a 1-token warm-up) and put it back in its Service; restart it if it cannot be "
              "woken", "take vLLM out of its Service and put it to sleep again (stop it if it cannot sleep); start "
              "Ollama")},
)
# On the fast path (intent_path: sleep) each step does the "fast" work instead: (vllm -> ollama, ollama -> vllm); None:
# the step does not run. Swap.plan prints it, docs/gpu_swap.md "Fast path: vLLM sleep mode" has it as a table.
# The gpu_swap module's steps that change the lab: (step, phases it may start from, phases it records).
TRANSITIONS = tuple((row["step"], row["from"], row["records"]) for row in SEQUENCE if row["records"])
# What a kubelet reports on a container that will not become Ready by waiting longer
# (pkg/kubelet/images/types.go, pkg/kubelet/kuberuntime/kuberuntime_container.go, pkg/kubelet/container/sync_result.go).
FAIL_FAST_WAITING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                     "CreateContainerError", "InvalidImageName", "ErrImageNeverPull", "RunContainerError")
TERMINAL_PHASES = ("Failed", "Succeeded")
# Seconds the swap waits for Ready beyond the target's own startup-probe budget (scheduling, container creation;
# the image is pre-pulled by deploy). The kubelet's probe decides first; the swap then fails fast on the restart.
READY_MARGIN = 120
DEFAULT_READY_TIMEOUT = 900
MODEL_ANNOTATION = "ailab.gpu-lab/model"
# The field manager of every change the swap makes to the GPU backends' Deployments; deploy applies the fields the
# swap owns under this same name (SWAP_OWNED_PATHS, module_utils/apply.py), never under its own (docs/deploy.md).
SWAP_FIELD_MANAGER = "ailab.gpu_lab.gpu-swap"
# The fast path (docs/gpu_swap.md "Fast path: vLLM sleep mode"): the vllm role annotates vLLM's Deployment when it runs
# with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 (the ONE fact the swap reads), and labels its pods with the
# route label its Service selects. With a time-sliced GPU (>= 2 slots) the hand-over vllm <-> ollama then moves the
# VRAM, not the pods: vLLM is taken out of the route (its pod's route label off), drained, put to sleep (level 1) and
# woken again. The record keeps VLLM_ASLEEP_KEY while vLLM sleeps (deploy keeps its replica then).
SLEEP_ANNOTATION = "ailab.gpu-lab/sleep-mode"
ROUTE_LABEL = "ailab.gpu-lab/route"
VLLM_ASLEEP_KEY = "vllm_asleep"
SLEEP_LEVEL = 1
FAST_PATH = "sleep"  # intent_path while a swap takes the fast path
RUNNING_METRIC = "vllm:num_requests_running"
WAITING_METRIC = "vllm:num_requests_waiting"
DRAIN_TIMEOUT = 120
# Ollama's and vLLM's ports when their Service names none (the component registry's, never a number of its own).
OLLAMA_DEFAULT_PORT = _components.REGISTRY["ollama"]["services"]["ollama"]["ports"]["http"]["port"]
VLLM_DEFAULT_PORT = _components.REGISTRY["vllm"]["services"]["vllm"]["ports"]["http"]["port"]
# What the swap owns in each GPU backend's Deployment (key paths; a step in the container list is its name).
SWAP_OWNED_PATHS = {
    "ollama": [["spec", "replicas"], ["spec", "template", "spec", "nodeSelector"]],
    "vllm": [["spec", "replicas"], ["metadata", "annotations", MODEL_ANNOTATION],
             ["spec", "template", "metadata", "annotations", MODEL_ANNOTATION],
             ["spec", "template", "spec", "containers", "vllm", "args"], ["spec", "template", "spec", "nodeSelector"]],
}


def swap_owned_fields(namespace):
    """``lab_apply``'s ``owned_fields``: the GPU backends' fields deploy applies under the swap's field manager."""
    return [{"manager": SWAP_FIELD_MANAGER, "apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace,
             "name": name, "paths": paths} for name, paths in sorted(SWAP_OWNED_PATHS.items())]


_NS = "/api/v1/namespaces/{namespace}"
_APPS = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_ROUTES = {
    "read_namespaced_config_map": ("GET", _NS + "/configmaps/{name}"),
    "create_namespaced_config_map": ("POST", _NS + "/configmaps"),
    "patch_namespaced_config_map": ("PATCH", _NS + "/configmaps/{name}"),
    "read_namespaced_secret": ("GET", _NS + "/secrets/{name}"),
    "read_namespaced_service": ("GET", _NS + "/services/{name}"),
    "list_namespaced_pod": ("GET", _NS + "/pods"),
    "delete_namespaced_pod": ("DELETE", _NS + "/pods/{name}"),
    "patch_namespaced_pod": ("PATCH", _NS + "/pods/{name}"),
    "list_namespaced_event": ("GET", _NS + "/events"),
    "list_node": ("GET", "/api/v1/nodes"),
    "list_pod_for_all_namespaces": ("GET", "/api/v1/pods"),
    "list_replica_set_for_all_namespaces": ("GET", "/apis/apps/v1/replicasets"),
    "read_namespaced_deployment": ("GET", _APPS),
    "patch_namespaced_deployment": ("PATCH", _APPS),
    "patch_namespaced_deployment_scale": ("PATCH", _APPS + "/scale"),
    "read_namespaced_lease": ("GET", _LEASES + "/{name}"),
    "create_namespaced_lease": ("POST", _LEASES),
    "replace_namespaced_lease": ("PUT", _LEASES + "/{name}"),
}
# Least privilege, derived from _ROUTES (the only requests the swap makes): route -> (API group, resource, verb,
# cluster-wide). roles/gpu_swap/tasks/rbac.yml applies what rbac_rules() makes of it; a unit test checks every
# route has its rule.
_RBAC = {
    "read_namespaced_config_map": ("", "configmaps", "get", False),
    "create_namespaced_config_map": ("", "configmaps", "create", False),
    "patch_namespaced_config_map": ("", "configmaps", "patch", False),
    "read_namespaced_secret": ("", "secrets", "get", False),
    "read_namespaced_service": ("", "services", "get", False),
    "list_namespaced_pod": ("", "pods", "list", False),
    "delete_namespaced_pod": ("", "pods", "delete", False),
    "patch_namespaced_pod": ("", "pods", "patch", False),
    "list_namespaced_event": ("", "events", "list", False),
    "list_node": ("", "nodes", "list", True),
    "list_pod_for_all_namespaces": ("", "pods", "list", True),
    "list_replica_set_for_all_namespaces": ("apps", "replicasets", "list", True),
    "read_namespaced_deployment": ("apps", "deployments", "get", False),
    "patch_namespaced_deployment": ("apps", "deployments", "patch", False),
    "patch_namespaced_deployment_scale": ("apps", "deployments/scale", "patch", False),
    "read_namespaced_lease": ("coordination.k8s.io", "leases", "get", False),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", "create", False),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update", False),
}


class SwapError(Exception):
    """A failure worded for the operator. ``report`` carries what was done so far."""

    def __init__(self, message, report=None):
        super(SwapError, self).__init__(message)
        self.report = report or {}


# ---------------------------------------------------------------- targets
def target_name(target):
    """``{"owner": "vllm", "model": "qwen2.5-7b"}`` -> ``"vllm:qwen2.5-7b"``; ollama/none as is."""
    if target["owner"] == "vllm" and target.get("model"):
        return "vllm:%s" % target["model"]
    return target["owner"]


def owner_of(data):
    """The recorded owner of ConfigMap data (``None`` when nothing is recorded)."""
    data = data or {}
    owner = data.get("owner")
    if owner in (None, ""):
        return None
    return {"owner": owner, "model": (data.get("model") or "") if owner == "vllm" else ""}


def parse_target(text, models, current=None, default_vllm_model=None):
    """Validate ``-e gpu_owner=...`` against the catalog; return ``{"owner", "model"}``.

    ``vllm`` alone keeps the model vLLM serves now, else ``default_vllm_model``, else the first
    vllm entry of the catalog. Raises ``SwapError`` listing the valid targets.
    """
    try:
        entries = cat.validate_catalog(models or [])
    except cat.CatalogError as exc:
        raise SwapError("the catalog is invalid, so no swap target can be checked: %s" % exc)
    vllm_models = [m["name"] for m in entries if m["backend"] == "vllm"]
    valid = ["status", "none", "ollama"] + (["vllm"] if vllm_models else []) + ["vllm:%s" % n for n in vllm_models]
    text = (text or "").strip()
    owner, _sep, model = text.partition(":")
    if owner not in OWNERS or (model and owner != "vllm") or (text.endswith(":") and not model):
        raise SwapError("gpu_owner=%r is not a swap target%s. Valid targets: %s"
                        % (text, cat.did_you_mean(text, valid), ", ".join(valid)))
    if owner == "ollama" and not any(m["backend"] == "ollama" for m in entries):
        raise SwapError("gpu_owner=ollama: the catalog (gpu_lab_models) has no backend: ollama model, so Ollama "
                        "would serve nothing. Valid targets: %s" % ", ".join(valid))
    if owner != "vllm":
        return {"owner": owner, "model": ""}
    if not vllm_models:
        raise SwapError("gpu_owner=%s: the catalog (gpu_lab_models) has no backend: vllm model. Valid targets: %s"
                        % (text, ", ".join(valid)))
    if not model:
        if current and current.get("owner") == "vllm" and current.get("model") in vllm_models:
            model = current["model"]
        elif default_vllm_model:
            model = default_vllm_model
        else:
            model = vllm_models[0]
    if model not in vllm_models:
        other = [m for m in entries if m["name"] == model]
        why = (" ('%s' is a %s model: for Ollama models swap to ollama)" % (model, other[0]["backend"])) if other else ""
        raise SwapError("gpu_owner=vllm:%s: '%s' is not a vllm model of the catalog%s%s. Valid targets: %s"
                        % (model, model, why, cat.did_you_mean(model, vllm_models), ", ".join(valid)))
    return {"owner": "vllm", "model": model}


def probe_alias(models, target, override=None):
    """The catalog alias the gateway check sends to the target (``None`` for ``none``)."""
    if target["owner"] == "none":
        return None
    if target["owner"] == "vllm":
        return target["model"]
    if override:
        return override
    chat = [m["name"] for m in cat.validate_catalog(models) if m["backend"] == "ollama" and m["mode"] == "chat"]
    return chat[0] if chat else None


def choose_node(explicit, catalog_node, recorded, gpu_nodes):
    """The node the swap hands the GPU on: explicit > the catalog entry's node > recorded > the only GPU node."""
    for value in (explicit, catalog_node, recorded):
        if value:
            if gpu_nodes and value not in gpu_nodes:
                raise SwapError("node %r does not advertise a GPU; GPU nodes: %s. Set gpu_swap_node (or the catalog "
                                "entry's node) to one of them." % (value, ", ".join(gpu_nodes)))
            return value
    if len(gpu_nodes) == 1:
        return gpu_nodes[0]
    if not gpu_nodes:
        raise SwapError("no node advertises a GPU: the NVIDIA device plugin is not running (see gpu_capacity).")
    raise SwapError("several nodes have a GPU (%s) and none is recorded: set gpu_swap_node (or the catalog entry's "
                    "node)." % ", ".join(gpu_nodes))


# ---------------------------------------------------------------- conditions (pure)
def _pod_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def describe_pods(pods):
    """One line per pod: name, phase, Terminating, Ready, the scheduler's or kubelet's reason."""
    if not pods:
        return "no pods"
    parts = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        state = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
        reasons = ["%s=%s%s" % (c.get("type"), c.get("status"), " (%s: %s)" % (c.get("reason"), c.get("message"))
                                if c.get("reason") else "")
                   for c in status.get("conditions") or [] if c.get("status") != "True"]
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting:
                reasons.append("container %s waiting: %s" % (cs.get("name"), waiting.get("reason")))
        parts.append("%s %s%s" % (meta.get("name"), state, ", " + "; ".join(reasons) if reasons else ""))
    return "; ".join(parts)


def deployment_ready(dep, pods):
    """True when the Deployment has observed its spec and one Ready pod of it exists, none Terminating."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return False
    want = spec.get("replicas", 1)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    ready = [p for p in live if _pod_ready(p)]
    return (status.get("readyReplicas") or 0) >= want and (status.get("updatedReplicas") or 0) >= want \
        and len(ready) >= want and len(live) == len(pods)


def pod_terminal(pod):
    """Failed or Succeeded: the kubelet is done with it and the scheduler no longer counts its GPU."""
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def pod_failure(pod):
    """Why this pod will not become Ready by waiting longer, as the kubelet reports it; ``None`` if it may still.

    Ends a Ready wait at once: the pod is Failed (``UnexpectedAdmissionError``, ``Evicted``, ...); a container waits
    with a reason of FAIL_FAST_WAITING (crash loop, image pull, configuration); a container was OOM-killed or has
    restarted at all (a crash, or a startup probe that ran out: a GPU backend that restarts while loading does not
    load by waiting). The sentence carries the container's last message (``terminationMessagePolicy:
    FallbackToLogsOnError`` puts the end of its log there).
    """
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    name = meta.get("name")
    if status.get("phase") == "Failed":
        return "pod %s Failed (%s): %s" % (name, status.get("reason") or "no reason", status.get("message") or "no message")
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        waiting = state.get("waiting") or {}
        ended = last.get("terminated") or state.get("terminated") or {}
        restarts = cs.get("restartCount") or 0
        detail = ""
        if ended:
            message = ": %s" % ended["message"].strip()[-300:] if ended.get("message") else ""
            detail = "; last exit %s (%s)%s" % (ended.get("exitCode"), ended.get("reason") or "no reason", message)
        if ended.get("reason") == "OOMKilled":
            return "container %s of pod %s was OOM-killed (the memory limit is too low for the model)%s" % (
                cs.get("name"), name, detail)
        if waiting.get("reason") in FAIL_FAST_WAITING:
            message = (waiting.get("message") or "no message").strip()[-300:]
            return "container %s of pod %s: %s: %s%s" % (cs.get("name"), name, waiting["reason"], message, detail)
        if restarts > 0:
            return "container %s of pod %s restarted %d time(s) while loading (a crash, or its startup probe ran out)%s" % (
                cs.get("name"), name, restarts, detail)
        if state.get("terminated") and state["terminated"].get("exitCode") not in (None, 0):
            return "container %s of pod %s exited while loading%s" % (cs.get("name"), name, detail)
    return None


def describe_failed(pod):
    """``ollama-7c9-x2 (UnexpectedAdmissionError: Allocate failed ...)`` for a Failed pod."""
    status = pod.get("status") or {}
    return "%s (%s: %s)" % ((pod.get("metadata") or {}).get("name"), status.get("reason") or "Failed",
                            (status.get("message") or "no message")[:200])


def probe_budget(dep, container=None):
    """Seconds the kubelet lets the (named, else first) container load: initialDelaySeconds + failureThreshold x
    periodSeconds of its startup probe (API defaults 0, 3, 10), or ``None`` without a startup probe."""
    containers = ((((dep or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    match = [c for c in containers if c.get("name") == container] or containers[:1]
    probe = (match[0].get("startupProbe") if match else None) or None
    if not probe:
        return None
    return int(probe.get("initialDelaySeconds") or 0) + int(probe.get("failureThreshold") or 3) * int(
        probe.get("periodSeconds") or 10)


def _match_expression(expr, value_of):
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    value = value_of(key)
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            number, limit = int(value), int(values[0])
        except (TypeError, ValueError, IndexError):
            return False
        return number > limit if op == "Gt" else number < limit
    return False


def _tolerated(taint, tolerations):
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def pod_fits_node(pod, node):
    """Whether the scheduler could put this (Pending) pod on ``node``: node selector, required node affinity
    (matchExpressions and matchFields), NoSchedule/NoExecute taints against the pod's tolerations, cordon."""
    spec, meta = pod.get("spec") or {}, node.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")) or []
    if required:
        fields = {"metadata.name": meta.get("name")}
        if not any(all(_match_expression(e, labels.get) for e in term.get("matchExpressions") or [])
                   and all(_match_expression(e, fields.get) for e in term.get("matchFields") or [])
                   for term in required):
            return False
    tolerations = spec.get("tolerations") or []
    taints = list((node.get("spec") or {}).get("taints") or [])
    if (node.get("spec") or {}).get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return all(_tolerated(t, tolerations) for t in taints if t.get("effect") in ("NoSchedule", "NoExecute"))


def gpu_claimants(pods, node, resource, is_lab_backend):
    """Pods other than the lab's GPU backends that hold ``resource`` on ``node`` or wait (Pending, unbound) for it
    and fit ``node``: stopping the owner would hand them the GPU. Terminal pods do not count (as for the scheduler).
    Returns ``(sentence, amount requested)`` per pod; the caller weighs them against the node's allocatable (on a
    time-sliced node other pods may hold slots and still leave one for the target)."""
    name = node["metadata"]["name"]
    found = []
    for pod in pods:
        amount = cap.pod_request(pod, resource)
        if pod_terminal(pod) or is_lab_backend(pod) or not amount:
            continue
        bound = (pod.get("spec") or {}).get("nodeName")
        meta = pod.get("metadata") or {}
        if bound == name:
            found.append(("%s/%s holds %s on %s" % (meta.get("namespace"), meta.get("name"), resource, name), amount))
        elif not bound and pod_fits_node(pod, node):
            found.append(("%s/%s is Pending for %s and fits node %s"
                          % (meta.get("namespace"), meta.get("name"), resource, name), amount))
    return found


def template_snapshot(dep, container):
    """What the swap may change in a GPU backend's Deployment and a rollback puts back exactly: the container's
    args, the model annotation (object and pod template) and the pod template's node selector."""
    if not dep:
        return None
    meta = dep.get("metadata") or {}
    template = (dep.get("spec") or {}).get("template") or {}
    pod_spec = template.get("spec") or {}
    containers = pod_spec.get("containers") or []
    match = [c for c in containers if c.get("name") == container] or containers[:1]
    return {"container": match[0].get("name") if match else None,
            "args": match[0].get("args") if match else None,
            "model": (meta.get("annotations") or {}).get(MODEL_ANNOTATION),
            "template_model": ((template.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION),
            "node_selector": pod_spec.get("nodeSelector")}


def restore_ops(dep, snapshot):
    """JSON Patch operations that bring ``dep`` back to ``snapshot`` (``[]`` when it already is)."""
    now = template_snapshot(dep, snapshot.get("container"))
    if now == snapshot:
        return []
    key = MODEL_ANNOTATION.replace("~", "~0").replace("/", "~1")
    ops = []

    def put(path, old, new, parent=None, parent_exists=True):
        if old == new:
            return
        if new is None:
            ops.append({"op": "remove", "path": path})
        elif parent is not None and not parent_exists:
            ops.append({"op": "add", "path": parent, "value": {}})
            ops.append({"op": "add", "path": path, "value": new})
        else:
            ops.append({"op": "add" if old is None else "replace", "path": path, "value": new})
    containers = dep["spec"]["template"]["spec"].get("containers") or []
    index = [i for i, c in enumerate(containers) if c.get("name") == snapshot.get("container")]
    if index:
        base = "/spec/template/spec/containers/%d" % index[0]
        ops.append({"op": "test", "path": base + "/name", "value": snapshot["container"]})
        put(base + "/args", now["args"], snapshot["args"])
    put("/metadata/annotations/" + key, now["model"], snapshot["model"], "/metadata/annotations",
        bool((dep.get("metadata") or {}).get("annotations")))
    template_meta = dep["spec"]["template"].get("metadata") or {}
    if not template_meta and snapshot["template_model"] is not None:
        ops.append({"op": "add", "path": "/spec/template/metadata", "value": {}})
    put("/spec/template/metadata/annotations/" + key, now["template_model"], snapshot["template_model"],
        "/spec/template/metadata/annotations", bool(template_meta.get("annotations")))
    put("/spec/template/spec/nodeSelector", now["node_selector"], snapshot["node_selector"])
    if all(op["op"] == "test" for op in ops):
        return []
    return ops


def rbac_objects(namespace, account="gpu-swap", deployments=None, gateway_secret="litellm-env"):
    """The ServiceAccount, Role/RoleBinding (lab namespace) and ClusterRole/ClusterRoleBinding (reads only) that let
    ``account`` run every swap step and nothing more (rbac_rules)."""
    deployments = deployments or {"ollama": "ollama", "vllm": "vllm"}
    cluster_rules, lab_rules = rbac_rules(deployments, gateway_secret)
    labels = {"app.kubernetes.io/part-of": "ai-lab", "app.kubernetes.io/managed-by": "ailab.gpu_lab",
              "app.kubernetes.io/component": "gpu-swap"}
    cluster_name = "%s-%s" % (account, namespace)  # cluster-scoped: one per lab namespace
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace, "labels": labels}, "automountServiceAccountToken": False},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": account, "namespace": namespace, "labels": labels},
         "rules": lab_rules},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": account, "namespace": namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account}, "subjects": subject},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": cluster_name, "labels": labels},
         "rules": cluster_rules},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": cluster_name, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
         "subjects": subject},
    ]


def restore_data(text):
    """The ``intent_restore`` record (JSON) as a dict; ``{}`` when absent or unreadable (edited by hand)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def rbac_rules(deployments, gateway_secret):
    """(cluster-wide rules, lab-namespace rules) the swap needs, derived from the requests it makes (_RBAC)."""
    names = {"configmaps": [STATE_CONFIGMAP], "secrets": [gateway_secret], "leases": [LEASE_NAME],
             "services": [deployments["ollama"]], "deployments": sorted(deployments.values()),
             "deployments/scale": sorted(deployments.values())}
    grouped = {}
    for route in sorted(_RBAC):
        group, resource, verb, cluster = _RBAC[route]
        # create and list cannot be limited to names (the name is not known to the authorizer then)
        limit = tuple(names.get(resource) or ()) if verb not in ("create", "list") and not cluster else ()
        grouped.setdefault((cluster, group, resource, limit), set()).add(verb)
    cluster_rules, lab_rules = [], []
    for (cluster, group, resource, limit), verbs in sorted(grouped.items()):
        rule = {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        if limit:
            rule["resourceNames"] = list(limit)
        (cluster_rules if cluster else lab_rules).append(rule)
    return cluster_rules, lab_rules


def parse_time(text):
    """RFC 3339 (``2026-12-01T11:09:04.123456Z``) -> seconds since the epoch."""
    if not text:
        return None
    text = text.rstrip("Z").split("+")[0]
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    stamp = datetime.datetime.strptime(text, fmt)
    return (stamp - datetime.datetime(1970, 1, 1)).total_seconds()


def micro_time(epoch):
    """Seconds since the epoch -> the Lease's MicroTime format."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_state(lease, now):
    """``{"holder", "expires_in", "free"}`` for a Lease object (or ``None``) at wall time ``now``."""
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if not holder:
        return {"holder": "", "expires_in": 0.0, "free": True}
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime")) or 0.0
    expires_in = renewed + float(spec.get("leaseDurationSeconds") or 0) - now
    return {"holder": holder, "expires_in": round(expires_in, 1), "free": expires_in <= 0,
            "renewed_at": spec.get("renewTime")}


def replace_vllm_args(current, old_derived, new_derived):
    """The vLLM container's args with the catalog-derived part swapped for the new model's.

    The role that deploys vLLM may add arguments of its own (``--download-dir``, ``--port``, ...)
    around the catalog's; those are kept. When the old model's arguments are not found (first
    start, edited by hand), the catalog's come first and the other arguments follow.
    """
    current = list(current or [])
    n = len(old_derived or [])
    if n:
        for i in range(len(current) - n + 1):
            if current[i:i + n] == list(old_derived):
                return current[:i] + list(new_derived) + current[i + n:]
    derived_flags = set(a for a in list(old_derived or []) + list(new_derived) if a.startswith("--"))
    rest, skip = [], False
    for arg in current:
        if arg.startswith("--"):
            skip = arg.split("=", 1)[0] in derived_flags
        if not skip:
            rest.append(arg)
    return list(new_derived) + rest


def recovery_action(data):
    """What a later run does with a recorded intent: ``None`` (none), ``"complete"`` (the phase the start step records
    last: the target answered, only the record was left) or ``"rollback"`` (any other phase)."""
    phase = (data or {}).get("intent_phase")
    if not phase:
        return None
    return "complete" if phase == dict((step, records) for step, _f, records in TRANSITIONS)["start"][-1] else "rollback"


def parse_owner_text(text):
    """``"vllm:qwen2.5-7b"`` (as stored in intent_from/intent_to) -> ``{"owner", "model"}``."""
    owner, _sep, model = (text or "none").partition(":")
    return {"owner": owner if owner in OWNERS else "none", "model": model if owner == "vllm" else ""}


def phase_line(entry):
    """``"wait for Ready: 5.21 s (5.02 s waiting)"`` for the role's report."""
    line = "%s: %.2f s" % (entry["name"], entry["seconds"])
    if entry.get("waited"):
        line += " (%.2f s waiting)" % entry["waited"]
    if entry.get("answer"):
        line += "; answer: %s" % str(entry["answer"])[:80]
    return line


def holder_identity():
    return "%s/%d/%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])


# ---------------------------------------------------------------- the fast path (pure)
def metric_value(text, name):
    """The sum of the samples of metric ``name`` in a Prometheus text exposition (``None`` when it has none)."""
    total, found = 0.0, False
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split("{", 1)[0].split(" ", 1)[0]
        if head != name:
            continue
        try:
            total += float(line.rsplit(" ", 1)[1] if "}" not in line else line.rsplit("}", 1)[1].split()[0])
        except (IndexError, ValueError):
            continue
        found = True
    return total if found else None


def fast_path_blocker(current, target, vllm_dep, slots, asleep):
    """Why the hand-over ``current`` -> ``target`` cannot move the VRAM instead of the pods, or ``None`` when it can.

    The fast path needs: a hand-over between vLLM and Ollama (``none``, a game, still stops vLLM: a sleeping vLLM keeps
    its CUDA context, about 1 GiB); vLLM's Deployment annotated by the vllm role (``vllm_sleep_mode``: the server runs
    with ``--enable-sleep-mode`` and ``VLLM_SERVER_DEV_MODE=1``); at least 2 slots of the GPU resource on the node
    (time-slicing: the sleeping vLLM keeps its pod and slot); for Ollama -> vLLM, a vLLM that sleeps (recorded) with
    one replica, serving the target model (another model needs a reload: the slow path)."""
    owners = set([current["owner"], target["owner"]])
    if owners != set(["vllm", "ollama"]):
        return "only a hand-over between vllm and ollama can (%s -> %s)" % (target_name(current), target_name(target))
    annotations = ((vllm_dep or {}).get("metadata") or {}).get("annotations") or {}
    if not annotations.get(SLEEP_ANNOTATION):
        return "vLLM's Deployment has no %s annotation (vllm_sleep_mode is off)" % SLEEP_ANNOTATION
    if slots < 2:
        return "the node has %d slot(s) of the GPU resource; the fast path needs >= 2 (gpu_runtime_time_slicing_replicas)" \
            % slots
    if target["owner"] == "vllm":
        replicas = ((vllm_dep or {}).get("spec") or {}).get("replicas", 1)
        if not asleep or replicas < 1:
            return "vLLM is not sleeping (it is started as usual)"
        if annotations.get(MODEL_ANNOTATION) != target["model"]:
            return "the sleeping vLLM serves %s, not %s (another model is loaded as usual)" % (
                annotations.get(MODEL_ANNOTATION), target["model"])
    return None


def http_call(method, url, body=None, timeout=30.0):
    """One plain-HTTP request (no proxy; ``http.client`` as kube_client uses it): ``(status, text)``; status ``None``
    when nothing answered (refused, timed out, a name that does not resolve).

    The default of ``Swap(vllm_http=...)``: the in-cluster service and a cluster node reach vLLM's Service; a test
    passes the stand-in's URL (``vllm_url``)."""
    parts = urlsplit(url)
    data = json.dumps(body).encode("utf-8") if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn = http_client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        conn.request(method, (parts.path or "/") + ("?" + parts.query if parts.query else ""),
                     body=data if method != "GET" else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http_client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()


# ---------------------------------------------------------------- cluster access
# The client (transports, in-cluster auth, retries) is kube_client's, shared with every module and the in-cluster
# swap service; these names stay for callers of this module.
ApiStatus = kc.ApiStatus
LightTransport = kc.LightTransport
LibraryTransport = kc.LibraryTransport


def transport(params):
    """How the swap reaches the API server (``kube_client.transport``), its errors as ``SwapError``."""
    try:
        return kc.transport(params)
    except kc.KubeError as exc:
        raise SwapError(str(exc))


class Cluster(object):
    """Reads and writes of the swap, through ``kube_client.Client`` restricted to ``_ROUTES``.

    Transient API errors (connection refused, 5xx, 429: a restarted API server) are retried for
    ``retry_timeout`` seconds; anything else (403, 404, 409, 422: an admission policy, a missing
    object, a conflict) is raised at once as ``SwapError`` with a sentence naming the object.
    """

    def __init__(self, http, namespace, retry_timeout=30.0, clock=time.monotonic, sleep=time.sleep):
        self.client = kc.Client(http, _ROUTES, namespace=namespace, retry_timeout=retry_timeout, clock=clock,
                                sleep=sleep)
        self.http = http
        self.host = http.host
        self.namespace = namespace
        self.retry_timeout = retry_timeout

    @property
    def api_retries(self):
        return self.client.api_retries

    def call(self, api, method, action, missing_ok=False, conflict_ok=False, content_type=None, **kwargs):
        """One API request by route name (``_ROUTES``); returns the JSON answer as dicts.

        ``api`` is the typed API class name the route belongs to in the kubernetes library (kept so
        that gpu_capacity's listing callback can be served); the request goes to the raw path.
        """
        try:
            return self.client.call(method, action, missing_ok=missing_ok, conflict_ok=conflict_ok,
                                    content_type=content_type, **kwargs)
        except kc.KubeError as exc:
            raise SwapError(str(exc))

    # -- the state ConfigMap
    def state(self):
        cm = self.call("CoreV1Api", "read_namespaced_config_map", "read ConfigMap %s/%s" % (self.namespace, STATE_CONFIGMAP),
                       missing_ok=True, name=STATE_CONFIGMAP, namespace=self.namespace)
        return (cm or {}).get("data") or {}, cm is not None

    def write_state(self, changes, exists=True):
        """Merge ``changes`` into the ConfigMap's data (a value of ``None`` removes the key)."""
        action = "write ConfigMap %s/%s" % (self.namespace, STATE_CONFIGMAP)
        if not exists:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": STATE_CONFIGMAP, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/part-of": "ai-lab",
                                            "app.kubernetes.io/managed-by": "ailab.gpu_lab"}},
                    "data": dict((k, v) for k, v in changes.items() if v is not None)}
            created = self.call("CoreV1Api", "create_namespaced_config_map", action, conflict_ok=True,
                                namespace=self.namespace, body=body)
            if created != "conflict":
                return
        self.call("CoreV1Api", "patch_namespaced_config_map", action, content_type="application/merge-patch+json",
                  name=STATE_CONFIGMAP, namespace=self.namespace, body={"data": changes})

    # -- the Lease
    def lease(self):
        return self.call("CoordinationV1Api", "read_namespaced_lease", "read Lease %s/%s" % (self.namespace, LEASE_NAME),
                         missing_ok=True, name=LEASE_NAME, namespace=self.namespace)

    def take_lease(self, lease, holder, duration, now):
        """Create or replace the Lease for ``holder``; False when another writer won the race (409)."""
        action = "take Lease %s/%s" % (self.namespace, LEASE_NAME)
        stamp = micro_time(now)
        spec = {"holderIdentity": holder, "leaseDurationSeconds": int(duration), "renewTime": stamp}
        if lease is None:
            spec["acquireTime"] = stamp
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/part-of": "ai-lab"}}, "spec": spec}
            result = self.call("CoordinationV1Api", "create_namespaced_lease", action, conflict_ok=True,
                               namespace=self.namespace, body=body)
            return result != "conflict"
        old = lease.get("spec") or {}
        if old.get("holderIdentity") != holder:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        body = dict(lease)
        body["spec"] = dict(old, **spec)
        result = self.call("CoordinationV1Api", "replace_namespaced_lease", action, conflict_ok=True,
                           name=LEASE_NAME, namespace=self.namespace, body=body)
        return result != "conflict"

    def release_lease(self, holder):
        lease = self.lease()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != holder:
            return
        body = dict(lease)
        body["spec"] = dict(lease.get("spec") or {}, holderIdentity=None)
        self.call("CoordinationV1Api", "replace_namespaced_lease", "release Lease %s/%s" % (self.namespace, LEASE_NAME),
                  conflict_ok=True, name=LEASE_NAME, namespace=self.namespace, body=body)

    # -- workloads
    def deployment(self, name, missing_ok=False):
        return self.call("AppsV1Api", "read_namespaced_deployment", "read Deployment %s/%s" % (self.namespace, name),
                         missing_ok=missing_ok, name=name, namespace=self.namespace)

    def pods(self, dep):
        labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join("%s=%s" % kv for kv in sorted(labels.items()))
        return self.call("CoreV1Api", "list_namespaced_pod", "list pods of %s/%s" % (self.namespace, dep["metadata"]["name"]),
                         namespace=self.namespace, label_selector=selector)["items"]

    def scale(self, name, replicas):
        self.call("AppsV1Api", "patch_namespaced_deployment_scale", "scale Deployment %s/%s to %d" % (self.namespace, name, replicas),
                  content_type="application/merge-patch+json", name=name, namespace=self.namespace,
                  body={"spec": {"replicas": replicas}}, field_manager=SWAP_FIELD_MANAGER)

    def patch_deployment(self, name, body, what):
        self.call("AppsV1Api", "patch_namespaced_deployment", "%s of Deployment %s/%s" % (what, self.namespace, name),
                  content_type="application/strategic-merge-patch+json", name=name, namespace=self.namespace, body=body,
                  field_manager=SWAP_FIELD_MANAGER)

    def patch_deployment_json(self, name, ops, what):
        self.call("AppsV1Api", "patch_namespaced_deployment", "%s of Deployment %s/%s" % (what, self.namespace, name),
                  content_type="application/json-patch+json", name=name, namespace=self.namespace, body=ops,
                  field_manager=SWAP_FIELD_MANAGER)

    def label_pod(self, name, labels):
        self.call("CoreV1Api", "patch_namespaced_pod", "label pod %s/%s" % (self.namespace, name),
                  content_type="application/merge-patch+json", name=name, namespace=self.namespace,
                  body={"metadata": {"labels": labels}}, field_manager=SWAP_FIELD_MANAGER)

    def delete_pod(self, name):
        self.call("CoreV1Api", "delete_namespaced_pod", "delete pod %s/%s" % (self.namespace, name), missing_ok=True,
                  name=name, namespace=self.namespace)

    def events(self, pod_name):
        """The events the kubelet and scheduler wrote about a pod, oldest first (``[]`` when they cannot be read)."""
        try:
            items = self.call("CoreV1Api", "list_namespaced_event", "list events of pod %s/%s" % (self.namespace, pod_name),
                              namespace=self.namespace,
                              field_selector="involvedObject.kind=Pod,involvedObject.name=%s" % pod_name)["items"]
        except SwapError:
            return []
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def kube_list(self, api, method, action, **kwargs):
        """gpu_capacity's listing callback, with the same retries."""
        return self.call(api, method, action, **kwargs)

    def secret_value(self, name, key):
        secret = self.call("CoreV1Api", "read_namespaced_secret", "read Secret %s/%s" % (self.namespace, name),
                           missing_ok=True, name=name, namespace=self.namespace)
        value = ((secret or {}).get("data") or {}).get(key)
        return base64.b64decode(value).decode("utf-8") if value else None


# ---------------------------------------------------------------- the transaction
class Swap(object):
    """One step of a swap (the module runs one per task). ``params`` are the module's options."""

    def __init__(self, cluster, params, check_mode=False, clock=time.monotonic, wall=time.time, sleep=time.sleep,
                 http=None, vllm_http=None):
        self.k = cluster
        self.p = params
        self.check_mode = check_mode
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.http = http
        # How the fast path reaches vLLM's HTTP (/metrics, /sleep, /wake_up, a warm-up request): (method, url, body,
        # timeout) -> (status, text). The GPU host and the in-cluster service reach its Service (ClusterIP); the
        # controller does not, so a driver there passes vllm_url (a tunnel) or its own callable.
        self.vllm_http = vllm_http or http_call
        self._intent = {}
        self.models = params.get("models") or []
        self.deployments = {"ollama": params.get("ollama_deployment") or "ollama",
                            "vllm": params.get("vllm_deployment") or "vllm"}
        self.holder = params.get("holder") or None
        self.phases = []
        self.notes = []
        self._last_renew = None
        self._state_exists = True

    # -- bookkeeping
    def phase(self, name, started, waited=0.0, **extra):
        entry = {"name": name, "seconds": round(self.clock() - started, 3), "waited": round(waited, 3)}
        entry.update(extra)
        entry["line"] = phase_line(entry)
        self.phases.append(entry)
        return entry

    def report(self, **extra):
        data = self.k.state()[0]
        out = {"phases": self.phases, "notes": self.notes, "holder": self.holder, "finished_at": self.wall(),
               "state": dict((k, v) for k, v in data.items()), "api_retries": self.k.api_retries}
        out.update(extra)
        return out

    def record(self, changes):
        if not self.check_mode:
            self.k.write_state(changes, exists=self._state_exists)
            self._state_exists = True

    def set_phase(self, phase):
        self.record({"intent_phase": phase})

    # -- the lock
    def lock(self, timeout):
        """Take the Lease; wait (up to ``timeout``) while another live holder has it."""
        started = self.clock()
        deadline = started + timeout
        self.holder = self.holder or holder_identity()
        duration = self.p.get("lease_duration") or 120
        while True:
            lease = self.k.lease()
            state = lease_state(lease, self.wall())
            if state["free"] or state["holder"] == self.holder:
                if self.check_mode or self.k.take_lease(lease, self.holder, duration, self.wall()):
                    self._last_renew = self.clock()
                    return self.clock() - started
                continue  # lost a race: read again
            if self.clock() >= deadline:
                raise SwapError("another gpu_swap holds the lock (Lease %s/%s, holder %s, renewed at %s, expires in %ss): "
                                "two swaps never run at once. Wait for it to finish, or if that run died, for the lease to "
                                "expire (or raise gpu_swap_lock_timeout)." % (self.k.namespace, LEASE_NAME, state["holder"],
                                                                              state.get("renewed_at"), state["expires_in"]))
            self.sleep(min(self.p.get("poll_interval") or 0.5, max(0.05, state["expires_in"])))

    def renew(self, force=False):
        """Renew our Lease (every third of its duration while waiting); fail if someone else has it now."""
        if self.check_mode or not self.holder:
            return
        duration = self.p.get("lease_duration") or 120
        if not force and self._last_renew is not None and self.clock() - self._last_renew < duration / 3.0:
            return
        lease = self.k.lease()
        state = lease_state(lease, self.wall())
        if state["holder"] and state["holder"] != self.holder:
            raise SwapError("the swap lock (Lease %s/%s) is now held by %s, not by this run (%s): this run was too slow to "
                            "renew it (raise gpu_swap_lease_duration). Stopping without further changes; the other run "
                            "owns the swap now." % (self.k.namespace, LEASE_NAME, state["holder"], self.holder))
        if not self.k.take_lease(lease, self.holder, duration, self.wall()):
            return self.renew(force=True)
        self._last_renew = self.clock()

    def unlock(self):
        if not self.check_mode and self.holder:
            self.k.release_lease(self.holder)

    # -- waits
    def wait(self, condition, timeout, describe):
        """Poll ``condition()`` (renewing the lock) until true; ``SwapError(describe())`` after ``timeout`` s."""
        started = self.clock()
        deadline = started + timeout
        interval = self.p.get("poll_interval") or 0.5
        while True:
            if condition():
                return self.clock() - started
            if self.clock() >= deadline:
                raise SwapError("timed out after %ss: %s" % (timeout, describe()))
            self.renew()
            self.sleep(interval)

    def wait_stopped(self, owner, node):
        """Wait until the owner's pods are DELETED or terminal (Failed/Succeeded: the kubelet is done, the scheduler no
        longer counts their GPU); a Terminating pod still holds its GPU."""
        name = self.deployments[owner]
        dep = self.k.deployment(name, missing_ok=True)
        waited = 0.0
        if dep is not None:
            pods = []

            def gone():
                pods[:] = [p for p in self.k.pods(dep) if not pod_terminal(p)]
                return not pods
            waited += self.wait(gone, self.p.get("delete_timeout") or 180,
                                lambda: "pods of Deployment %s/%s still exist: %s (a Terminating pod holds its GPU until "
                                        "the kubelet reports it terminal or the object is gone; raise "
                                        "gpu_swap_delete_timeout if they take longer)"
                                        % (self.k.namespace, name, describe_pods(pods)))
        return waited

    def wait_gpu_free(self, node):
        params = {"sources": ["kubernetes"], "resource_name": self.p.get("resource_name") or cap.DEFAULT_RESOURCE,
                  "node": node, "require_free": 1}
        failure = []

        def free():
            problem = cap.collect(params, kube_list=self.k.kube_list)[1]
            failure[:] = [problem] if problem else []
            return not problem
        return self.wait(free, self.p.get("delete_timeout") or 180, lambda: failure[0] if failure else "GPU not free")

    def remove_failed_pods(self):
        """Delete the GPU backends' Failed pods (``UnexpectedAdmissionError`` after a reboot, ``Evicted``): the
        ReplicaSet controller leaves them and pod GC only starts at 12,500 terminated pods. Returns their lines."""
        removed = []
        for owner in BACKENDS:
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is None:
                continue
            for pod in self.k.pods(dep):
                if (pod.get("status") or {}).get("phase") != "Failed":
                    continue
                line = describe_failed(pod)
                if not self.check_mode:
                    self.k.delete_pod(pod["metadata"]["name"])
                removed.append(line)
        if removed:
            self.notes.append("deleted the GPU backends' Failed pods (the ReplicaSet controller leaves them): %s"
                              % "; ".join(removed))
        return removed

    def preflight(self, node):
        """Refuse before anything stops when a pod other than the lab's GPU backends holds the node's GPU or waits
        (Pending) for it and fits the node: stopping the owner would hand it the GPU."""
        resource = self.p.get("resource_name") or cap.DEFAULT_RESOURCE
        nodes = [n for n in self.k.call("CoreV1Api", "list_node", "list nodes")["items"] if n["metadata"]["name"] == node]
        if not nodes:
            return []
        selectors = {}
        for owner in BACKENDS:
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is not None:
                selectors[owner] = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}

        def is_lab_backend(pod):
            meta = pod.get("metadata") or {}
            labels = meta.get("labels") or {}
            return meta.get("namespace") == self.k.namespace and any(
                sel and all(labels.get(k) == v for k, v in sel.items()) for sel in selectors.values())
        pods = self.k.call("CoreV1Api", "list_pod_for_all_namespaces", "list pods of all namespaces")["items"]
        found = gpu_claimants(pods, nodes[0], resource, is_lab_backend)
        allocatable = cap.parse_quantity(((nodes[0].get("status") or {}).get("allocatable") or {}).get(resource))
        if found and allocatable - sum(amount for _line, amount in found) < 1:
            raise SwapError("another pod claims the GPU of node %s: %s. Stopping the current owner would hand the GPU to "
                            "it, so nothing was changed and the current owner keeps serving. Stop or delete that pod "
                            "(or move it off this node), then swap again."
                            % (node, "; ".join(line for line, _amount in found)))
        return found

    def ready_timeout(self, owner):
        """gpu_swap_ready_timeout when set, else the target's startup-probe budget + READY_MARGIN (one budget per
        backend, set by the deploy role: the kubelet gives up on a load first, and the swap fails fast on that)."""
        if self.p.get("ready_timeout"):
            return self.p["ready_timeout"]
        dep = self.k.deployment(self.deployments[owner], missing_ok=True)
        budget = probe_budget(dep, self.p.get("vllm_container") if owner == "vllm" else None)
        return budget + READY_MARGIN if budget else DEFAULT_READY_TIMEOUT

    def wait_ready(self, owner):
        """Wait for Ready; end at once, naming the kubelet's reason and the container's message, when the target
        cannot get there by waiting (pod_failure: crash loop, image pull, OOM kill, startup-probe restart, Failed)."""
        name = self.deployments[owner]
        seen = {"dep": None, "pods": [], "failure": None}
        timeout = self.ready_timeout(owner)

        def ready():
            seen["dep"] = self.k.deployment(name)
            seen["pods"] = self.k.pods(seen["dep"])
            for pod in seen["pods"]:
                failure = None if (pod.get("metadata") or {}).get("deletionTimestamp") else pod_failure(pod)
                if failure:
                    seen["failure"] = (pod, failure)
                    return True
            return deployment_ready(seen["dep"], [p for p in seen["pods"] if not pod_terminal(p)])
        waited = self.wait(ready, timeout,
                           lambda: "Deployment %s/%s has no Ready pod: %s (raise gpu_swap_ready_timeout, or the backend's "
                                   "load budget, if the model only needs longer to load)"
                                   % (self.k.namespace, name, describe_pods(seen["pods"])))
        if seen["failure"]:
            pod, failure = seen["failure"]  # pylint: disable=unpacking-non-sequence
            events = ["%s: %s" % (e.get("reason"), (e.get("message") or "").strip()[:200])
                      for e in self.k.events(pod["metadata"]["name"]) if e.get("type") == "Warning"][-3:]
            raise SwapError("Deployment %s/%s will not become Ready: %s%s (after %.1f s of waiting)"
                            % (self.k.namespace, name, failure, "; kubelet events: " + " | ".join(events) if events else "",
                               waited))
        return waited

    # -- reading the world
    def gpu_nodes(self):
        nodes = self.k.call("CoreV1Api", "list_node", "list nodes")["items"]
        resource = self.p.get("resource_name") or cap.DEFAULT_RESOURCE
        return sorted(n["metadata"]["name"] for n in nodes if resource in ((n.get("status") or {}).get("allocatable") or {}))

    def current(self):
        """The recorded owner, else what runs (a Deployment with replicas > 0), else none."""
        data, exists = self.k.state()
        self._state_exists = exists
        recorded = owner_of(data)
        if recorded:
            return recorded, data
        running = []
        for owner in BACKENDS:
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep and (dep.get("spec") or {}).get("replicas", 1) > 0:
                model = ((dep.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION, "")
                running.append({"owner": owner, "model": model if owner == "vllm" else ""})
        if len(running) > 1:
            self.notes.append("no owner recorded and both GPU backends have replicas > 0; treating the first as the owner")
        return (running[0] if running else {"owner": "none", "model": ""}), data

    def catalog_node(self, target):
        if target["owner"] == "none":
            return None
        entries = cat.validate_catalog(self.models)
        if target["owner"] == "vllm":
            nodes = [m.get("node") for m in entries if m["name"] == target["model"]]
        else:
            nodes = sorted(set(m.get("node") for m in entries if m["backend"] == "ollama" and m.get("node")))
            nodes = nodes if len(nodes) == 1 else [None]
        return nodes[0] if nodes else None

    def status(self):
        current, data = self.current()
        lease = self.k.lease()
        backends = {}
        for owner in BACKENDS:
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is None:
                backends[owner] = {"deployment": self.deployments[owner], "exists": False}
                continue
            pods = self.k.pods(dep)
            backends[owner] = {"deployment": self.deployments[owner], "exists": True,
                               "replicas": (dep.get("spec") or {}).get("replicas", 1),
                               "ready": deployment_ready(dep, pods) if pods else False,
                               "strategy": ((dep.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate"),
                               "pods": describe_pods(pods),
                               "model": ((dep.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION, "")}
        intent = dict((k, data[k]) for k in INTENT_KEYS if data.get(k))
        return {"owner": target_name(current), "current": current, "node": data.get("node", ""), "intent": intent,
                "vllm_asleep": data.get(VLLM_ASLEEP_KEY) or "",
                "recovery": recovery_action(data), "lock": lease_state(lease, self.wall()), "backends": backends}

    # -- the vLLM model
    def derived_args(self, model):
        return cat.vllm_args(self.models, model) if model else []

    def args_in_use(self, args):
        """The catalog-derived arguments of whichever catalog model ``args`` contain (``[]`` if none)."""
        for entry in cat.models_by_backend(self.models, "vllm"):
            derived = self.derived_args(entry["name"])
            n = len(derived)
            if any(args[i:i + n] == derived for i in range(len(args) - n + 1)):
                return derived
        return []

    def set_vllm_model(self, new_model, node, multi_node):
        """Point the (scaled-down) vLLM Deployment at ``new_model``: args and served name from the catalog."""
        name = self.deployments["vllm"]
        dep = self.k.deployment(name)
        containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        wanted = self.p.get("vllm_container") or "vllm"
        match = [c for c in containers if c.get("name") == wanted] or containers[:1]
        if not match:
            raise SwapError("Deployment %s/%s has no containers" % (self.k.namespace, name))
        container = match[0]
        old_args = container.get("args") or []
        new_args = replace_vllm_args(old_args, self.args_in_use(old_args), self.derived_args(new_model))
        annotations = (dep.get("metadata") or {}).get("annotations") or {}
        selector = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
        pin = multi_node and selector.get("kubernetes.io/hostname") != node
        if new_args == old_args and annotations.get(MODEL_ANNOTATION) == new_model and not pin:
            return False
        body = {"metadata": {"annotations": {MODEL_ANNOTATION: new_model}},
                "spec": {"template": {"metadata": {"annotations": {MODEL_ANNOTATION: new_model}},
                                      "spec": {"containers": [{"name": container["name"], "args": new_args}]}}}}
        if pin:
            body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        if not self.check_mode:
            self.k.patch_deployment(name, body, "set the model %s (args and served name from the catalog)" % new_model)
        return True

    def pin_node(self, owner, node, multi_node):
        if not multi_node or owner == "vllm":
            return
        name = self.deployments[owner]
        dep = self.k.deployment(name)
        selector = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
        if selector.get("kubernetes.io/hostname") != node and not self.check_mode:
            self.k.patch_deployment(name, {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": node}}}}},
                                    "pin to node %s" % node)

    # -- the fast path: vLLM sleeps and wakes (docs/gpu_swap.md "Fast path: vLLM sleep mode")
    def fast_path(self, current, target, node, data):
        """``(fast, why not)``: whether this hand-over moves the VRAM instead of the pods; why not, when vLLM runs in
        sleep mode and the hand-over is between vLLM and Ollama but cannot (else ``None``)."""
        vllm_dep = self.k.deployment(self.deployments["vllm"], missing_ok=True)
        resource = self.p.get("resource_name") or cap.DEFAULT_RESOURCE
        nodes = [n for n in self.k.call("CoreV1Api", "list_node", "list nodes")["items"] if n["metadata"]["name"] == node]
        slots = int(cap.parse_quantity(((nodes[0].get("status") or {}).get("allocatable") or {}).get(resource))) \
            if nodes else 0
        why = fast_path_blocker(current, target, vllm_dep, slots, (data or {}).get(VLLM_ASLEEP_KEY))
        if why is None:
            try:
                self._vllm("GET", "/is_sleeping", timeout=5)
            except SwapError as exc:
                why = "this run cannot reach vLLM's sleep endpoints (set gpu_swap_vllm_url, or run the swap where the " \
                      "Service's ClusterIP answers): %s" % exc
        annotated = SLEEP_ANNOTATION in (((vllm_dep or {}).get("metadata") or {}).get("annotations") or {})
        worth_saying = annotated and set([current["owner"], target["owner"]]) == set(["vllm", "ollama"])
        return why is None, (why if worth_saying else None)

    def vllm_url(self):
        """vLLM's base URL: ``vllm_url`` when given (a test's stand-in, a tunnel), else its Service's ClusterIP."""
        return (self.p.get("vllm_url") or self.service_url(self.deployments["vllm"], VLLM_DEFAULT_PORT)).rstrip("/")

    def _vllm(self, method, path, body=None, timeout=30.0, ok=(200,)):
        """One request to vLLM; ``SwapError`` naming the request unless the status is in ``ok``."""
        url = self.vllm_url()
        if not url:
            raise SwapError("vLLM's Service %s/%s has no ClusterIP, so %s %s cannot reach it"
                            % (self.k.namespace, self.deployments["vllm"], method, path))
        status, text = self.vllm_http(method, url + path, body, timeout)
        if status not in ok:
            raise SwapError("vLLM (%s) answered %s %s with %s: %s" % (url, method, path, status or "no answer",
                                                                      (text or "").strip()[:300]))
        return text

    def route_vllm(self, on):
        """Put vLLM's pods in or out of its Service (the route label its Service selects; a label of the pod, not of the
        template: the ReplicaSet keeps the pod). Returns the pods relabelled."""
        dep = self.k.deployment(self.deployments["vllm"])
        value = "on" if on else "off"
        changed = []
        for pod in self.k.pods(dep):
            meta = pod.get("metadata") or {}
            if meta.get("deletionTimestamp") or pod_terminal(pod) or (meta.get("labels") or {}).get(ROUTE_LABEL) == value:
                continue
            if not self.check_mode:
                self.k.label_pod(meta["name"], {ROUTE_LABEL: value})
            changed.append(meta["name"])
        return changed

    def sleep_vllm(self):
        """Out of the route, drained (``vllm:num_requests_running`` 0: a sleep during a decode crashed the engine,
        vllm-project/vllm#45520), ``POST /sleep?level=1``, then ``/is_sleeping`` must say true. Returns seconds waited."""
        t0 = self.clock()
        self.route_vllm(False)
        self.phase("take vLLM out of its Service (route label off)", t0)
        t1 = self.clock()
        last = {"running": None}

        def drained():
            text = self._vllm("GET", "/metrics", timeout=10)
            running = metric_value(text, RUNNING_METRIC)
            if running is None:
                raise SwapError("vLLM's /metrics has no %s: is it vLLM?" % RUNNING_METRIC)
            last["running"] = running + (metric_value(text, WAITING_METRIC) or 0)  # a waiting request runs next
            return last["running"] == 0
        waited = self.wait(drained, self.p.get("drain_timeout") or DRAIN_TIMEOUT,
                           lambda: "vLLM still has %s request(s) running or waiting (%s, %s); it was not put to sleep "
                                   "(raise gpu_swap_drain_timeout for long generations)"
                                   % (last["running"], RUNNING_METRIC, WAITING_METRIC))
        self.phase("drain vLLM (%s == 0)" % RUNNING_METRIC, t1, waited)
        t2 = self.clock()
        self._vllm("POST", "/sleep?level=%d" % SLEEP_LEVEL, timeout=120)
        if not json.loads(self._vllm("GET", "/is_sleeping", timeout=10) or "{}").get("is_sleeping"):
            raise SwapError("vLLM answered POST /sleep but /is_sleeping says false")
        self.phase("vLLM sleeps (level %d: weights in host RAM, KV cache dropped)" % SLEEP_LEVEL, t2)
        return waited

    def wake_vllm(self, model):
        """``POST /wake_up``, ``/is_sleeping`` false, one 1-token warm-up request to vLLM itself, then back in the
        route. Returns seconds waited (none: every call answers when done)."""
        t0 = self.clock()
        self._vllm("GET", "/is_sleeping", timeout=10)  # reachable at all (fails fast, before a long wake timeout)
        self._vllm("POST", "/wake_up", timeout=120)
        if json.loads(self._vllm("GET", "/is_sleeping", timeout=10) or "{}").get("is_sleeping"):
            raise SwapError("vLLM answered POST /wake_up but /is_sleeping still says true")
        self.phase("wake vLLM", t0)
        t1 = self.clock()
        answer = self._vllm("POST", "/v1/chat/completions", {
            "model": cat.served_name(self.models, model), "max_tokens": 1,
            "messages": [{"role": "user", "content": "gpu_swap warm-up"}]}, timeout=120)
        self.phase("1-token warm-up request to vLLM", t1, answer=answer[:80])
        t2 = self.clock()
        self.route_vllm(True)
        self.phase("vLLM back in its Service (route label on)", t2)
        return 0.0

    # -- steps
    def _gap(self, name):
        """Record the time between the previous step and this one (the role's host-side task ran there)."""
        since = self.p.get("since")
        if since:
            entry = {"name": name, "seconds": round(max(0.0, self.wall() - float(since)), 3), "waited": 0.0,
                     "between_steps": True}
            entry["line"] = phase_line(entry)
            self.phases.append(entry)

    def begin(self, target_text):
        """Recover what an interrupted run left, validate, take the lock, record the intent."""
        t0 = self.clock()
        recovered = self.recover(internal=True)
        current, data = self.current()
        target = parse_target(target_text, self.models, current, self.p.get("default_vllm_model"))
        alias = probe_alias(self.models, target, self.p.get("probe_alias"))
        if self.p.get("verify_gateway") and alias and not self.p.get("gateway_url"):
            raise SwapError("gateway_url is not set, so %s could not be checked through the gateway after the swap: set "
                            "gpu_swap_gateway_url (LiteLLM as the controller reaches it, e.g. over the tailnet) or "
                            "gpu_swap_verify_gateway: false. Nothing was changed." % target_name(target))
        if self.p.get("verify_gateway") and alias and not self.p.get("gateway_api_key"):
            secret = self.p.get("gateway_secret") or "litellm-env"
            if not self.k.secret_value(secret, "LITELLM_MASTER_KEY"):
                raise SwapError("no gateway key: Secret %s/%s has no LITELLM_MASTER_KEY (run the secrets playbook) and "
                                "gpu_swap_gateway_api_key is not set, so %s could not be checked through the gateway "
                                "after the swap. Nothing was changed." % (self.k.namespace, secret, target_name(target)))
        for owner in set([target["owner"], current["owner"]]) - set(["none"]):
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is None:
                raise SwapError("Deployment %s/%s (the %s GPU backend) does not exist: run the deploy playbook first "
                                "(ansible-playbook ailab.gpu_lab.deploy)." % (self.k.namespace, self.deployments[owner], owner))
            strategy = ((dep.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
            if strategy != "Recreate":
                self.notes.append("Deployment %s uses %s: on one GPU a template change with RollingUpdate leaves the new "
                                  "pod Pending while the old one holds the GPU; deploy sets Recreate. The swap itself "
                                  "scales to 0 before changing anything, so it is not affected."
                                  % (self.deployments[owner], strategy))
        gpu_nodes = self.gpu_nodes()
        node = choose_node(self.p.get("node"), self.catalog_node(target), data.get("node"), gpu_nodes)
        running = self._running_backends()
        if data.get(VLLM_ASLEEP_KEY) and target["owner"] == "ollama":
            running = [o for o in running if o != "vllm"]  # a sleeping vLLM does not serve: Ollama has the GPU
        fast, why_not = self.fast_path(current, target, node, data)
        plan_changes = target_name(target) != target_name(current) or node != data.get("node") or \
            any(o != target["owner"] for o in running) or (target["owner"] != "none" and target["owner"] not in running)
        plan = self.plan(current, target, node, fast)
        if why_not:
            self.notes.append("vLLM runs in sleep mode, but this hand-over takes the usual path: %s" % why_not)
        if not plan_changes:
            self.phase("begin", t0)
            return dict(self.report(), changed=bool(recovered), noop=True, current=target_name(current),
                        target=target_name(target), node=node, plan=[], recovered=recovered)
        self.preflight(node)
        waited = self.lock(self.p.get("lock_timeout") or 0)
        self.record({"intent_from": target_name(current), "intent_to": target_name(target), "intent_phase": "begun",
                     "intent_holder": self.holder, "intent_started_at": micro_time(self.wall()),
                     "intent_restore": json.dumps(self.snapshot(), sort_keys=True),
                     "intent_path": FAST_PATH if fast else None})
        self.phase("begin (validate, lock, record intent)", t0, waited)
        return dict(self.report(), changed=True, noop=False, current=target_name(current), target=target_name(target),
                    node=node, plan=plan, recovered=recovered, multi_node=len(gpu_nodes) > 1, fast_path=fast,
                    ollama_unload=current["owner"] == "ollama" or "ollama" in running,
                    ollama_service_url=self.service_url(self.deployments["ollama"], OLLAMA_DEFAULT_PORT),
                    probe_alias=probe_alias(self.models, target, self.p.get("probe_alias")))

    def snapshot(self):
        """The GPU backends' templates as the swap may change them (template_snapshot), per backend."""
        return dict((owner, template_snapshot(self.k.deployment(self.deployments[owner], missing_ok=True),
                                              self.p.get("vllm_container") or "vllm" if owner == "vllm" else None))
                    for owner in BACKENDS)

    def restore_templates(self, restore_text):
        """Put the GPU backends' templates back as recorded at begin (args, model annotation, node selector)."""
        recorded = restore_data(restore_text)
        if restore_text and not recorded:
            self.notes.append("intent_restore in ConfigMap %s is not a JSON object: the templates were not restored"
                              % STATE_CONFIGMAP)
        restored = []
        for owner in BACKENDS:
            snap = recorded.get(owner)
            dep = self.k.deployment(self.deployments[owner], missing_ok=True) if snap else None
            ops = restore_ops(dep, snap) if dep else []
            if ops:
                if not self.check_mode:
                    self.k.patch_deployment_json(self.deployments[owner], ops, "restore the template as before the swap")
                restored.append(self.deployments[owner])
        return restored

    def service_url(self, name, default_port):
        """``http://<ClusterIP>:<port>`` of a Service: what the GPU host (a k3s node) reaches without cluster DNS."""
        svc = self.k.call("CoreV1Api", "read_namespaced_service", "read Service %s/%s" % (self.k.namespace, name),
                          missing_ok=True, name=name, namespace=self.k.namespace)
        spec = (svc or {}).get("spec") or {}
        if not spec.get("clusterIP") or spec.get("clusterIP") == "None":
            return ""
        ports = spec.get("ports") or [{}]
        return "http://%s:%s" % (spec["clusterIP"], ports[0].get("port") or default_port)

    def _running_backends(self):
        out = []
        for owner in BACKENDS:
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep and (dep.get("spec") or {}).get("replicas", 1) > 0:
                out.append(owner)
        return out

    def plan(self, current, target, node, fast=False):
        """What this swap will do, one line per SEQUENCE step that applies to it, in SEQUENCE order."""
        alias = probe_alias(self.models, target, self.p.get("probe_alias"))
        if fast:
            return self._plan_fast(current, target, node, alias)
        lines = {
            "pull": [],  # ran already: the role pulls the weights before begin (gpu_swap_vllm_pull)
            "begin": ["record the intent %s -> %s and take Lease %s"
                      % (target_name(current), target_name(target), LEASE_NAME)],
            "unload": ["unload Ollama's models (keep_alive: 0)"] if current["owner"] == "ollama" else [],
            "stop": ["scale Deployment %s to 0 and wait until its pods are deleted" % self.deployments[owner]
                     for owner in BACKENDS if owner != target["owner"]],
            "host-check": ["require the GPU of node %s free in Kubernetes and on the host (nvidia-smi)" % node],
            "start": (["set vLLM's model %s (args and served name from the catalog)" % target["model"]]
                      if target["owner"] == "vllm" else [])
            + (["scale Deployment %s to 1, wait for Ready, send a request through the gateway to %s"
                % (self.deployments[target["owner"]], alias)] if target["owner"] != "none" else [])
            + ["record owner %s on node %s, release the lock" % (target_name(target), node)],
            "rollback": [],
        }
        return [line for row in SEQUENCE for line in lines[row["step"]]]

    def _plan_fast(self, current, target, node, alias):
        """The fast path's plan: each SEQUENCE step's "fast" work for this direction, in SEQUENCE order."""
        direction = 1 if target["owner"] == "vllm" else 0
        lines = ["%s -> %s on node %s by vLLM's sleep mode (fast path), Lease %s"
                 % (target_name(current), target_name(target), node, LEASE_NAME)]
        for row in SEQUENCE:
            work = row["fast"][direction]
            if work and row["step"] not in ("rollback", "begin"):
                lines.append("%s: %s" % (row["step"], work))
        if alias:
            lines.append("the gateway check sends a request to %s" % alias)
        return lines

    def _check_intent(self, step):
        """Act only on this run's own intent, in a phase this step may start from (TRANSITIONS), with the Lease."""
        if not self.holder:
            raise SwapError("holder is required for this step (the begin step returns it)")
        allowed = dict((name, froms) for name, froms, _records in TRANSITIONS)[step]
        data, self._state_exists = self.k.state()
        self._intent = data
        if data.get("intent_holder") != self.holder or data.get("intent_phase") not in allowed:
            raise SwapError("the recorded swap intent is not this run's %s step to take (ConfigMap %s/%s: holder %s, phase "
                            "%s; this run is %s, step %s needs phase %s): another run recovered or took over this swap. "
                            "Stopping without changes." % (step, self.k.namespace, STATE_CONFIGMAP,
                                                           data.get("intent_holder") or "none",
                                                           data.get("intent_phase") or "none", self.holder, step,
                                                           " or ".join(str(a) for a in allowed)))
        self.renew(force=True)

    def stop(self, node, keep=None, unload_error=None):
        """Scale every GPU backend except ``keep`` to 0; wait until their pods are gone and the GPU is free."""
        self._check_intent("stop")
        self._gap("unload Ollama models (model_pull, between steps)")
        if unload_error:
            self.notes.append("Ollama's models were not unloaded before the stop (%s); stopping the pod frees their "
                              "memory anyway" % unload_error)
        t0 = self.clock()
        self.preflight(node)  # again: a pod may have started waiting for the GPU since begin
        removed = self.remove_failed_pods()
        self.set_phase("stopping")
        waited_sleep = 0.0
        if self._intent.get("intent_path") == FAST_PATH:
            keep = "vllm"  # the fast path: vLLM keeps its pod (and slot); it sleeps (or sleeps already)
            if parse_owner_text(self._intent.get("intent_from"))["owner"] == "vllm":
                waited_sleep = self.sleep_vllm()
                self.record({VLLM_ASLEEP_KEY: "level%d" % SLEEP_LEVEL})
            t0 = self.clock()
        stopped = []
        for owner in BACKENDS:
            if owner == keep:
                continue
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is None:
                continue
            if (dep.get("spec") or {}).get("replicas", 1) > 0:
                self.k.scale(self.deployments[owner], 0)
                stopped.append(owner)
        self.phase("scale to 0: %s" % (", ".join(self.deployments[o] for o in stopped) or "nothing running"), t0)
        t1 = self.clock()
        waited = sum(self.wait_stopped(owner, node) for owner in BACKENDS if owner != keep)
        self.phase("wait until pods are deleted", t1, waited)
        t2 = self.clock()
        waited = self.wait_gpu_free(node)
        self.phase("require the GPU free in Kubernetes (gpu_capacity)", t2, waited)
        changes = {"intent_phase": "stopped"}
        if "vllm" in stopped:
            changes[VLLM_ASLEEP_KEY] = None  # a sleeping vLLM stopped (a game, or another model) sleeps no more
        self.record(changes)
        return dict(self.report(), changed=bool(stopped or removed or waited_sleep or keep == "vllm"), stopped=stopped,
                    removed_pods=removed)

    def start(self, target_text, node, multi_node=False, verify=None):
        """Start the target, wait for Ready, verify through the gateway, commit, unlock."""
        self._check_intent("start")
        self._gap("host GPU memory check (gpu_capacity nvidia-smi, between steps)")
        target = parse_owner_text(target_text)
        t0 = self.clock()
        self.set_phase("starting")
        fast = self._intent.get("intent_path") == FAST_PATH
        asleep = {}
        if fast:  # the record says whether vLLM sleeps (deploy keeps its replica then)
            asleep = {VLLM_ASLEEP_KEY: None if target["owner"] == "vllm" else "level%d" % SLEEP_LEVEL}
        if fast and target["owner"] == "vllm":
            self.wake_vllm(target["model"])  # wake, 1-token warm-up, back in the route: no pod starts
        elif target["owner"] == "vllm":
            self.set_vllm_model(target["model"], node, multi_node)
        if target["owner"] != "none":
            if not (fast and target["owner"] == "vllm"):
                self.pin_node(target["owner"], node, multi_node)
                self.k.scale(self.deployments[target["owner"]], 1)
                self.phase("scale %s to 1" % self.deployments[target["owner"]], t0)
            t1 = self.clock()
            waited = self.wait_ready(target["owner"])
            self.phase("wait for Ready", t1, waited)
            if verify is not None:
                t2 = self.clock()
                self.set_phase("verifying")
                answer, waited = verify(self)
                self.phase("request through the gateway", t2, waited, answer=answer)
        t3 = self.clock()
        self.record(dict({"intent_phase": "committing"}, **asleep))
        self.commit(target, node)
        self.phase("record the owner, release the lock", t3)
        return dict(self.report(), changed=True, owner=target_name(target))

    def commit(self, target, node):
        # owner_since / owner_trigger: when and by what (playbook, request, idle, gamemode) the owner got the GPU; the
        # on-demand service's minimum residency counts from owner_since (module_utils/gpu_demand.py).
        changes = {"owner": target["owner"], "model": target["model"], "node": node,
                   "owner_since": micro_time(self.wall()), "owner_trigger": self.p.get("trigger") or "playbook"}
        changes.update(dict((k, None) for k in INTENT_KEYS))
        self.record(changes)
        self.unlock()

    def rollback(self, reason=""):
        """Restore ``intent_from``: stop the rest, restore its model, start it, wait Ready, record, unlock."""
        t0 = self.clock()
        data, exists = self.k.state()
        self._state_exists = exists
        if not data.get("intent_phase"):
            self.phase("rollback: no swap in progress", t0)
            return dict(self.report(), changed=False, restored=None)
        previous = parse_owner_text(data.get("intent_from"))
        attempted = parse_owner_text(data.get("intent_to"))
        node = data.get("node") or choose_node(self.p.get("node"), None, None, self.gpu_nodes())
        if self.holder != data.get("intent_holder") or not self.holder:
            self.lock(self.p.get("lock_timeout") or 0)
        self.renew(force=True)
        self.set_phase("rolling_back")
        if data.get("intent_path") == FAST_PATH:
            return self._rollback_fast(previous, attempted, node, reason, t0)
        restore = data.get("intent_restore")
        keep = previous["owner"] if previous["owner"] != "none" else None
        if keep and restore:
            snap = restore_data(restore).get(keep)
            dep = self.k.deployment(self.deployments[keep], missing_ok=True)
            if snap and dep and restore_ops(dep, snap):
                keep = None  # its template was changed (vLLM's model, a node pin): stop it before putting it back
        elif keep == "vllm":  # an intent recorded without templates (before intent_restore existed)
            dep = self.k.deployment(self.deployments["vllm"], missing_ok=True) or {}
            if ((dep.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION) != previous["model"]:
                keep = None  # vLLM runs (or was being started with) another model: stop it before changing args
        for owner in BACKENDS:
            if owner == keep:
                continue
            dep = self.k.deployment(self.deployments[owner], missing_ok=True)
            if dep is not None and (dep.get("spec") or {}).get("replicas", 1) > 0:
                self.k.scale(self.deployments[owner], 0)
        self.remove_failed_pods()
        waited = sum(self.wait_stopped(o, node) for o in BACKENDS if o != keep)
        if restore:
            restored = self.restore_templates(restore)
            if restored:
                self.notes.append("restored the template of %s as it was before the swap" % ", ".join(restored))
        elif previous["owner"] == "vllm" and previous["model"]:
            self.set_vllm_model(previous["model"], node, False)
        if previous["owner"] != "none":
            self.k.scale(self.deployments[previous["owner"]], 1)
            waited += self.wait_ready(previous["owner"])
        self.record({VLLM_ASLEEP_KEY: None})  # every backend but the previous owner is stopped: none sleeps
        self.commit(previous, node)
        self.phase("rollback to %s%s" % (target_name(previous), " (%s)" % reason if reason else ""), t0, waited)
        return dict(self.report(), changed=True, restored=target_name(previous), attempted=target_name(attempted))

    def _restart_vllm(self, node, why, start):
        """vLLM could not be woken or put to sleep (its engine died, or it is out of this run's reach): stop its pod,
        as the slow path does, and start it again when ``start`` (a fresh vLLM loads the model and is awake)."""
        self.notes.append("vLLM could not be %s (%s): its pod was %s" % (
            "woken" if start else "put to sleep again", why, "restarted" if start else "stopped"))
        name = self.deployments["vllm"]
        if (self.k.deployment(name).get("spec") or {}).get("replicas", 1) > 0:
            self.k.scale(name, 0)
        waited = self.wait_stopped("vllm", node)
        if start:
            self.k.scale(name, 1)
        return waited

    def _rollback_fast(self, previous, attempted, node, reason, t0):
        """Undo a fast-path hand-over: vllm -> ollama: Ollama stopped, vLLM woken and routed again; ollama -> vllm: vLLM
        out of the route and asleep again (stopped when that fails), Ollama back. Then record and unlock."""
        waited = 0.0
        asleep = None
        if previous["owner"] == "vllm":
            dep = self.k.deployment(self.deployments["ollama"], missing_ok=True)
            if dep is not None and (dep.get("spec") or {}).get("replicas", 1) > 0:
                self.k.scale(self.deployments["ollama"], 0)
            self.remove_failed_pods()
            waited += self.wait_stopped("ollama", node)
            try:
                self.wake_vllm(previous["model"])  # a vLLM still awake answers /wake_up with 200 too
            except SwapError as exc:
                waited += self._restart_vllm(node, str(exc), start=True)
            waited += self.wait_ready("vllm")
        else:
            try:
                waited += self.sleep_vllm()
                asleep = "level%d" % SLEEP_LEVEL
            except SwapError as exc:
                waited += self._restart_vllm(node, str(exc), start=False)
            self.k.scale(self.deployments["ollama"], 1)
            waited += self.wait_ready("ollama")
        self.record({VLLM_ASLEEP_KEY: asleep})
        self.commit(previous, node)
        self.phase("rollback to %s, fast path%s" % (target_name(previous), " (%s)" % reason if reason else ""), t0,
                   waited)
        return dict(self.report(), changed=True, restored=target_name(previous), attempted=target_name(attempted))

    def recover(self, internal=False):
        """Finish (phase committing) or roll back a swap another run left behind; None when there is none."""
        data, exists = self.k.state()
        self._state_exists = exists
        action = recovery_action(data)
        if action is None:
            return None
        t0 = self.clock()
        if self.check_mode:
            self.notes.append("an interrupted swap %s -> %s (phase %s) would be %s first"
                              % (data.get("intent_from"), data.get("intent_to"), data.get("intent_phase"),
                                 "completed" if action == "complete" else "rolled back"))
            return {"action": action, "from": data.get("intent_from"), "to": data.get("intent_to"),
                    "phase": data.get("intent_phase")}
        own_holder = self.holder
        self.holder = None
        self.lock(self.p.get("lock_timeout") or 0)
        data = self.k.state()[0]  # re-read under the lock: the other run may have finished meanwhile
        action = recovery_action(data)
        if action is None:
            self.unlock()
            self.holder = own_holder
            return None
        info = {"action": action, "from": data.get("intent_from"), "to": data.get("intent_to"),
                "phase": data.get("intent_phase"), "holder": data.get("intent_holder")}
        if action == "complete":
            target = parse_owner_text(data.get("intent_to"))
            self.commit(target, data.get("node") or choose_node(None, None, None, self.gpu_nodes()))
            self.phase("recover: complete %s -> %s" % (info["from"], info["to"]), t0)
        else:
            self.rollback("recovering the run interrupted in phase %s" % info["phase"])
        self.holder = own_holder if internal else self.holder
        return info


# ---------------------------------------------------------------- the gateway check
def gateway_request(url, api_key, alias, timeout, open_url, headers=None):
    """POST one chat completion to ``alias`` with fallbacks disabled. Returns (ok, detail)."""
    body = {"model": alias, "messages": [{"role": "user", "content": "gpu_swap check: reply with one word"}],
            "max_tokens": 8, "disable_fallbacks": True}
    hdrs = {"Content-Type": "application/json", "Authorization": "Bearer %s" % api_key}
    hdrs.update(headers or {})
    try:
        resp = open_url(url.rstrip("/") + "/v1/chat/completions", method="POST", data=json.dumps(body), headers=hdrs,
                        timeout=timeout, use_proxy=False, validate_certs=True)
        raw = resp.read()
        answered = json.loads(raw)
        text = ((answered.get("choices") or [{}])[0].get("message") or {}).get("content")
        fallbacks = resp.headers.get("x-litellm-attempted-fallbacks")
        if fallbacks not in (None, "", "0"):
            return False, "answered by a fallback (x-litellm-attempted-fallbacks: %s), not by %s" % (fallbacks, alias)
        if not text:
            return False, "answer without a message: %s" % raw[:200]
        return True, text
    except Exception as exc:  # noqa: BLE001 - every failure is a reason to retry until the deadline
        detail = getattr(exc, "code", None)
        body = ""
        try:
            body = exc.read().decode("utf-8", "replace")[:300]  # HTTPError
        except Exception:  # noqa: BLE001
            body = str(exc)[:300]
        return False, "HTTP %s: %s" % (detail, body) if detail else body


def gateway_verifier(url, api_key, alias, timeout, open_url):
    """A ``verify`` callback for ``Swap.start``: poll the gateway until ``alias`` answers, or fail."""
    def verify(swap):
        last = []

        def answered():
            ok, detail = gateway_request(url, api_key, alias, 30, open_url)
            last[:] = [detail]
            return ok
        waited = swap.wait(answered, timeout, lambda: "the gateway %s did not answer a request to %s: %s (is LiteLLM "
                                                      "up, and does its catalog route %s to this backend?)"
                           % (url, alias, last[0] if last else "no answer", alias))
        return (last[0] if last else ""), waited
    return verify
