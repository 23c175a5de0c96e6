"""One test's view of the shared real control plane: its own namespace and small helpers.

The ``kube`` pytest fixture (tests/conftest.py) yields a ``KubeNamespace``; it talks to the real
kube-apiserver through the kubernetes DynamicClient, nothing here changes how the cluster behaves.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import time
import uuid

import yaml

# Written by controllers, kwok or the apiserver itself, not by the code under test.
_NOT_SNAPSHOT = {("v1", "Event"), ("events.k8s.io/v1", "Event"), ("v1", "Endpoints"),
                 ("discovery.k8s.io/v1", "EndpointSlice"), ("coordination.k8s.io/v1", "Lease"),
                 ("v1", "Pod"), ("apps/v1", "ReplicaSet"), ("apps/v1", "ControllerRevision"),
                 ("v1", "ServiceAccount"), ("v1", "ConfigMap:kube-root-ca.crt")}


def fingerprint(obj):
    """Hash of what a client writes: the object without status, resourceVersion and status-subresource fields."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    meta = obj.get("metadata") or {}
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [f for f in meta.get("managedFields") or [] if f.get("subresource") != "status"]
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class KubeNamespace:
    """``kubeconfig``, ``namespace`` and get/list/apply/delete/wait_for helpers (dicts in, dicts out)."""

    def __init__(self, control_plane, namespace):
        self.cp = control_plane
        self.kubeconfig = control_plane.kubeconfig
        self.namespace = namespace
        self.client = control_plane.client()
        self._nodes = []
        self.other_namespaces = []  # made by the code under test: deleted at teardown too

    # -- objects --
    def _res(self, kind, api_version):
        return self.client.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj):
        """Server-side apply (into this namespace unless the object names one or is cluster-scoped)."""
        obj = copy.deepcopy(obj)
        res = self._res(obj["kind"], obj["apiVersion"])
        if res.namespaced:
            obj.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        return self.cp.apply(obj)

    def get(self, kind, name, api_version="v1", namespace=None):
        """The object as a dict, or None when it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError  # pylint: disable=import-outside-toplevel
        res = self._res(kind, api_version)
        try:
            return res.get(name=name, namespace=(namespace or self.namespace) if res.namespaced else None).to_dict()
        except NotFoundError:
            return None

    def list(self, kind, api_version="v1", namespace=None, label_selector=None):
        res = self._res(kind, api_version)
        kwargs = {"namespace": namespace or self.namespace} if res.namespaced else {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        return [item.to_dict() for item in res.get(**kwargs).items]

    def delete(self, kind, name, api_version="v1", namespace=None, grace_period_seconds=None):
        res = self._res(kind, api_version)
        body = {"propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        return res.delete(name=name, namespace=(namespace or self.namespace) if res.namespaced else None, body=body)

    def pods(self, label_selector=None, running=False):
        """Pods of this namespace; ``running``: only Running ones not being deleted."""
        pods = self.list("Pod", label_selector=label_selector)
        if running:
            pods = [p for p in pods if p["status"].get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")]
        return pods

    def add_node(self, node):
        """Create a (kwok) Node for this test; removed again at teardown. Waits until it is Ready."""
        from tests.support.controlplane import KWOK_ANNOTATION  # pylint: disable=import-outside-toplevel
        node = copy.deepcopy(node)
        node["metadata"].setdefault("annotations", {})[KWOK_ANNOTATION] = "fake"
        self.cp.apply(node)
        self._nodes.append(node["metadata"]["name"])
        return self.wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                                         ((self.get("Node", node["metadata"]["name"]) or {}).get("status") or {})
                                         .get("conditions") or []), timeout=60)

    def secrets(self, namespace=None):
        """name -> decoded data of every Secret in the namespace."""
        return {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
                for s in self.list("Secret", namespace=namespace)}

    def snapshot(self, namespaces=None):
        """(apiVersion, kind, name, fingerprint) of every object in the namespaces (and the namespaces
        themselves) that the code under test could have written; two equal snapshots mean no write.

        The fingerprint is a hash of the object without ``status``, ``resourceVersion`` and the
        managedFields of the status subresource: controllers keep writing status (a Deployment's
        conditions settle seconds after its pod is Ready), the code under test never does, so a
        status update must not read as "the code wrote"; any write to metadata or spec still does.
        """
        namespaces = namespaces or [self.namespace]
        seen = []
        for ns in namespaces:
            obj = self.get("Namespace", ns)
            seen.append(("v1", "Namespace", ns, obj and fingerprint(obj)))
        for res in self.client.resources.search():
            if (not res.namespaced or res.kind.endswith("List") or "list" not in (res.verbs or []) or "/" in res.name
                    or (res.group_version, res.kind) in _NOT_SNAPSHOT):
                continue
            for ns in namespaces:
                for item in res.get(namespace=ns).items:
                    if (res.group_version, f"{res.kind}:{item.metadata.name}") in _NOT_SNAPSHOT:
                        continue
                    seen.append((res.group_version, res.kind, f"{ns}/{item.metadata.name}",
                                 fingerprint(item.to_dict())))
        return sorted(seen, key=lambda t: tuple(str(x) for x in t))

    def write_kubeconfig(self, path, token):
        """A kubeconfig for this cluster that authenticates with ``token`` (e.g. a wrong one: 401)."""
        with open(self.kubeconfig, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        config["users"][0]["user"] = {"token": token}
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        return path

    @staticmethod
    def wait_for(predicate, timeout=60.0, interval=0.1, what=None):
        """Poll ``predicate()`` until it returns something truthy; return that, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            time.sleep(interval)

    # -- lifecycle (used by the fixture) --
    @classmethod
    def create(cls, control_plane, prefix="t"):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        control_plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        ns = cls(control_plane, name)
        # Pods need the namespace's default ServiceAccount (made by the controller-manager).
        ns.wait_for(lambda: ns.get("ServiceAccount", "default"), timeout=30, what=f"ServiceAccount {name}/default")
        return ns

    def cleanup(self):
        """Delete the namespace(s) and this test's nodes; force-delete pods so the next test's GPU is free."""
        from kubernetes.dynamic.exceptions import NotFoundError  # pylint: disable=import-outside-toplevel
        for ns in [self.namespace, *self.other_namespaces]:
            try:
                self.delete("Namespace", ns)
            except NotFoundError:
                continue
            for pod in self.list("Pod", namespace=ns):
                try:
                    self.delete("Pod", pod["metadata"]["name"], namespace=ns, grace_period_seconds=0)
                except NotFoundError:
                    pass
        for node in self._nodes:
            try:
                self.delete("Node", node)
            except NotFoundError:
                pass
