# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy's one apply: a set of objects validated, applied server-side and pruned as one ApplySet.

Imports nothing from Ansible (the action plugin ``lab_apply`` is a thin layer on top); it speaks to the
API server through ``kube_client`` (one client, its transient-error retries, in-cluster auth too).

The protocol, in order (docs/deploy.md, "One apply"):

1. **Phases.** Namespaces first; then every object whose API is served; then the objects of a custom
   resource whose CRD is not served yet (a HelmChart's chart installs it: the ServiceMonitors), once its
   API appears (waited for up to ``crd_timeout``; in check mode they are reported, not sent).
2. **Validate a phase, then write it.** Every object of the phase is sent as a server-side apply with
   ``dryRun=All`` and ``fieldValidation=Strict`` (the API server's own schemas and admission); if any is
   refused, nothing of the phase is written and every refusal is reported with the object's name.
3. **Write only what changes.** The dry-run answer is compared with the live object; an object whose
   answer equals it is not sent again (a re-run writes nothing and reports changed=0).
4. **Field ownership.** One field manager (``ailab.gpu_lab``) for everything deploy declares. Fields
   another owner holds (the swap: the GPU backends' replicas, vLLM's model, args and node pin) are cut
   out of that apply and applied under the owner's own manager (``owned_fields``), so the deploy
   manager never holds them and a GitOps tool can ignore exactly that manager's fields.
5. **ApplySet (KEP-3659).** A parent ConfigMap carries ``applyset.kubernetes.io/id``, ``tooling``,
   ``contains-group-kinds`` and ``additional-namespaces``; every member carries the label
   ``applyset.kubernetes.io/part-of``. Before the members are written the parent lists the union of
   the old and new kinds and namespaces (a run cut off half-way still finds everything); after a full
   run the members no longer declared are deleted (never Namespaces, PVCs or PVs) and the parent
   lists exactly the current set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import hashlib
import json
import time

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote  # type: ignore

from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client

FIELD_MANAGER = "ailab.gpu_lab"
TOOLING = "ailab.gpu_lab"
PART_OF = "applyset.kubernetes.io/part-of"
ID_LABEL = "applyset.kubernetes.io/id"
TOOLING_ANN = "applyset.kubernetes.io/tooling"
GROUP_KINDS_ANN = "applyset.kubernetes.io/contains-group-kinds"
NAMESPACES_ANN = "applyset.kubernetes.io/additional-namespaces"
# Kinds never pruned: data lives in them (docs/deploy.md).
NEVER_PRUNED = frozenset(["Namespace", "PersistentVolumeClaim", "PersistentVolume"])
# Metadata the API server sets: left out of comparisons and diffs.
_SERVER_META = ("resourceVersion", "managedFields", "generation", "creationTimestamp", "uid", "selfLink")
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# An apply's 500 is how the API server refuses a body it cannot type against the schema ("failed to create typed
# patch object ... field not declared in schema"): not worth waiting out, unlike the other transient statuses.
APPLY_TRANSIENT = tuple(s for s in kube_client.TRANSIENT if s != 500)


class ApplyError(Exception):
    """A refusal worded for the operator: which objects, what the API server said, nothing written (or what was)."""


# ------------------------------------------------------------------ identities
def applyset_id(name, namespace, kind="ConfigMap", group=""):
    """KEP-3659's id of a parent: ``applyset-<base64url(sha256(name.namespace.kind.group))>-v1``."""
    raw = ".".join([name, namespace, kind, group]).encode("utf-8")
    return "applyset-%s-v1" % base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def split_api_version(api_version):
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``""``, ``v1``)."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def group_kind(obj):
    """``Deployment.apps`` / ``Service`` (KEP-3659's spelling in contains-group-kinds)."""
    group = split_api_version(obj["apiVersion"])[0]
    return obj["kind"] + ("." + group if group else "")


def ref(obj):
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped): how an object is named in messages."""
    meta = obj.get("metadata") or {}
    where = (meta.get("namespace") + "/") if meta.get("namespace") else ""
    return "%s %s%s" % (obj.get("kind"), where, meta.get("name"))


def key(obj):
    meta = obj.get("metadata") or {}
    return (split_api_version(obj["apiVersion"])[0], obj["kind"], meta.get("namespace") or "", meta.get("name"))


# ------------------------------------------------------------------ fields of other owners
def _walk(node, path):
    """The parent container and last key of ``path`` in ``node`` (a list step is a container name), or (None, None)."""
    for step in path[:-1]:
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list):
            node = next((item for item in node if isinstance(item, dict) and item.get("name") == step), None)
        else:
            return None, None
        if node is None:
            return None, None
    return node, path[-1]


def take_fields(obj, paths):
    """Split ``obj`` into (the object without ``paths``, a minimal apply body holding only ``paths``).

    A path is a list of keys; inside a list of named items (containers) the step is the item's name.
    The second body is ``None`` when ``obj`` holds none of the paths.
    """
    rest = copy.deepcopy(obj)
    owned = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": obj["metadata"]["name"]}}
    if obj["metadata"].get("namespace"):
        owned["metadata"]["namespace"] = obj["metadata"]["namespace"]
    found = False
    for path in paths:
        parent, last = _walk(rest, path)
        if not isinstance(parent, dict) or last not in parent:
            continue
        value = parent.pop(last)
        found = True
        source, node = obj, owned
        for step in path[:-1]:
            if isinstance(source, list):
                source = next(item for item in source if isinstance(item, dict) and item.get("name") == step)
                item = next((it for it in node if it.get("name") == step), None)
                if item is None:
                    item = {"name": step}
                    node.append(item)
                node = item
            else:
                source = source[step]
                node = node.setdefault(step, [] if isinstance(source, list) else {})
        node[last] = copy.deepcopy(value)
    return rest, (owned if found else None)


# ------------------------------------------------------------------ normalising for comparison and diffs
def _clean(obj):
    """The object without what the API server sets (status, resourceVersion, managedFields, ...)."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for field in _SERVER_META:
        meta.pop(field, None)
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if "annotations" in meta and not annotations:
        meta.pop("annotations")
    return out


