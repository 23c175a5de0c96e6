# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of the ``lab_secrets`` module: .env + inventory -> Kubernetes Secrets, values never shown.

Order of work, so that a bad input never touches the cluster:

1. parse and validate the ``.env`` file against the layout (module_utils/dotenv_secrets.py);
   any problem -> fail with the full list, before any API call;
2. read every managed Secret (and the namespace); any API error -> fail, nothing written;
3. plan: per key, the value from ``.env``, else the existing one (kept), else a new random
   one (generated once); keys no longer wanted are reported as stale, removed only with
   ``prune``;
4. write only what differs (create, or a strategic merge patch carrying the
   resourceVersion that was read, so a concurrent writer makes us fail, not clobber).

Every value read or generated is registered with ``module.no_log_values``; results and
diffs carry key names and markers such as ``<redacted>`` only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc

MANAGED_BY = "ailab.gpu_lab"
PART_OF = "gpu-lab"
REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted, changed>"
REDACTED_NEW = "<redacted, new>"
TO_GENERATE = "<generated>"
# The requests the module makes (kube_client route name -> verb, raw path).
ROUTES = {
    "read_namespace": ("GET", "/api/v1/namespaces/{name}"),
    "create_namespace": ("POST", "/api/v1/namespaces"),
    "read_namespaced_secret": ("GET", "/api/v1/namespaces/{namespace}/secrets/{name}"),
    "create_namespaced_secret": ("POST", "/api/v1/namespaces/{namespace}/secrets"),
    "patch_namespaced_secret": ("PATCH", "/api/v1/namespaces/{namespace}/secrets/{name}"),
}


def desired_labels(spec):
    return {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": spec.component.replace("_", "-")}


def _b64(value):
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def decode_data(data):
    """Secret ``data`` (base64) -> key -> text (undecodable bytes kept as surrogate escapes)."""
    out = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value or "").decode("utf-8", "surrogateescape")
        except (ValueError, TypeError):
            out[key] = value or ""
    return out


class SecretPlan(object):
    """What to do with one Secret: action create | update | none | skip; key names per kind of change."""

    def __init__(self, spec, exists):
        self.spec = spec
        self.exists = exists
        self.action = "none"
        self.data = {}          # key -> value after the run (values from .env, kept or generated)
        self.remove = []        # keys deleted from the Secret (prune)
        self.added = []
        self.updated = []
        self.generated = []
        self.kept = []
        self.stale = []         # keys no longer wanted, left in place (prune off)
        self.labels = {}
        self.resource_version = None

    def summary(self):
        return {"name": self.spec.name, "namespace": self.spec.namespace, "component": self.spec.component,
                "action": self.action, "keys": sorted(self.data) if self.action != "skip" else [],
                "added": sorted(self.added), "updated": sorted(self.updated), "removed": sorted(self.remove),
                "generated": sorted(self.generated), "kept": sorted(self.kept), "stale": sorted(self.stale)}


def plan_secrets(specs, env_values, existing, prune=False, generate=True):
    """Decide every change; pure function (no API). Returns a list of :class:`SecretPlan`.

    ``env_values``: .env key -> validated value; ``existing``: (namespace, name) -> None
    (absent) or ``{"data": {key: text}, "labels": {...}, "resourceVersion": str}``.
    ``generate``: False in check mode (values to be generated are marked, not drawn).
    """
    plans = []
    for spec in specs:
        current = existing.get((spec.namespace, spec.name))
        plan = SecretPlan(spec, current is not None)
        old = dict(current["data"]) if current else {}
        wanted = set()
        for key in spec.keys:
            if key.policy == "literal":
                value = key.literal
            elif key.env in env_values:
                value = env_values[key.env]
            elif key.policy == "env_or_generate" and old.get(key.key):
                value = old[key.key]
            elif key.policy == "env_or_generate":
                value = key.generator() if generate else TO_GENERATE
                plan.generated.append(key.key)
            else:  # policy env, not in .env (optional): not wanted in the Secret
                continue
            wanted.add(key.key)
            plan.data[key.key] = value
            if key.key not in old:
                if key.key not in plan.generated:
                    plan.added.append(key.key)
            elif old[key.key] != value and key.key not in plan.generated:
                plan.updated.append(key.key)
            elif key.key in plan.generated:  # present but empty: regenerated
                plan.updated.append(key.key)
            else:
                plan.kept.append(key.key)
        for key in sorted(set(old) - wanted):
            if prune:
                plan.remove.append(key)
            else:
                plan.stale.append(key)
                plan.data[key] = old[key]
        if current is None:
            if not wanted:
                plan.action = "skip"  # e.g. hf-token with no HF_TOKEN in .env
            else:
                plan.action = "create"
                plan.labels = desired_labels(spec)
        else:
            labels = dict(current.get("labels") or {})
            want = desired_labels(spec)
            plan.labels = want if any(labels.get(k) != v for k, v in want.items()) else {}
            plan.resource_version = current.get("resourceVersion")
            if plan.added or plan.updated or plan.generated or plan.remove or plan.labels:
                plan.action = "update"
        plans.append(plan)
    return plans


