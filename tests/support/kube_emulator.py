"""A Kubernetes API emulator for tests: HTTP on 127.0.0.1, no real apiserver involved.

No real apiserver can run on the build machine (no container runtime, no etcd), so every
Kubernetes-facing test of this collection runs against this server. It speaks the REST
API that the ``kubernetes`` Python client and ``kubernetes.core`` call, with JSON bodies.

What it EMULATES (docs/testing.md has the same list):

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>`` for
  core, apps, batch, networking.k8s.io, rbac.authorization.k8s.io, policy, node.k8s.io,
  storage.k8s.io, coordination.k8s.io, autoscaling, apiextensions.k8s.io and the CRDs the
  stack uses (helm.cattle.io HelmChart/HelmChartConfig, monitoring.coreos.com
  ServiceMonitor/PodMonitor/PrometheusRule, traefik.io IngressRoute/Middleware);
- get, list (with ``kind: <Kind>List``, label selectors ``= == != in notin exists !key``,
  field selectors ``= == !=`` on any dotted path), create (``generateName`` too), replace
  (PUT), delete, patch as json-patch, merge-patch, strategic-merge-patch (merge keys by
  ``name``/``containerPort``/``mountPath``/... for the usual pod-spec lists; custom
  resources refuse it with 415 like a real apiserver) and server-side apply (approximated
  as create-or-merge: no field ownership), ``dryRun=All``;
- ``metadata.resourceVersion`` (one global counter; a no-op write keeps the version;
  a stale version in PUT or PATCH gives 409), ``uid``, ``generation`` (bumped on spec
  changes), ``creationTimestamp``; Secret ``stringData`` folded into base64 ``data``;
- the ``/scale`` subresource of Deployments, StatefulSets and ReplicaSets, ``/status``;
- bearer-token authentication (401 with a wrong token);
- controllers, simplified: a Deployment owns a ReplicaSet per pod-template hash and the
  ReplicaSet's Pods; ``strategy: Recreate`` deletes every old Pod and creates new ones only
  once the old Pod objects are gone, ``RollingUpdate`` surges one new Pod and deletes old
  ones when the new one is Ready (so on one GPU it deadlocks, as on a real cluster);
  a StatefulSet owns Pods ``<name>-<i>``; deleting an owner deletes what it owns;
  deleting a Namespace deletes its objects;
- a scheduler that only looks at EXTENDED resources (any resource name with a ``/``, e.g.
  ``nvidia.com/gpu`` or ``nvidia.com/gpu.shared``): a Pod is bound to a Ready node whose
  allocatable minus what the Pods already bound to it request (Terminating Pods included,
  as the real scheduler counts them) covers its request, else it stays Pending with
  ``PodScheduled=False/Unschedulable``; ``nodeName``, ``nodeSelector`` and a missing
  RuntimeClass (Pending, reason ``RuntimeClassNotFound``) are honoured;
- the kubelet, simplified: a bound Pod becomes Running after ``start_seconds`` and Ready
  after ``ready_seconds`` more; a deleted Pod stays Terminating (with
  ``deletionTimestamp``, still holding its GPU) for ``terminating_seconds`` then vanishes.
  Behaviours per workload (``set_behaviour``) make readiness slow or fail forever, to
  model slow model loads and broken backends.

What it does NOT emulate: watches (``watch=true`` gives 400), protobuf, CPU/memory
scheduling, taints/tolerations/affinity, admission webhooks, validation of object
schemas (use kubernetes-validate for that), field managers, ``limit``/``continue``
paging, RBAC authorisation (one token can do everything), Services/Endpoints
behaviour, Jobs, DaemonSet Pods, HelmChart installs, container logs and exec.

Control endpoints (no auth, loopback only) under ``/__emulator__/``: ``behaviours``
(POST a behaviour, DELETE all), ``settings`` (POST), ``objects`` (GET: every stored
object), ``tick`` (POST: run the controllers now).
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import hashlib
import itertools
import json
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.support.serve import run_in_foreground

# group, version, plural, kind, namespaced, subresources, short names
_RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False, ("status",), ("ns",)),
    ("", "v1", "nodes", "Node", False, ("status",), ("no",)),
    ("", "v1", "pods", "Pod", True, ("status",), ("po",)),
    ("", "v1", "services", "Service", True, ("status",), ("svc",)),
    ("", "v1", "endpoints", "Endpoints", True, (), ("ep",)),
    ("", "v1", "configmaps", "ConfigMap", True, (), ("cm",)),
    ("", "v1", "secrets", "Secret", True, (), ()),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, (), ("sa",)),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("status",), ("pvc",)),
    ("", "v1", "persistentvolumes", "PersistentVolume", False, ("status",), ("pv",)),
    ("", "v1", "events", "Event", True, (), ("ev",)),
    ("", "v1", "resourcequotas", "ResourceQuota", True, ("status",), ("quota",)),
    ("", "v1", "limitranges", "LimitRange", True, (), ("limits",)),
    ("apps", "v1", "deployments", "Deployment", True, ("status", "scale"), ("deploy",)),
    ("apps", "v1", "replicasets", "ReplicaSet", True, ("status", "scale"), ("rs",)),
    ("apps", "v1", "statefulsets", "StatefulSet", True, ("status", "scale"), ("sts",)),
    ("apps", "v1", "daemonsets", "DaemonSet", True, ("status",), ("ds",)),
    ("batch", "v1", "jobs", "Job", True, ("status",), ()),
    ("batch", "v1", "cronjobs", "CronJob", True, ("status",), ("cj",)),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("status",), ("ing",)),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, (), ()),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, (), ("netpol",)),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), ()),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), ()),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), ()),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, (), ()),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("status",), ("pdb",)),
    ("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, (), ()),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, (), ("sc",)),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, (), ()),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",), ("hpa",)),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ("status",), ("crd",)),
    ("helm.cattle.io", "v1", "helmcharts", "HelmChart", True, ("status",), ()),
    ("helm.cattle.io", "v1", "helmchartconfigs", "HelmChartConfig", True, (), ()),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True, (), ("smon",)),
    ("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", True, (), ("pmon",)),
    ("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", True, (), ("promrule",)),
    ("traefik.io", "v1alpha1", "ingressroutes", "IngressRoute", True, (), ()),
    ("traefik.io", "v1alpha1", "middlewares", "Middleware", True, (), ()),
]
_CUSTOM_GROUPS = {"helm.cattle.io", "monitoring.coreos.com", "traefik.io"}
# Kinds whose main endpoint ignores .status (it has its own subresource).
_STATUS_SPLIT = {"Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Namespace",
                 "PersistentVolumeClaim", "Service", "HelmChart", "Ingress"}
# Strategic-merge keys of the pod-spec lists (the subset of the real schema we need).
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort",
    "imagePullSecrets": "name", "hostAliases": "ip", "tolerations": "key",
    "volumeDevices": "devicePath", "conditions": "type",
}
_DEFAULT_NODE_GPU = "nvidia.com/gpu"


class ApiError(Exception):
    """An API error, rendered as a ``Status`` object."""

    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


class _Res:
    def __init__(self, group, version, plural, kind, namespaced, subresources, short):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.subresources, self.short = namespaced, subresources, short
        self.api_version = f"{group}/{version}" if group else version
        self.custom = group in _CUSTOM_GROUPS


RESOURCES = [_Res(*r) for r in _RESOURCES]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_nulls(obj):
    if isinstance(obj, dict):
        return {k: _strip_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_nulls(v) for v in obj]
    return obj


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target, patch, field=None):
    """A strategic merge patch: lists with a known merge key merge item by item."""
    if isinstance(patch, list):
        key = _MERGE_KEYS.get(field)
        if not key or not isinstance(target, list):
            return [_drop_directives(v) for v in patch if not (isinstance(v, dict) and v.get("$patch") == "delete")]
        result = copy.deepcopy(target)
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                result.append(_drop_directives(item))
                continue
            idx = next((i for i, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    result.pop(idx)
            elif idx is None:
                result.append(_drop_directives(item))
            else:
                result[idx] = strategic_merge_patch(result[idx], item)
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _drop_directives(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList: ordering hints only here
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _drop_directives(obj):
    if isinstance(obj, dict):
        return {k: _drop_directives(v) for k, v in obj.items() if not k.startswith("$")}
    if isinstance(obj, list):
        return [_drop_directives(v) for v in obj]
    return obj


def json_patch(target, ops):
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    doc = copy.deepcopy(target)

    def walk(path):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        return parent, parts[-1]

    def get(path):
        parent, last = walk(path)
        return parent[int(last)] if isinstance(parent, list) else parent[last]

    for op in ops:
        kind, path = op["op"], op["path"]
        try:
            if kind == "test":
                if get(path) != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch test failed at {path}")
                continue
            if kind in ("copy", "move"):
                value = copy.deepcopy(get(op["from"]))
                if kind == "move":
                    parent, last = walk(op["from"])
                    parent.pop(int(last) if isinstance(parent, list) else last)
                kind, op = "add", {"value": value}
            parent, last = walk(path)
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            elif kind == "remove":
                parent.pop(int(last) if isinstance(parent, list) else last)
            else:
                raise ApiError(400, "BadRequest", f"unknown json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"json patch {kind} {path}: path not found ({exc})") from exc
    return doc


_SEL_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_selector(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def match_labels(selector, labels):
    """Evaluate a label selector string against a labels mapping."""
    labels = labels or {}
    for term in _split_selector(selector or ""):
        m = _SEL_RE.match(term)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        neg, key, op, val, setop, setvals = m.groups()
        if op in ("=", "=="):
            ok = labels.get(key) == val
        elif op == "!=":
            ok = labels.get(key) != val
        elif setop:
            values = {v.strip() for v in setvals.split(",") if v.strip()}
            ok = labels.get(key) in values if setop == "in" else labels.get(key) not in values
        else:
            ok = (key in labels) != bool(neg)
        if not ok:
            return False
    return True


def _dig(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def match_fields(selector, obj):
    """Evaluate a field selector string (``a.b=c``, ``!=``) against an object."""
    for term in _split_selector(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, val = m.groups()
        cur = _dig(obj, path)
        cur = "" if cur is None else str(cur)
        if (cur == val) != (op != "!="):
            return False
    return True


def _quantity(value):
    """Parse a Kubernetes quantity of an extended resource (integers, with optional suffixes)."""
    if value is None:
        return 0
    text = str(value)
    suffixes = {"k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, mult in suffixes.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text) if "." in text else int(text)


def pod_extended_requests(pod):
    """Extended resources a pod asks for: limits imply requests for extended resources."""
    total = {}
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []):
        res = container.get("resources") or {}
        merged = dict(res.get("limits") or {})
        merged.update(res.get("requests") or {})
        for name, qty in merged.items():
            if "/" in name:
                total[name] = total.get(name, 0) + _quantity(qty)
    return total


def _omit_zero(status):
    """Integer status fields are ``omitempty`` in the real API: a 0 is absent."""
    return {k: v for k, v in status.items() if not (isinstance(v, int) and not isinstance(v, bool) and v == 0)}


def _template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


class Behaviour:
    """How pods of a workload behave: slow start, slow or failing readiness, long termination."""

    def __init__(self, namespace=None, workload=None, selector=None, start_seconds=None,
                 ready_seconds=None, fail_readiness=False, terminating_seconds=None):
        self.namespace, self.workload, self.selector = namespace, workload, selector
        self.start_seconds, self.ready_seconds = start_seconds, ready_seconds
        self.fail_readiness, self.terminating_seconds = fail_readiness, terminating_seconds

    def matches(self, pod, workload):
        meta = pod["metadata"]
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        if self.workload and workload != self.workload:
            return False
        if self.selector and not match_labels(self.selector, meta.get("labels")):
            return False
        return True


class ClusterState:
    """The object store and the simulated controllers; every method holds the lock."""

    def __init__(self, token, start_seconds=0.2, ready_seconds=0.3, terminating_seconds=1.0):
        self.lock = threading.RLock()
        self.token = token
        self.objects = {}  # (group, plural, namespace or "", name) -> object
        self.rv = itertools.count(1)
        self.last_rv = 0
        self.settings = {"start_seconds": start_seconds, "ready_seconds": ready_seconds,
                         "terminating_seconds": terminating_seconds}
        self.behaviours = []
        self.pod_times = {}  # uid -> {"bound": t, "deleted": t}
        self.suffix = itertools.count(1)
        self.request_log = []  # (method, path with query) of every API request, for "what was called" assertions

    # ---- storage -------------------------------------------------------------
    def _next_rv(self):
        self.last_rv = next(self.rv)
        return str(self.last_rv)

    @staticmethod
    def _key(res, namespace, name):
        return (res.group, res.plural, namespace if res.namespaced else "", name)

    def items(self, res, namespace=None):
        out = []
        for (group, plural, ns, _), obj in self.objects.items():
            if group == res.group and plural == res.plural and (namespace is None or ns == namespace):
                out.append(obj)
        return sorted(out, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def get(self, res, namespace, name):
        obj = self.objects.get(self._key(res, namespace, name))
        if obj is None:
            group = f"{res.plural}.{res.group}" if res.group else res.plural
            raise ApiError(404, "NotFound", f'{group} "{name}" not found')
        return obj

    def _normalise(self, res, obj, namespace):
        obj = _strip_nulls(copy.deepcopy(obj))
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if res.kind == "Secret":
            data = obj.setdefault("data", {})
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            if not data:
                obj.pop("data")
            obj.setdefault("type", "Opaque")
        for field in ("labels", "annotations"):
            if field in meta and not meta[field]:
                meta.pop(field)
            elif field in meta:
                meta[field] = {k: str(v) for k, v in meta[field].items()}
        return obj

    def create(self, res, namespace, body, dry_run=False, internal=False):
        obj = self._normalise(res, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{res.kind}: metadata.name or metadata.generateName is required")
            meta["name"] = f"{meta['generateName']}{next(self.suffix):05x}"
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", meta["name"]) or len(meta["name"]) > 253:
            raise ApiError(422, "Invalid", f'{res.kind} "{meta["name"]}" is invalid: metadata.name: must be a lowercase RFC 1123 subdomain')
        ns = meta.get("namespace")
        if res.namespaced and not internal and ("", "namespaces", "", ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        if res.namespaced and not internal:
            nsobj = self.objects.get(("", "namespaces", "", ns))
            if nsobj and nsobj["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'unable to create new content in namespace {ns} because it is being terminated')
        key = self._key(res, ns, meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        if res.kind in _STATUS_SPLIT and not internal:
            obj.pop("status", None)
        if res.kind == "Pod" and not internal:
            obj.setdefault("status", {"phase": "Pending"})
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        meta.pop("resourceVersion", None)
        if dry_run:
            meta["resourceVersion"] = str(self.last_rv)
            return obj
        meta["resourceVersion"] = self._next_rv()
        self.objects[key] = obj
        return obj

    def write(self, res, namespace, name, new, expected_rv=None, subresource=None, dry_run=False):
        """Store a new version of an existing object; no-op writes keep resourceVersion."""
        old = self.get(res, namespace, name)
        if expected_rv and expected_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been modified; please apply your changes to the latest version and try again')
        new = self._normalise(res, new, namespace)
        new["metadata"]["name"] = name
        if res.kind in _STATUS_SPLIT:
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is not None:
                    new["status"] = status
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "ownerReferences"):
            if field in old["metadata"] and (field != "ownerReferences" or field not in new["metadata"]):
                new["metadata"][field] = old["metadata"][field]
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return old
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[self._key(res, namespace, name)] = new
        return new

    def delete(self, res, namespace, name, grace=None, dry_run=False):
        obj = self.get(res, namespace, name)
        if dry_run:
            return obj
        if res.kind == "Pod":
            if not obj["metadata"].get("deletionTimestamp"):
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["deletionGracePeriodSeconds"] = 30 if grace is None else grace
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[self._key(res, namespace, name)] = obj
                times = self.pod_times.setdefault(obj["metadata"]["uid"], {})
                times["deleted"] = time.monotonic()
                times["grace"] = 0 if grace == 0 or "nodeName" not in obj.get("spec", {}) else None
            return obj
        if res.kind == "Namespace":
            obj = copy.deepcopy(obj)
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["status"] = {"phase": "Terminating"}
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[self._key(res, namespace, name)] = obj
            return obj
        del self.objects[self._key(res, namespace, name)]
        self._delete_dependents(obj["metadata"]["uid"])
        return obj

    def _delete_dependents(self, uid):
        for key, obj in list(self.objects.items()):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                res = BY_KIND[obj["kind"]]
                if key in self.objects:
                    self.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    # ---- controllers -----------------------------------------------------------
    def behaviour_for(self, pod, workload):
        for behaviour in reversed(self.behaviours):
            if behaviour.matches(pod, workload):
                return behaviour
        return None

    def _setting(self, behaviour, name):
        value = getattr(behaviour, name) if behaviour else None
        return self.settings[name] if value is None else value

    def tick(self):
        with self.lock:
            self._namespaces()
            for obj in self.items(BY_KIND["Deployment"]):
                self._deployment(obj)
            for obj in self.items(BY_KIND["ReplicaSet"]):
                self._replicaset(obj)
            for obj in self.items(BY_KIND["StatefulSet"]):
                self._statefulset(obj)
            self._schedule_and_run()
            for obj in self.items(BY_KIND["ReplicaSet"]):
                self._replicaset_status(obj)
            for obj in self.items(BY_KIND["Deployment"]):
                self._deployment_status(obj)
            for obj in self.items(BY_KIND["StatefulSet"]):
                self._statefulset_status(obj)

    def _set_status(self, obj, status):
        if obj.get("status") != status:
            res = BY_KIND[obj["kind"]]
            new = copy.deepcopy(obj)
            new["status"] = status
            new["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[self._key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = new

    def _namespaces(self):
        for ns in self.items(BY_KIND["Namespace"]):
            name = ns["metadata"]["name"]
            if ns["metadata"].get("deletionTimestamp"):
                left = [k for k in self.objects if k[2] == name]
                for key in left:
                    obj = self.objects.get(key)
                    if obj and not obj["metadata"].get("deletionTimestamp"):
                        self.delete(BY_KIND[obj["kind"]], name, obj["metadata"]["name"])
                if not [k for k in self.objects if k[2] == name]:
                    del self.objects[("", "namespaces", "", name)]
            elif not ns.get("status"):
                self._set_status(ns, {"phase": "Active"})

    def _owned(self, kind, owner):
        res = BY_KIND[kind]
        uid = owner["metadata"]["uid"]
        return [o for o in self.items(res, owner["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    @staticmethod
    def _owner_ref(owner):
        return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]

    @staticmethod
    def pod_ready(pod):
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    def _deployment(self, dep):
        if dep["metadata"].get("deletionTimestamp"):
            return
        spec = dep.get("spec") or {}
        template = spec.get("template") or {}
        thash = _template_hash(template)
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        replicas = spec.get("replicas", 1)
        rses = self._owned("ReplicaSet", dep)
        current = next((rs for rs in rses if rs["metadata"].get("labels", {}).get("pod-template-hash") == thash), None)
        old = [rs for rs in rses if rs is not current]
        old_pods = [p for rs in old for p in self._owned("Pod", rs)]
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if current is None:
            labels = dict((template.get("metadata") or {}).get("labels") or {}, **{"pod-template-hash": thash})
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {})["labels"] = labels
            current = self.create(BY_KIND["ReplicaSet"], ns, {
                "metadata": {"name": f"{name}-{thash}", "namespace": ns, "labels": labels,
                             "ownerReferences": self._owner_ref(dep),
                             "annotations": {"deployment.kubernetes.io/revision": str(len(rses) + 1)}},
                "spec": {"replicas": 0, "selector": spec.get("selector") or {}, "template": tmpl},
            }, internal=True)
        if strategy == "Recreate":
            for rs in old:
                self._scale_rs(rs, 0)
            target = replicas if not old_pods else 0
        else:
            new_ready = sum(1 for p in self._owned("Pod", current) if self.pod_ready(p) and not p["metadata"].get("deletionTimestamp"))
            target = replicas if not old else min(replicas, new_ready + 1)
            keep_old = max(0, replicas - new_ready)
            for rs in old:
                rs_keep = min(rs["spec"].get("replicas", 0), keep_old)
                keep_old -= rs_keep
                self._scale_rs(rs, rs_keep)
        self._scale_rs(self.get(BY_KIND["ReplicaSet"], ns, current["metadata"]["name"]), target)
        for rs in old:
            rs = self.objects.get(self._key(BY_KIND["ReplicaSet"], ns, rs["metadata"]["name"]))
            if rs and rs["spec"].get("replicas", 0) == 0 and not self._owned("Pod", rs):
                del self.objects[self._key(BY_KIND["ReplicaSet"], ns, rs["metadata"]["name"])]

    def _scale_rs(self, rs, replicas):
        if rs["spec"].get("replicas") != replicas:
            new = copy.deepcopy(rs)
            new["spec"]["replicas"] = replicas
            self.write(BY_KIND["ReplicaSet"], rs["metadata"]["namespace"], rs["metadata"]["name"], new)

    def _pods_towards(self, owner, wanted_names, template):
        """Create missing pods (by name), delete surplus ones."""
        ns = owner["metadata"]["namespace"]
        pods = [p for p in self._owned("Pod", owner) if not p["metadata"].get("deletionTimestamp")]
        have = {p["metadata"]["name"] for p in pods}
        for pod in pods:
            if pod["metadata"]["name"] not in wanted_names:
                self.delete(BY_KIND["Pod"], ns, pod["metadata"]["name"])
        all_names = {p["metadata"]["name"] for p in self._owned("Pod", owner)}
        for name in wanted_names:
            if name not in have and name not in all_names:
                meta = copy.deepcopy(template.get("metadata") or {})
                meta.update(name=name, namespace=ns, ownerReferences=self._owner_ref(owner))
                self.create(BY_KIND["Pod"], ns, {"metadata": meta, "spec": copy.deepcopy(template.get("spec") or {}),
                                                 "status": {"phase": "Pending"}}, internal=True)

    def _replicaset(self, rs):
        replicas = rs["spec"].get("replicas", 1)
        live = sorted(p["metadata"]["name"] for p in self._owned("Pod", rs) if not p["metadata"].get("deletionTimestamp"))
        wanted = live[:replicas]
        while len(wanted) < replicas:
            wanted.append(f"{rs['metadata']['name']}-{next(self.suffix):05x}")
        self._pods_towards(rs, wanted, rs["spec"].get("template") or {})

    def _statefulset(self, sts):
        spec = sts.get("spec") or {}
        name = sts["metadata"]["name"]
        template = spec.get("template") or {}
        thash = _template_hash(template)
        for pod in self._owned("Pod", sts):
            if pod["metadata"].get("labels", {}).get("controller-revision-hash") != thash and not pod["metadata"].get("deletionTimestamp"):
                self.delete(BY_KIND["Pod"], sts["metadata"]["namespace"], pod["metadata"]["name"])
        tmpl = copy.deepcopy(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["controller-revision-hash"] = thash
        self._pods_towards(sts, [f"{name}-{i}" for i in range(spec.get("replicas", 1))], tmpl)

    def _workload_of(self, pod):
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref["kind"] == "ReplicaSet":
                rs = self.objects.get(("apps", "replicasets", pod["metadata"]["namespace"], ref["name"]))
                for ref2 in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
                    return ref2["name"]
            return ref["name"]
        return pod["metadata"]["name"]

    def allocated(self, node_name):
        """Extended resources held on a node by pods that still exist (Terminating included)."""
        total = {}
        for pod in self.items(BY_KIND["Pod"]):
            if (pod.get("spec") or {}).get("nodeName") == node_name and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                for name, qty in pod_extended_requests(pod).items():
                    total[name] = total.get(name, 0) + qty
        return total

    def _fits(self, pod, node):
        labels = node["metadata"].get("labels") or {}
        for key, value in ((pod.get("spec") or {}).get("nodeSelector") or {}).items():
            if labels.get(key) != str(value):
                return False
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions") or [])
        if not ready or (node.get("spec") or {}).get("unschedulable"):
            return False
        alloc = node.get("status", {}).get("allocatable") or {}
        used = self.allocated(node["metadata"]["name"])
        for name, qty in pod_extended_requests(pod).items():
            if _quantity(alloc.get(name, 0)) - used.get(name, 0) < qty:
                return False
        return True

    def _schedule_and_run(self):
        now = time.monotonic()
        nodes = self.items(BY_KIND["Node"])
        for pod in self.items(BY_KIND["Pod"]):
            meta, spec = pod["metadata"], pod.get("spec") or {}
            ns, uid = meta["namespace"], meta["uid"]
            times = self.pod_times.setdefault(uid, {})
            behaviour = self.behaviour_for(pod, self._workload_of(pod))
            if meta.get("deletionTimestamp"):
                grace = times.get("grace")
                if grace is None:
                    grace = self._setting(behaviour, "terminating_seconds")
                if now - times.get("deleted", now) >= grace:
                    del self.objects[self._key(BY_KIND["Pod"], ns, meta["name"])]
                    self.pod_times.pop(uid, None)
                continue
            status = copy.deepcopy(pod.get("status") or {"phase": "Pending"})
            if not spec.get("nodeName"):
                rc = spec.get("runtimeClassName")
                if rc and ("node.k8s.io", "runtimeclasses", "", rc) not in self.objects:
                    status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "RuntimeClassNotFound",
                                                                  "message": f'RuntimeClass "{rc}" not found'}]}
                    self._set_status(pod, status)
                    continue
                candidates = [n for n in nodes if (not spec.get("nodeName") or n["metadata"]["name"] == spec["nodeName"]) and self._fits(pod, n)]
                if not candidates:
                    wants = ", ".join(f"{q} {n}" for n, q in pod_extended_requests(pod).items()) or "nothing"
                    msg = f"0/{len(nodes)} nodes are available: insufficient resources (pod requests {wants})"
                    self._set_status(pod, {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]})
                    continue
                node = candidates[0]["metadata"]["name"]
                new = copy.deepcopy(pod)
                new["spec"]["nodeName"] = node
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[self._key(BY_KIND["Pod"], ns, meta["name"])] = new
                pod = new
                times["bound"] = now
            started = now - times.setdefault("bound", now) >= self._setting(behaviour, "start_seconds")
            ready = started and not (behaviour and behaviour.fail_readiness) and \
                now - times["bound"] >= self._setting(behaviour, "start_seconds") + self._setting(behaviour, "ready_seconds")
            containers = [c.get("name", "main") for c in (pod.get("spec") or {}).get("containers") or []]
            status = {
                "phase": "Running" if started else "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"},
                               {"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"name": c, "ready": ready, "started": started, "restartCount": 0,
                                       "state": {"running": {}} if started else {"waiting": {"reason": "ContainerCreating"}}}
                                      for c in containers],
            }
            self._set_status(pod, status)

    def _replicaset_status(self, rs):
        pods = [p for p in self._owned("Pod", rs) if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if self.pod_ready(p))
        self._set_status(rs, _omit_zero({"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                                         "observedGeneration": rs["metadata"].get("generation", 1)}))

    def _deployment_status(self, dep):
        spec = dep.get("spec") or {}
        replicas = spec.get("replicas", 1)
        thash = _template_hash(spec.get("template") or {})
        pods = [p for rs in self._owned("ReplicaSet", dep) for p in self._owned("Pod", rs)
                if not p["metadata"].get("deletionTimestamp")]
        updated = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == thash]
        ready = sum(1 for p in pods if self.pod_ready(p))
        available = ready >= replicas
        status = {"observedGeneration": dep["metadata"].get("generation", 1), "replicas": len(pods),
                  "updatedReplicas": len(updated), "readyReplicas": ready, "availableReplicas": ready,
                  "conditions": [{"type": "Available", "status": "True" if available else "False",
                                  "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable"}]}
        status["unavailableReplicas"] = max(0, len(pods) - ready)
        self._set_status(dep, _omit_zero(status))

    def _statefulset_status(self, sts):
        pods = [p for p in self._owned("Pod", sts) if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if self.pod_ready(p))
        self._set_status(sts, _omit_zero({"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(pods),
                                          "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": len(pods),
                                          "updatedReplicas": len(pods)}))


def _discovery_resources(group, version):
    out = []
    for res in RESOURCES:
        if res.group != group or res.version != version:
            continue
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        singular = res.kind.lower()
        entry = {"name": res.plural, "singularName": singular, "namespaced": res.namespaced, "kind": res.kind, "verbs": verbs}
        if res.short:
            entry["shortNames"] = list(res.short)
        out.append(entry)
        for sub in res.subresources:
            if sub == "scale":
                out.append({"name": f"{res.plural}/scale", "singularName": "", "namespaced": res.namespaced, "group": "autoscaling",
                            "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
            else:
                out.append({"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced, "kind": res.kind,
                            "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version, "resources": out}


def _api_groups():
    groups = {}
    for res in RESOURCES:
        if res.group:
            groups.setdefault(res.group, [])
            if res.version not in groups[res.group]:
                groups[res.group].append(res.version)
    out = []
    for name, versions in groups.items():
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        out.append({"name": name, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-emulator/1"

    def log_message(self, fmt, *args):  # quiet
        if os.environ.get("KUBE_EMULATOR_LOG"):
            super().log_message(fmt, *args)

    @property
    def state(self) -> ClusterState:
        return self.server.state

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        try:
            return yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"cannot decode body: {exc}") from exc

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/__emulator__/"):
                self._send(200, self._control(method, url.path[len("/__emulator__/"):]))
                return
            with self.state.lock:
                self.state.request_log.append((method, self.path))
            if self.headers.get("Authorization") != f"Bearer {self.state.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with self.state.lock:
                code, body = self._api(method, url.path.rstrip("/"), query)
            self._send(code, body)
        except ApiError as err:
            self._send(err.code, err.status())

    def _control(self, method, what):
        state = self.state
        with state.lock:
            if what == "behaviours" and method == "POST":
                state.behaviours.append(Behaviour(**(self._body() or {})))
                return {"behaviours": len(state.behaviours)}
            if what == "behaviours" and method == "DELETE":
                state.behaviours.clear()
                return {"behaviours": 0}
            if what == "settings" and method == "POST":
                state.settings.update(self._body() or {})
                return state.settings
            if what == "objects":
                return {"items": list(state.objects.values()), "resourceVersion": str(state.last_rv)}
            if what == "tick":
                state.tick()
                return {}
        raise ApiError(404, "NotFound", f"no control endpoint {method} {what}")

    def _api(self, method, path, query):
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0+emulator", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            return 200, _api_groups()
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[:1] == ["apis"] and len(parts) == 2:
            versions = sorted({r.version for r in RESOURCES if r.group == parts[1]})
            if not versions:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            vs = [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions]
            return 200, {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1], "versions": vs, "preferredVersion": vs[0]}
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            if not any(r.group == group and r.version == version for r in RESOURCES):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, _discovery_resources(group, version)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        res = BY_PATH.get((group, version, rest[0]))
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and sub not in res.subresources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({res.plural}/{sub})")
        if query.get("watch") in ("true", "1"):
            raise ApiError(400, "BadRequest", "watch is not supported by the emulator")
        dry_run = query.get("dryRun") == "All"
        state = self.state
        if method == "GET" and name is None:
            items = [o for o in state.items(res, namespace)
                     if match_labels(query.get("labelSelector"), o["metadata"].get("labels"))
                     and match_fields(query.get("fieldSelector"), o)]
            return 200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                         "metadata": {"resourceVersion": str(state.last_rv)}, "items": items}
        if method == "POST" and name is None:
            body = self._body() or {}
            self._check_kind(res, body)
            return 201, state.create(res, namespace, body, dry_run=dry_run)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection is not supported by the emulator")
        if sub == "scale":
            return self._scale(method, res, namespace, name, dry_run)
        if method == "GET":
            return 200, state.get(res, namespace, name)
        if method == "DELETE":
            body = self._body() or {}
            grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
            return 200, state.delete(res, namespace, name, grace=None if grace is None else int(grace), dry_run=dry_run)
        if method == "PUT":
            body = self._body() or {}
            self._check_kind(res, body)
            return 200, state.write(res, namespace, name, body, expected_rv=(body.get("metadata") or {}).get("resourceVersion"),
                                    subresource=sub, dry_run=dry_run)
        if method == "PATCH":
            return self._patch(res, namespace, name, sub, dry_run)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    @staticmethod
    def _check_kind(res, body):
        if body.get("kind") and body["kind"] != res.kind:
            raise ApiError(400, "BadRequest", f"the kind {body['kind']!r} does not match the resource {res.plural!r}")

    def _patch(self, res, namespace, name, sub, dry_run):
        state = self.state
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        body = self._body()
        if ctype == "application/apply-patch+yaml":
            if (state.objects.get(state._key(res, namespace, name))) is None:
                body = dict(body or {})
                body.setdefault("metadata", {})["name"] = name
                return 201, state.create(res, namespace, body, dry_run=dry_run)
            ctype = "application/merge-patch+json" if res.custom else "application/strategic-merge-patch+json"
        current = state.get(res, namespace, name)
        if ctype == "application/json-patch+json":
            new = json_patch(current, body or [])
        elif ctype == "application/merge-patch+json":
            new = merge_patch(current, body or {})
        elif ctype == "application/strategic-merge-patch+json":
            if res.custom:
                raise ApiError(415, "UnsupportedMediaType",
                               "strategic merge patch is not supported for custom resources; use a merge patch")
            new = strategic_merge_patch(current, body or {})
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")
        expected = ((body or {}).get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if sub == "status":
            new = dict(current, status=new.get("status"))
        return 200, state.write(res, namespace, name, new, expected_rv=expected, subresource=sub, dry_run=dry_run)

    def _scale(self, method, res, namespace, name, dry_run):
        state = self.state
        obj = state.get(res, namespace, name)
        if method in ("PATCH", "PUT"):
            body = self._body() or {}
            replicas = (body.get("spec") or {}).get("replicas")
            if replicas is not None:
                new = copy.deepcopy(obj)
                new.setdefault("spec", {})["replicas"] = int(replicas)
                obj = state.write(res, namespace, name, new, dry_run=dry_run)
        elif method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on scale")
        selector = ",".join(f"{k}={v}" for k, v in (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items())
        return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": name, "namespace": namespace, "uid": obj["metadata"]["uid"],
                                  "resourceVersion": obj["metadata"]["resourceVersion"]},
                     "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                     "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector}}


def gpu_node(name, gpus=1, resource=_DEFAULT_NODE_GPU, labels=None, ready=True):
    """A Node object advertising ``gpus`` of ``resource`` (0 or None: no GPU resource at all)."""
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    if gpus:
        capacity[resource] = str(gpus)
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if gpus:
        node_labels["nvidia.com/gpu.present"] = "true"
    node_labels.update(labels or {})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels},
            "spec": {},
            "status": {"capacity": capacity, "allocatable": dict(capacity),
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class KubeEmulator:
    """Run the emulator in a background thread: ``start()``, ``kubeconfig``, ``url``, ``stop()``."""

    def __init__(self, nodes=None, objects=None, token=None, workdir=None, tick_seconds=0.05, **settings):
        self.token = token or uuid.uuid4().hex
        self.state = ClusterState(self.token, **settings)
        self.workdir = workdir
        self.tick_seconds = tick_seconds
        self._seed = list(nodes if nodes is not None else [gpu_node("gpu-node-1")]) + list(objects or [])
        self._server = None
        self._threads = []
        self._stop = threading.Event()
        self.url = None
        self.kubeconfig = None

    def start(self, port=0):
        with self.state.lock:
            for name in ("default", "kube-system", "kube-public"):
                self.load({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})
            for obj in self._seed:
                self.load(obj)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        for target in (self._server.serve_forever, self._loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.kubeconfig = self.write_kubeconfig()
        return self

    def _loop(self):
        while not self._stop.wait(self.tick_seconds):
            self.state.tick()

    def stop(self):
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def write_kubeconfig(self, path=None, token=None, context="emulator"):
        """Write a kubeconfig for this server (``token`` overrides, e.g. a wrong one for 401 tests)."""
        if path is None:
            directory = self.workdir or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kube-emulator-{os.getpid()}-{id(self)}")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, "kubeconfig")
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "emulator", "user": "emulator"}}],
        }
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        return path

    # ---- direct access for tests (no HTTP) ----------------------------------------
    def load(self, obj):
        """Create an object as-is (status included), bypassing admission: for seeding."""
        res = BY_KIND[obj["kind"]]
        with self.state.lock:
            return self.state.create(res, (obj.get("metadata") or {}).get("namespace"), obj, internal=True)

    def update(self, obj):
        """Replace an object's content as a PUT would (generation bumps on spec changes)."""
        meta = obj.get("metadata") or {}
        with self.state.lock:
            return self.state.write(BY_KIND[obj["kind"]], meta.get("namespace"), meta["name"], obj)

    def delete(self, kind, name, namespace=None):
        """Delete as the API would (Pods go Terminating, owners cascade)."""
        with self.state.lock:
            return self.state.delete(BY_KIND[kind], namespace, name)

    def get(self, kind, name, namespace=None):
        with self.state.lock:
            try:
                return copy.deepcopy(self.state.get(BY_KIND[kind], namespace, name))
            except ApiError:
                return None

    def list(self, kind, namespace=None):
        with self.state.lock:
            return copy.deepcopy(self.state.items(BY_KIND[kind], namespace))

    def snapshot(self):
        """Every object with its resourceVersion, for 'nothing changed' assertions."""
        with self.state.lock:
            return {key: obj["metadata"]["resourceVersion"] for key, obj in self.state.objects.items()}

    def set_behaviour(self, **kwargs):
        with self.state.lock:
            self.state.behaviours.append(Behaviour(**kwargs))

    def settings(self, **kwargs):
        with self.state.lock:
            self.state.settings.update(kwargs)

    def wait_for(self, predicate, timeout=10.0, interval=0.05):
        """Wait until ``predicate(self)`` is truthy; raise TimeoutError with its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s (last value: {value!r})")
            time.sleep(interval)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the Kubernetes API emulator in the foreground.")
    parser.add_argument("--dir", required=True, help="directory for kubeconfig and url files")
    parser.add_argument("--seed", help="YAML file with a list of objects to load (replaces the default GPU node)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--terminating-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    objects = None
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            objects = [o for o in yaml.safe_load_all(handle) if o]
        if len(objects) == 1 and isinstance(objects[0], list):
            objects = objects[0]
    os.makedirs(args.dir, exist_ok=True)
    emu = KubeEmulator(nodes=objects, workdir=args.dir, terminating_seconds=args.terminating_seconds)
    emu.start(args.port)
    with open(os.path.join(args.dir, "k8s.url"), "w", encoding="utf-8") as handle:
        handle.write(emu.url)
    run_in_foreground(emu, f"kubernetes API emulator on {emu.url}, kubeconfig {emu.kubeconfig}")


if __name__ == "__main__":
    main()