def same(live, answer):
    return _clean(live) == _clean(answer)


def _yaml(obj):
    try:
        import yaml  # pylint: disable=import-outside-toplevel
        return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True)
    except ImportError:  # pragma: no cover
        return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def diff_entry(obj, before, after):
    """One entry of Ansible's ``diff`` list: the object before and after, without server-set fields."""
    name = ref(obj)
    return {"before_header": name, "after_header": name,
            "before": _yaml(_clean(before)) if before is not None else "",
            "after": _yaml(_clean(after)) if after is not None else ""}


# ------------------------------------------------------------------ the API
class Api(object):
    """Discovery and object paths over one ``kube_client.Client`` (raw paths, no route table)."""

    def __init__(self, client):
        self.client = client
        self._resources = {}

    def resources(self, api_version):
        """``{kind: (plural, namespaced)}`` of a group/version, or ``None`` when it is not served (yet)."""
        if api_version not in self._resources:
            group, version = split_api_version(api_version)
            path = "/api/%s" % version if not group else "/apis/%s/%s" % (group, version)
            answer = self.client.request("GET", path, "discover the API %s" % api_version, missing_ok=True)
            if answer is None:
                return None
            self._resources[api_version] = dict(
                (r["kind"], (r["name"], bool(r.get("namespaced"))))
                for r in answer.get("resources", []) if "/" not in r["name"])
        return self._resources[api_version]

    def forget(self, api_version):
        self._resources.pop(api_version, None)

    def path(self, obj_or_gvk, namespace=None, name=None):
        if isinstance(obj_or_gvk, dict):
            api_version, kind = obj_or_gvk["apiVersion"], obj_or_gvk["kind"]
            meta = obj_or_gvk.get("metadata") or {}
            namespace, name = meta.get("namespace"), meta.get("name")
        else:
            api_version, kind = obj_or_gvk
        served = self.resources(api_version)
        if served is None or kind not in served:
            raise ApplyError("%s %s is not served by the API server (is its CRD installed?)" % (api_version, kind))
        plural, namespaced = served[kind]
        group, version = split_api_version(api_version)
        base = "/api/%s" % version if not group else "/apis/%s/%s" % (group, version)
        if namespaced:
            if not namespace:
                raise ApplyError("%s %s is namespaced: set metadata.namespace" % (kind, name))
            base += "/namespaces/%s" % quote(namespace, safe="")
        base += "/" + plural
        return base + ("/" + quote(name, safe="") if name else "")

    def get(self, obj):
        return self.client.request("GET", self.path(obj), "read %s" % ref(obj), missing_ok=True)

    def apply(self, obj, manager, dry_run=False):
        query = [("fieldManager", manager), ("force", "true"), ("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self.client.request("PATCH", self.path(obj), "%s %s" % ("dry-run apply" if dry_run else "apply", ref(obj)),
                                   query=query, body=obj, content_type=APPLY_CONTENT_TYPE, transient=APPLY_TRANSIENT)

    def delete(self, obj):
        return self.client.request("DELETE", self.path(obj), "delete %s" % ref(obj), missing_ok=True,
                                   body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})

    def list(self, api_version, kind, namespace, label_selector):
        path = self.path((api_version, kind), namespace=namespace)
        answer = self.client.request("GET", path, "list %s" % kind, query=[("labelSelector", label_selector)],
                                     missing_ok=True)
        return (answer or {}).get("items", [])

    def preferred_version(self, group):
        """The preferred version of an API group (``v1`` for the core group), or ``None`` when not served."""
        if not group:
            return "v1"
        answer = self.client.request("GET", "/apis/%s" % group, "discover the API group %s" % group, missing_ok=True)
        if not answer:
            return None
        return (answer.get("preferredVersion") or {}).get("groupVersion")