def redacted_diff(plans, existing):
    """``{before, after}`` keyed ``namespace/name`` -> key -> marker; never a value."""
    before, after = {}, {}
    for plan in plans:
        if plan.action == "skip":
            continue
        ident = "%s/%s" % (plan.spec.namespace, plan.spec.name)
        current = existing.get((plan.spec.namespace, plan.spec.name))
        if current is not None:
            before[ident] = dict((k, REDACTED) for k in sorted(current["data"]))
        after_keys = {}
        for key in sorted(plan.data):
            if key in plan.generated and (current is None or key not in current["data"]):
                after_keys[key] = "%s %s" % (REDACTED_NEW, "(generated)")
            elif key in plan.added:
                after_keys[key] = REDACTED_NEW
            elif key in plan.updated:
                after_keys[key] = REDACTED_CHANGED + (" (generated)" if key in plan.generated else "")
            else:
                after_keys[key] = REDACTED
        after[ident] = after_keys
    return {"before": before, "after": after, "before_header": "Secrets (values redacted)",
            "after_header": "Secrets (values redacted)"}


def secret_body(plan):
    """The object to create (``create``) or the strategic merge patch (``update``)."""
    if plan.action == "create":
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": plan.spec.name, "namespace": plan.spec.namespace, "labels": plan.labels},
                "data": dict((k, _b64(v)) for k, v in sorted(plan.data.items()))}
    data = {}
    for key in set(plan.added) | set(plan.updated) | set(plan.generated):
        data[key] = _b64(plan.data[key])
    for key in plan.remove:
        data[key] = None
    metadata = {}
    if plan.resource_version:
        metadata["resourceVersion"] = plan.resource_version
    if plan.labels:
        metadata["labels"] = plan.labels
    body = {"metadata": metadata}
    if data:
        body["data"] = data
    return body


