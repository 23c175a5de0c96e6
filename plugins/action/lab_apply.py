# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ailab.gpu_lab.lab_apply: deploy's one validated, pruned, server-side apply.

Runs in the controller's process (no module is started, nothing is copied to a host): the protocol
is ``module_utils/apply.py``; this file reads the options, renders files in ``state=rendered``, and
turns the result into Ansible's (changed, diff, check mode). Documentation: plugins/modules/lab_apply.py.
"""
from __future__ import annotations

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.ailab.gpu_lab.plugins.module_utils import apply as _apply
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube as _kube
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent", "rendered"]},
    "components": {"type": "list", "elements": "dict", "required": True},
    "applyset": {"type": "dict"},
    "prune": {"type": "bool", "default": False},
    "owned_fields": {"type": "list", "elements": "dict", "default": []},
    "render_dir": {"type": "path"},
    "flat": {"type": "bool", "default": False},
    "wait": {"type": "list", "elements": "dict", "default": []},
    "wait_timeout": {"type": "int", "default": 600},
    "crd_timeout": {"type": "int", "default": 300},
    "field_manager": {"type": "str", "default": _apply.FIELD_MANAGER},
}
# The connection: the doc fragment ailab.gpu_lab.kubernetes, its K8S_AUTH_* fallbacks, module_defaults group
# ailab.gpu_lab.kubernetes (the same spec as every module of the collection).
ARGUMENT_SPEC.update(_kube.KUBE_ARG_SPEC)
HEADER = "# Rendered by ailab.gpu_lab (component %s): exactly what deploy applies. `kubectl apply --server-side -k .`, " \
         "or point Argo CD / Flux here.\n"


def collection_version():
    """The collection's version (MANIFEST.json when installed, galaxy.yml in a checkout): the ApplySet's tooling."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    try:
        with open(os.path.join(root, "MANIFEST.json")) as handle:
            return json.load(handle)["collection_info"]["version"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(root, "galaxy.yml")) as handle:
            return str(yaml.safe_load(handle).get("version") or "0.0.0")
    except (OSError, ValueError, AttributeError):
        return "0.0.0"


def flatten(components):
    """The objects of every component in order, where each was declared, and problems naming the component and file."""
    objects, origins, problems = [], [], []
    for index, comp in enumerate(components):
        name = comp.get("name") or "components[%d]" % index
        for fname, content in (comp.get("files") or {}).items():
            if isinstance(content, str):
                continue  # a file written beside the manifests (the LiteLLM config), not an object
            for i, obj in enumerate(content or []):
                if obj is None:
                    continue
                if not isinstance(obj, dict):
                    problems.append("%s/%s, document %d: not a Kubernetes object" % (name, fname, i + 1))
                    continue
                objects.append(obj)
                origins.append("%s/%s document %d" % (name, fname, i + 1))
    return objects, origins, problems


def _dump(objects):
    return "".join("---\n" + yaml.safe_dump(o, default_flow_style=False, sort_keys=False, width=1000) for o in objects)