# ------------------------------------------------------------------ the plan
def check_objects(objects, origins=None):
    """Problems of the declared objects themselves (before any request), each naming the object and, with
    ``origins`` (one label per object, e.g. ``qdrant/qdrant.yaml``), where it was declared."""
    problems, seen = [], {}
    for index, obj in enumerate(objects):
        where = origins[index] if origins else "object %d" % index
        if not isinstance(obj, dict):
            problems.append("%s: not a mapping (%r)" % (where, obj))
            continue
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if not obj.get("apiVersion") or not obj.get("kind") or not meta.get("name"):
            problems.append("%s: apiVersion, kind and metadata.name are required (got %s)" % (
                where, json.dumps({k: obj.get(k) for k in ("apiVersion", "kind")})))
            continue
        k = key(obj)
        if k in seen:
            problems.append("%s is declared twice (%s and %s): keep one" % (
                ref(obj), origins[seen[k]] if origins else "object %d" % seen[k], where))
        seen[k] = index
    return problems


def phases(objects, api):
    """``(namespaces, served, later)``: the Namespaces, the objects whose API is served, those waiting for a CRD."""
    first, served, later = [], [], []
    for obj in objects:
        if obj["kind"] == "Namespace" and obj["apiVersion"] == "v1":
            first.append(obj)
            continue
        resources = api.resources(obj["apiVersion"])
        (served if resources is not None and obj["kind"] in resources else later).append(obj)
    return first, served, later


def label_members(objects, set_id):
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("labels", {})
        obj["metadata"]["labels"] = dict(obj["metadata"]["labels"] or {}, **{PART_OF: set_id})
        out.append(obj)
    return out


def parent_object(name, namespace, set_id, group_kinds, namespaces, version=""):
    """The ApplySet's parent ConfigMap (KEP-3659): its id label and the annotations naming what it contains."""
    extra = sorted(n for n in namespaces if n and n != namespace)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {ID_LABEL: set_id, "app.kubernetes.io/managed-by": TOOLING},
                         "annotations": {TOOLING_ANN: "%s/%s" % (TOOLING, version or "v0.0.0"),
                                         GROUP_KINDS_ANN: ",".join(sorted(set(group_kinds))),
                                         NAMESPACES_ANN: ",".join(extra)}}}