class LabSecrets(object):
    """Runs the module: validate, read, plan, write. ``module`` is an AnsibleModule (or a stand-in in tests)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params

    def _hide(self, values):
        for value in values:
            if value:
                self.module.no_log_values.add(value)

    def layout(self):
        comps = dict((c, bool((self.params.get("components") or {}).get(c))) for c in ds.COMPONENTS)
        return ds.secret_layout(comps, models=self.params.get("models") or [], namespace=self.params["namespace"],
                                grafana_namespace=self.params.get("grafana_namespace"),
                                grafana_admin_user=self.params.get("grafana_admin_user") or "admin",
                                hf_token_required=self.params.get("hf_token_required"),
                                litellm_extra_keys=self.params.get("litellm_extra_keys") or [],
                                litellm_keys=self.params.get("litellm_keys") or [])

    def validate(self):
        """Parse and check everything; returns ``(specs, env_values, warnings)`` or fails the module."""
        if not ds.HAS_DOTENV:
            self.module.fail_json(msg=self.module_missing("python-dotenv", ds.DOTENV_IMPORT_ERROR))
        specs, layout_errors = self.layout()
        env_file = self.params["env_file"]
        parsed = ds.read_dotenv_file(env_file, interpolate=self.params.get("interpolate", True))
        # Hide the file's values before anything can be reported: all values of keys that any Secret could use
        # or that provision reads, and the others unless too short to be a secret (masking "1" everywhere would
        # garble every line number of the messages).
        for entry in parsed.entries.values():
            for value in (entry.value, entry.raw_value):
                if value and (entry.key in self._sensitive_keys(specs) or len(value) >= 6):
                    self.module.no_log_values.add(value)
        example = None
        example_errors = []
        if self.params.get("example_file"):
            example = ds.read_dotenv_file(self.params["example_file"], interpolate=False)
            example_errors = [str(e) for e in example.errors]
        errors, warnings, values = ds.validate(parsed, specs, example=example)
        problems = list(layout_errors) + [str(e) for e in errors] + ["example file: %s" % e for e in example_errors]
        if problems:
            for warning in warnings:
                self.module.warn(str(warning))
            self.module.fail_json(
                msg="%d problem(s) found; no Secret was touched:\n%s" % (len(problems), "\n".join(problems)),
                errors=problems)
        return specs, values, warnings

    @staticmethod
    def _sensitive_keys(specs):
        keys = set(ds.PROVISION_KEYS) | set(ds.GENERATORS)
        keys.add("GRAFANA_ADMIN_PASSWORD")
        for spec in specs:
            keys.update(k.env for k in spec.keys if k.policy != "literal")
        return keys

    def module_missing(self, lib, exc):
        return "%s is required on the host running this module (the controller): %s" % (lib, exc)

    def run(self):
        specs, env_values, warnings = self.validate()
        for warning in warnings:
            self.module.warn(str(warning))
        result = {"changed": False, "env_file": self.params["env_file"], "mapping": [s.as_dict() for s in specs],
                  "secrets": []}
        if self.params.get("validate_only"):
            result["secrets"] = [{"name": s.name, "namespace": s.namespace, "component": s.component,
                                  "action": "validated"} for s in specs]
            return result
        try:
            client = kc.connect(self.params, ROUTES)
        except kc.KubeError as exc:
            self.module.fail_json(msg=str(exc))
        namespaces = sorted(set(s.namespace for s in specs))
        missing_ns = []
        existing = {}
        try:
            for namespace in namespaces:
                if client.call("read_namespace", "read the lab's Secrets", missing_ok=True, name=namespace) is None:
                    missing_ns.append(namespace)
            for spec in specs:
                existing[(spec.namespace, spec.name)] = None if spec.namespace in missing_ns else self._read(client, spec)
        except kc.KubeError as exc:
            self.module.fail_json(msg=str(exc) + " (no Secret was touched)")
        if missing_ns and not self.params.get("create_namespace", True):
            self.module.fail_json(msg="namespace(s) %s do not exist and create_namespace is false: create them first "
                                  "(the deploy playbook does) or set create_namespace: true; no Secret was touched"
                                  % ", ".join(missing_ns))
        plans = plan_secrets(specs, env_values, existing, prune=self.params.get("prune", False),
                             generate=not self.module.check_mode)
        for plan in plans:
            literal_keys = set(k.key for k in plan.spec.keys if k.policy == "literal")
            self._hide(v for k, v in plan.data.items() if k not in literal_keys and v != TO_GENERATE)
            if plan.stale:
                self.module.warn("Secret %s/%s holds key(s) %s that are no longer wanted (not in .env or not in the "
                                 "catalog any more); they are kept. Run with prune (secrets_prune: true) to remove them."
                                 % (plan.spec.namespace, plan.spec.name, ", ".join(plan.stale)))
        changed = bool(missing_ns) or any(p.action in ("create", "update") for p in plans)
        result["changed"] = changed
        result["namespaces_created"] = missing_ns
        result["secrets"] = [p.summary() for p in plans]
        if self.module._diff:
            result["diff"] = redacted_diff(plans, existing)
        if self.module.check_mode or not changed:
            return result
        done = []
        action = "write the lab's Secrets"
        try:
            for namespace in missing_ns:
                client.call("create_namespace", action,
                            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
                done.append("namespace %s created" % namespace)
            for plan in plans:
                if plan.action == "create":
                    client.call("create_namespaced_secret", action, namespace=plan.spec.namespace, body=secret_body(plan))
                elif plan.action == "update":
                    client.call("patch_namespaced_secret", action, content_type="application/strategic-merge-patch+json",
                                name=plan.spec.name, namespace=plan.spec.namespace, body=secret_body(plan))
                else:
                    continue
                done.append("%s/%s %sd" % (plan.spec.namespace, plan.spec.name, plan.action))
        except kc.KubeError as exc:
            what = str(exc)
            if exc.status == 409:
                what += " (a Secret changed while this run was planning: re-run to plan against the new version)"
            self.module.fail_json(msg="%s; done before the failure: %s" % (what, ", ".join(done) or "nothing"),
                                  secrets=result["secrets"])
        return result

    def _read(self, client, spec):
        obj = client.call("read_namespaced_secret", "read the lab's Secrets", missing_ok=True, name=spec.name,
                          namespace=spec.namespace)
        if obj is None:
            return None
        data = decode_data(obj.get("data"))
        literal_keys = set(k.key for k in spec.keys if k.policy == "literal")
        self._hide(v for k, v in data.items() if k not in literal_keys)
        metadata = obj.get("metadata") or {}
        return {"data": data, "labels": dict(metadata.get("labels") or {}), "resourceVersion": metadata.get("resourceVersion")}