def render_tree(components, set_id, applyset, version, flat=False):
    """``{relative path: content}`` of the rendered tree: a directory per component, a kustomization each, the top one."""
    files, resources = {}, []
    members = []
    for comp in components:
        name = comp["name"]
        listed = []
        for fname, content in (comp.get("files") or {}).items():
            if isinstance(content, str):
                files["%s/%s" % (name, fname)] = content
                continue
            objs = [o for o in (content or []) if o is not None]
            if set_id:
                objs = _apply.label_members(objs, set_id)
            members += objs
            files["%s/%s" % (name, fname)] = (HEADER % name) + _dump(objs)
            listed.append(fname)
        files["%s/kustomization.yaml" % name] = (HEADER % name) + yaml.safe_dump(
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": listed},
            default_flow_style=False, sort_keys=False)
        resources.append(name)
    if set_id:
        parent = _apply.parent_object(applyset["name"], applyset["namespace"], set_id,
                                      set(_apply.group_kind(o) for o in members),
                                      set(o["metadata"].get("namespace") or "" for o in members), version)
        files["applyset.yaml"] = (HEADER % "applyset parent") + _dump([parent])
        resources.append("applyset.yaml")
    if flat:  # one component written straight into render_dir (a role rendered on its own)
        prefix = components[0]["name"] + "/"
        return dict((k[len(prefix):], v) for k, v in files.items() if k.startswith(prefix))
    files["kustomization.yaml"] = (HEADER % "all") + yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources},
        default_flow_style=False, sort_keys=False)
    return files


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        # Plain JSON types (ansible-core 2.19 hands tagged str/dict subclasses that PyYAML's safe_dump refuses).
        plain = json.loads(json.dumps(self._task.args))
        # The validator deep-copies what it checks; a list of dicts (every declared object) is checked here instead
        # of copied (about 0.1 s a run, docs/deploy.md "Benchmark"). Anything else goes to the validator, which
        # words the error.
        components = plain.get("components")
        declared = isinstance(components, list) and all(isinstance(c, dict) for c in components)
        validated = ArgumentSpecValidator(ARGUMENT_SPEC).validate(dict(plain, components=[]) if declared else plain)
        if validated.error_messages:
            raise AnsibleActionFail("lab_apply: " + "; ".join(validated.error_messages))
        args = validated.validated_parameters
        if declared:
            args["components"] = components
        objects, origins, problems = flatten(args["components"])
        problems += _apply.check_objects(objects, origins)
        if problems:
            raise AnsibleActionFail("lab_apply: the declared objects are not valid, nothing was written:\n  - "
                                    + "\n  - ".join(problems))
        check = bool(self._task.check_mode)
        applyset = args["applyset"]
        version = collection_version()
        if applyset:
            applyset = dict(applyset, version=version)
        set_id = _apply.applyset_id(applyset["name"], applyset["namespace"]) if applyset else None
        if args["state"] == "rendered":
            return self._render(result, args, set_id, applyset, version, check)
        params = dict((k, args[k]) for k in _kube.KUBE_ARG_SPEC if args.get(k) is not None)
        try:
            client = kube_client.connect(params, routes={})
            api = _apply.Api(client)
            applier = _apply.Applier(api, check=check, manager=args["field_manager"], owned_fields=args["owned_fields"],
                                     crd_timeout=args["crd_timeout"])
            if args["state"] == "absent":
                applier.delete(objects)
            else:
                applier.run(objects, applyset=applyset, prune=args["prune"])
                if args["wait"] and not check:
                    _apply.wait_ready(api, args["wait"], args["wait_timeout"])
        except (_apply.ApplyError, kube_client.KubeError) as exc:
            result.update(failed=True, msg="lab_apply: %s" % exc,
                          results=locals().get("applier").results if "applier" in locals() else [])
            return result
        result.update(changed=applier.changed, results=applier.results, applyset_id=set_id,
                      notes=applier.notes)
        if self._task.diff and applier.diff:
            result["diff"] = applier.diff
        for note in applier.notes:
            self._display.display(note)
        return result

    def _render(self, result, args, set_id, applyset, version, check):
        if not args["render_dir"]:
            raise AnsibleActionFail("lab_apply: state=rendered needs render_dir")
        if args["flat"] and len(args["components"]) != 1:
            raise AnsibleActionFail("lab_apply: flat=true renders exactly one component")
        files = render_tree(args["components"], set_id, applyset, version, flat=args["flat"])
        root = args["render_dir"]
        written, diff = [], []
        for rel, content in sorted(files.items()):
            path = os.path.join(root, rel)
            old = None
            if os.path.exists(path):
                with open(path) as handle:
                    old = handle.read()
            if old == content:
                continue
            written.append(rel)
            diff.append({"before_header": path, "after_header": path, "before": old or "", "after": content})
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as handle:
                    handle.write(content)
        result.update(changed=bool(written), written=written, render_dir=root, applyset_id=set_id)
        if self._task.diff and diff:
            result["diff"] = diff
        return result