def parent_contents(parent):
    """(group kinds, namespaces) a live parent lists (empty sets when there is none)."""
    if not parent:
        return set(), set()
    ann = (parent.get("metadata") or {}).get("annotations") or {}
    kinds = set(x for x in (ann.get(GROUP_KINDS_ANN) or "").split(",") if x)
    namespaces = set(x for x in (ann.get(NAMESPACES_ANN) or "").split(",") if x)
    namespaces.add(parent["metadata"]["namespace"])
    return kinds, namespaces


class Applier(object):
    """One run of the apply protocol (module docstring) over an ``Api``; ``check``: dry-run only."""

    def __init__(self, api, check=False, manager=FIELD_MANAGER, owned_fields=None, crd_timeout=300,
                 clock=time.monotonic, sleep=time.sleep):
        self.api = api
        self.check = check
        self.manager = manager
        self.owned = owned_fields or []
        self.crd_timeout = crd_timeout
        self.clock = clock
        self.sleep = sleep
        self.results = []       # {object, action: created|configured|unchanged|deleted|skipped, manager}
        self.diff = []
        self.notes = []
        self.created_namespaces = set()

    # -- one object's bodies: the deploy manager's, and one per other owner
    def bodies(self, obj):
        out, rest = [], obj
        for spec in self.owned:
            if (spec.get("kind") == obj["kind"] and spec.get("name") == obj["metadata"]["name"]
                    and (spec.get("namespace") or "") == (obj["metadata"].get("namespace") or "")):
                rest, owned = take_fields(rest, spec["paths"])
                if owned is not None:
                    out.append((spec["manager"], owned))
        return [(self.manager, rest)] + out

    def _plan_phase(self, objects):
        """Dry-run every body of every object; raise ApplyError with every refusal, else the plan.

        A new object is created whole by the deploy manager, then each other owner applies its fields and the
        deploy manager applies once more without them (it gives them up; their values stay, the other owner
        holds them). An existing object gets the other owners' bodies first, then the deploy manager's: the
        deploy manager never drops a field before its new owner holds it.
        """
        plan, refused = [], []
        for obj in objects:
            bodies = self.bodies(obj)
            main, others = bodies[0], bodies[1:]
            fresh = self._in_new_namespace(obj)   # its namespace is only planned (check mode): nothing to ask
            live = None if fresh else self.api.get(obj)
            if live is None:
                steps = [(self.manager, obj)] + (others + [main] if others else [])
                sends = [(self.manager, obj)]
            else:
                steps = others + [main]
                sends = steps
            answers = []
            try:
                for manager, body in sends:
                    answers.append(copy.deepcopy(body) if fresh else self.api.apply(body, manager, dry_run=True))
            except kube_client.KubeError as exc:
                refused.append("%s: %s" % (ref(obj), exc))
                continue
            changed = live is None or any(not same(live, answer) for answer in answers)
            after = next((a for a in answers if live is None or not same(live, a)), answers[-1])
            plan.append((obj, live, after, steps, changed))
        if refused:
            raise ApplyError("the API server refused %d of %d objects, so none of this phase was written:\n  - %s" % (
                len(refused), len(objects), "\n  - ".join(refused)))
        return plan

    def _in_new_namespace(self, obj):
        return self.check and (obj["metadata"].get("namespace") or "") in self.created_namespaces

    def _write_phase(self, plan):
        for obj, live, after, steps, changed in plan:
            if not changed:
                self.results.append({"object": ref(obj), "action": "unchanged"})
                continue
            if not self.check:
                for manager, body in steps:
                    after = self.api.apply(body, manager)
            if live is None and obj["kind"] == "Namespace":
                self.created_namespaces.add(obj["metadata"]["name"])
            self.results.append({"object": ref(obj), "action": "created" if live is None else "configured"})
            self.diff.append(diff_entry(obj, live, after))

    def apply_phase(self, objects):
        if objects:
            self._write_phase(self._plan_phase(objects))

    def wait_served(self, objects):
        """Wait until the API of each object is served (a chart installs its CRDs); return those still not served."""
        versions = sorted(set(o["apiVersion"] for o in objects))
        deadline = self.clock() + (0 if self.check else self.crd_timeout)
        while True:
            missing = []
            for version in versions:
                self.api.forget(version)
                served = self.api.resources(version)
                kinds = set(o["kind"] for o in objects if o["apiVersion"] == version)
                if served is None or not kinds <= set(served):
                    missing.append(version)
            if not missing or self.clock() >= deadline:
                return [o for o in objects if o["apiVersion"] in missing]
            self.sleep(2)

    # -- the whole run
    def run(self, objects, applyset=None, prune=False):
        """Apply ``objects`` (labelled as members of ``applyset`` = {name, namespace, version} when given).

        ``objects`` are checked by the caller with ``check_objects`` first (the action does, naming where each was
        declared), before any request.
        """
        set_id = None
        if applyset:
            set_id = applyset_id(applyset["name"], applyset["namespace"])
            objects = label_members(objects, set_id)
        namespaces, served, later = phases(objects, self.api)
        self.apply_phase(namespaces)
        parent = None
        if applyset:
            parent = self._update_parent(applyset, set_id, objects, union=True, live=self.api.get(
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": applyset["name"], "namespace": applyset["namespace"]}}))
        self.apply_phase(served)
        if later:
            missing = self.wait_served(later)
            if missing and not self.check:
                raise ApplyError(
                    "%s: the API %s is still not served %d s after the rest was applied (its CRD comes from a chart: "
                    "check the chart's install job, e.g. `kubectl -n kube-system get jobs`; raise crd_timeout on a slow "
                    "first install). Everything else was applied." % (
                        ", ".join(ref(o) for o in missing), ", ".join(sorted(set(o["apiVersion"] for o in missing))),
                        self.crd_timeout))
            for obj in missing:
                self.results.append({"object": ref(obj), "action": "skipped"})
                self.notes.append("check mode: %s is not dry-run: its API (%s) is not served until its chart installs "
                                  "the CRD; a real run applies it then." % (ref(obj), obj["apiVersion"]))
            self.apply_phase([o for o in later if o not in missing])
        if applyset and prune:
            self._prune(set_id, parent, objects)
            self._update_parent(applyset, set_id, objects, union=False, live=parent)
        return set_id

    def _update_parent(self, applyset, set_id, objects, union, live):
        """Bring the parent (``live``: as last read or written, or None) to list the kinds and namespaces of
        ``objects`` (with ``union``: also those it lists already); return it as it now stands."""
        kinds = set(group_kind(o) for o in objects)
        namespaces = set(o["metadata"].get("namespace") or "" for o in objects) - {""}
        if union:
            old_kinds, old_namespaces = parent_contents(live)
            kinds |= old_kinds
            namespaces |= old_namespaces
        parent = parent_object(applyset["name"], applyset["namespace"], set_id, kinds, namespaces,
                               applyset.get("version", ""))
        if self.check or (live is not None and all(
                (live["metadata"].get(field) or {}).get(k) == v
                for field in ("labels", "annotations") for k, v in parent["metadata"][field].items())):
            return live
        return self.api.apply(parent, self.manager)

    def _prune(self, set_id, parent, objects):
        """Delete the members the live set holds that ``objects`` no longer declares (never data-holding kinds)."""
        kinds, namespaces = parent_contents(parent)
        kinds |= set(group_kind(o) for o in objects)
        namespaces |= set(o["metadata"].get("namespace") or "" for o in objects) - {""}
        declared = set(key(o) for o in objects)
        for group_kind_name in sorted(kinds):
            kind, group = group_kind_name.partition(".")[::2]
            if kind in NEVER_PRUNED:
                continue
            api_version = self.api.preferred_version(group)
            if api_version is None:
                continue  # the API is gone (its CRD was removed): so are its objects
            resources = self.api.resources(api_version)
            if resources is None or kind not in resources:
                continue
            scopes = sorted(namespaces) if resources[kind][1] else [None]
            for namespace in scopes:
                for live in self.api.list(api_version, kind, namespace, "%s=%s" % (PART_OF, set_id)):
                    live.setdefault("apiVersion", api_version)
                    live.setdefault("kind", kind)
                    if key(live) in declared:
                        continue
                    if not self.check:
                        self.api.delete(live)
                    self.results.append({"object": ref(live), "action": "deleted"})
                    self.diff.append(diff_entry(live, live, None))

    def delete(self, objects):
        """Remove ``objects`` (``state: absent``), never the data-holding kinds; missing ones are left alone."""
        for obj in objects:
            if obj["kind"] in NEVER_PRUNED:
                self.results.append({"object": ref(obj), "action": "kept"})
                continue
            served = self.api.resources(obj["apiVersion"])
            if served is None or obj["kind"] not in served:
                continue  # its CRD is gone: so is the object
            live = self.api.get(obj)
            if live is None:
                continue
            if not self.check:
                self.api.delete(obj)
            self.results.append({"object": ref(obj), "action": "deleted"})
            self.diff.append(diff_entry(obj, live, None))

    @property
    def changed(self):
        return any(r["action"] in ("created", "configured", "deleted") for r in self.results)


# ------------------------------------------------------------------ waiting for workloads
def workload_ready(obj):
    """(ready, why not) of a Deployment / StatefulSet / DaemonSet as the API reports it."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    meta = obj.get("metadata") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "its controller has not seen the latest change yet"
    if obj["kind"] == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        ready, updated = status.get("numberReady", 0), status.get("updatedNumberScheduled", 0)
    else:
        want = spec.get("replicas", 1)
        ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if ready >= want and updated >= want:
        return True, ""
    return False, "%d of %d pods ready (%d updated)" % (ready, want, updated)


def pods_waiting(api, obj):
    """Why the workload's pods are not ready, from their container states (``ErrImagePull: <message>``)."""
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector:
        return []
    pods = api.list("v1", "Pod", obj["metadata"]["namespace"], ",".join("%s=%s" % kv for kv in sorted(selector.items())))
    out = []
    for pod in pods:
        statuses = ((pod.get("status") or {}).get("containerStatuses") or []) + \
            ((pod.get("status") or {}).get("initContainerStatuses") or [])
        node = (pod.get("spec") or {}).get("nodeName") or "(not scheduled)"
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                out.append("pod %s on %s, container %s: %s%s" % (
                    pod["metadata"]["name"], node, cs.get("name"), waiting["reason"],
                    (": " + waiting["message"]) if waiting.get("message") else ""))
    return out


def wait_ready(api, refs, timeout, clock=time.monotonic, sleep=time.sleep):
    """Wait until every workload of ``refs`` ({apiVersion, kind, namespace, name[, timeout]}) is ready.

    Each waits up to its own ``timeout`` (else ``timeout``); the first one past it raises, naming every workload
    not ready yet and why its pods wait.
    """
    start = clock()
    pending = list(refs)
    while True:
        still = []
        for r in pending:
            obj = api.get({"apiVersion": r["apiVersion"], "kind": r["kind"],
                           "metadata": {"namespace": r["namespace"], "name": r["name"]}})
            ok, why = workload_ready(obj) if obj else (False, "it does not exist")
            if not ok:
                still.append((r, obj, why))
        if not still:
            return
        late = [entry[0] for entry in still if clock() - start >= int(entry[0].get("timeout") or timeout)]
        if late:
            lines = []
            for r, obj, why in still:
                lines.append("%s %s/%s: %s" % (r["kind"], r["namespace"], r["name"], why))
                lines += ["  " + line for line in (pods_waiting(api, obj) if obj else [])]
            names = ", ".join("%s %s/%s" % (r["kind"], r["namespace"], r["name"]) for r in late)
            raise ApplyError("%s not ready within %d s (everything was applied; a slow pull finishes on its own, re-run "
                             "deploy):\n  - %s" % (names, int(late[0].get("timeout") or timeout), "\n  - ".join(lines)))
        pending = [entry[0] for entry in still]
        sleep(2)
