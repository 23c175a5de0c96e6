"""Deploy's one apply (action ailab.gpu_lab.lab_apply, module_utils/apply.py) against the real control plane.

REAL: ansible-playbook with the roles and the action, the kube-apiserver (server-side apply, dry run, strict field
validation, managedFields, label selectors, discovery of a CRD installed later), kubectl (the ApplySet id it
computes), kubernetes.core.k8s (how the previous version applied a lab). EMULATED: the kubelet (kwok): pods become
Running and Ready; nothing here depends on a container running.

The lab is the example's shape without the parts that need more than the API server (observability's chart,
ingress's tailnet address, Qdrant collections, model pulls): every object deploy applies for gpu_runtime, qdrant,
litellm, ollama, vllm, open_webui, network_policy and the image pre-pull (and searxng in the first test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import apply as ap
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap

from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import deploy_lab_inventory, recap
from tests.support.controlplane import DEFAULT_NODE

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
OFF = ("observability", "ingress", "tracing")
PARENT = "gpu-lab-applyset"
BIN = Path(sys.executable).parent


def _inventory(tmp_path, kube, components=None, **extra):
    example = Path(REPO) / "inventory" / "example" / "group_vars" / "gpu_lab" / "models.yml"
    return deploy_lab_inventory(tmp_path, kube, dict({name: False for name in OFF}, **(components or {})),
                                yaml.safe_load(example.read_text()), **dict({"qdrant_collections": []}, **extra))


def _pvcs_bound(kube):
    """Every PVC of the namespace that names its PV (spec.volumeName) is Bound: the PV controller is done with it."""
    pvcs = kube.client.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(namespace=kube.namespace)
    return all((p.status or {}).get("phase") == "Bound" for p in pvcs.items if (p.spec or {}).get("volumeName"))


def _rendered(render):
    """Every object of the rendered tree, by (group, kind, namespace, name); the parent apart."""
    out, parent = {}, None
    for path in sorted((render / "k8s").rglob("*.yaml")):
        if path.name in ("kustomization.yaml", "config.yaml"):
            continue
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj:
                continue
            if path.name == "applyset.yaml":
                parent = obj
                continue
            out[ap.key(obj)] = obj
    return out, parent


def _members(kube, parent):
    """The live members of the ApplySet: every kind and namespace the parent lists, by the part-of label."""
    set_id = parent["metadata"]["labels"][ap.ID_LABEL]
    kinds, namespaces = ap.parent_contents(parent)
    found = {}
    for group_kind in kinds:
        kind, _, group = group_kind.partition(".")
        api_version = {"": "v1", "apps": "apps/v1", "networking.k8s.io": "networking.k8s.io/v1",
                       "helm.cattle.io": "helm.cattle.io/v1"}[group]
        res = kube.client.resources.get(api_version=api_version, kind=kind)
        for namespace in (sorted(namespaces) if res.namespaced else [None]):
            for obj in kube.list(kind, api_version=api_version, namespace=namespace,
                                 label_selector=f"{ap.PART_OF}={set_id}"):
                found[ap.key(dict(obj, apiVersion=api_version, kind=kind))] = obj
    return found


def _subset(want, have, path=""):
    """Paths where ``have`` (live) differs from ``want`` (rendered); a list of dicts with names matched by name."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path]
        return [p for k, v in want.items() for p in _subset(v, have.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        return [p for i, (w, h) in enumerate(zip(want, have)) for p in _subset(w, h, f"{path}[{i}]")]
    if want == "" and have is None:   # the API server drops an empty string it stores as unset (PV storageClassName)
        return []
    return [] if want == have or str(want) == str(have) else [f"{path}: {want!r} != {have!r}"]


def _owned(obj, manager):
    """The fieldsV1 of ``manager``'s Apply entry, as JSON text (empty when it has none)."""
    return json.dumps([e.get("fieldsV1") for e in obj["metadata"].get("managedFields") or []
                       if e["manager"] == manager and e["operation"] == "Apply"])


def test_deploy_applies_the_rendered_tree_as_one_applyset_and_a_rerun_writes_nothing(kube, tmp_path):
    inventory = _inventory(tmp_path, kube, components={"searxng": True})   # the optional web search too
    render = tmp_path / "rendered"
    run_playbook(PLAYBOOK, "-i", inventory, "-e", "gpu_lab_render_only=true")
    rendered, parent = _rendered(render)
    assert {("Deployment", "searxng"), ("ConfigMap", "searxng-settings"), ("NetworkPolicy", "searxng")} <= {
        (k[1], k[3]) for k in rendered}

    first = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(first.stdout)[0] > 0

    live_parent = kube.get("ConfigMap", PARENT)
    assert live_parent["metadata"]["labels"][ap.ID_LABEL] == ap.applyset_id(PARENT, kube.namespace)
    assert live_parent["metadata"]["annotations"] == parent["metadata"]["annotations"]   # the render holds it too
    members = _members(kube, live_parent)
    assert sorted(members) == sorted(rendered)          # the set the API server holds is the rendered tree, exactly
    mismatches = {"%s %s" % (k[1], k[3]): _subset(obj, members[k]) for k, obj in rendered.items()}
    assert not {k: v for k, v in mismatches.items() if v}   # every rendered field is live: render == apply

    # one field manager; the swap's fields of the GPU backends under the swap's manager only
    vllm = kube.get("Deployment", "vllm", api_version="apps/v1")
    mine, swaps = _owned(vllm, ap.FIELD_MANAGER), _owned(vllm, gpu_swap.SWAP_FIELD_MANAGER)
    assert '"f:replicas"' not in mine and '"f:args"' not in mine and '"f:nodeSelector"' not in mine
    assert '"f:replicas"' in swaps and '"f:args"' in swaps and '"f:nodeSelector"' in swaps
    assert '"f:image"' in mine and '"f:image"' not in swaps

    # the PV controller binds a PVC to its pre-bound PV on its own schedule (a write that is not deploy's): wait for it
    kube.wait_for(lambda: _pvcs_bound(kube), timeout=90, what="the PV controller to bind the pre-bound PVCs")
    before = kube.snapshot()
    second = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(second.stdout) == (0, 0), second.stdout[-4000:]
    assert kube.snapshot() == before                    # nothing written at all, not just reported unchanged


def test_a_component_turned_off_is_pruned_but_its_pvc_kept_and_a_tagged_run_prunes_nothing(kube, tmp_path):
    run_playbook(PLAYBOOK, "-i", _inventory(tmp_path, kube))
    assert kube.get("Deployment", "open-webui", api_version="apps/v1")
    off = _inventory(tmp_path, kube, components={"open_webui": False})

    tagged = run_playbook(PLAYBOOK, "-i", off, "--tags", "qdrant", "-e", "qdrant_image_pull_policy=Always")
    assert recap(tagged.stdout) == (1, 0)
    qdrant = kube.get("StatefulSet", "qdrant", api_version="apps/v1")["spec"]["template"]["spec"]["containers"][0]
    assert qdrant["imagePullPolicy"] == "Always"                          # the tagged component was applied
    assert kube.get("Deployment", "open-webui", api_version="apps/v1")   # a tagged run declares a part: no prune

    check = run_playbook(PLAYBOOK, "-i", off, "--check", "--diff")
    assert "Deployment %s/open-webui" % kube.namespace in check.stdout     # the prune is planned and shown
    assert kube.get("Deployment", "open-webui", api_version="apps/v1")

    run_playbook(PLAYBOOK, "-i", off)
    assert kube.get("Deployment", "open-webui", api_version="apps/v1") is None
    assert kube.get("Service", "open-webui") is None
    assert kube.get("PersistentVolumeClaim", "open-webui-data")        # data is never pruned
    assert kube.get("Namespace", kube.namespace, namespace=None)
    assert kube.get("Deployment", "litellm", api_version="apps/v1")     # the rest stays


def test_a_lab_applied_by_the_previous_version_is_adopted_without_recreating_anything(kube, tmp_path):
    inventory = _inventory(tmp_path, kube)
    render = tmp_path / "rendered"
    run_playbook(PLAYBOOK, "-i", inventory, "-e", "gpu_lab_render_only=true")
    rendered, _ = _rendered(render)
    # What the previous version did: kubernetes.core.k8s, object by object, no ApplySet labels, and the record.
    old = []
    for obj in rendered.values():
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["labels"].pop(ap.PART_OF)
        old.append(obj)
    old.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gpu-lab-state", "namespace": kube.namespace},
                "data": {"owner": "ollama", "model": "", "node": DEFAULT_NODE}})
    play = tmp_path / "previous-version.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "Apply as the previous version did", "kubernetes.core.k8s": {
            "kubeconfig": kube.kubeconfig, "state": "present", "definition": old}}]}]))
    run_playbook(play, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}")
    before = {k: (o["metadata"]["uid"], o["metadata"].get("generation"))
              for k, o in ((ap.key(o), kube.get(o["kind"], o["metadata"]["name"], api_version=o["apiVersion"],
                                                 namespace=o["metadata"].get("namespace"))) for o in rendered.values())}

    run_playbook(PLAYBOOK, "-i", inventory)
    parent = kube.get("ConfigMap", PARENT)
    members = _members(kube, parent)
    assert sorted(members) == sorted(rendered)         # every object adopted into the set
    after = {k: (o["metadata"]["uid"], o["metadata"].get("generation")) for k, o in members.items()}
    assert after == before                              # same objects (uid), no spec change (generation): no rollout
    again = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(again.stdout) == (0, 0), again.stdout[-3000:]


def _apply_play(tmp_path, kube, components, **options):
    play = tmp_path / f"apply-{uuid.uuid4().hex[:6]}.yml"
    task = dict({"kubeconfig": kube.kubeconfig, "components": components}, **options)
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "connection": "local",
                                     "tasks": [{"name": "One apply", "ailab.gpu_lab.lab_apply": task,
                                                "register": "applied"},
                                               {"name": "Show", "ansible.builtin.debug": {"var": "applied"}}]}]))
    return play


def test_an_object_the_api_server_refuses_stops_its_phase_before_anything_is_written(kube, tmp_path):
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine", "namespace": kube.namespace},
            "data": {"a": "b"}}
    bad_port = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad-port", "namespace": kube.namespace},
                "spec": {"ports": [{"port": 70000}]}}
    typo = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typo", "namespace": kube.namespace},
            "spec": {"replica": 1, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    play = _apply_play(tmp_path, kube, [{"name": "x", "files": {"x.yaml": [good, bad_port, typo]}}])
    proc = run_playbook(play, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", check=False)
    assert proc.returncode != 0
    assert "refused 2 of 3 objects, so none of this phase was written" in proc.stdout
    assert f"Service {kube.namespace}/bad-port" in proc.stdout and "70000" in proc.stdout
    # an unknown field: the API server answers an apply it cannot type with 500, which is not retried
    assert f"Deployment {kube.namespace}/typo" in proc.stdout and ".spec.replica: field not declared in schema" in proc.stdout
    assert kube.get("ConfigMap", "fine") is None      # the valid object of the phase was not written either


def test_objects_of_a_crd_installed_later_wait_for_it_and_check_mode_says_so(kube, control_plane, tmp_path):
    group = "w%s.ailab.test" % uuid.uuid4().hex[:8]
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": kube.namespace},
              "spec": {"size": 3}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first", "namespace": kube.namespace}}
    components = [{"name": "chart", "files": {"w.yaml": [cm, widget]}}]

    check = run_playbook(_apply_play(tmp_path, kube, components), "-i", "localhost,", "--check",
                         "-e", f"ansible_python_interpreter={sys.executable}")
    assert f"check mode: Widget {kube.namespace}/w is not dry-run: its API ({group}/v1) is not served" in check.stdout
    assert kube.get("ConfigMap", "first") is None

    # the "chart" installs the CRD 4 s after the apply started, as helm-controller does after its HelmChart
    timer = threading.Timer(4.0, lambda: control_plane.apply(crd))
    timer.start()
    try:
        started = time.monotonic()
        run_playbook(_apply_play(tmp_path, kube, components, crd_timeout=60), "-i", "localhost,",
                     "-e", f"ansible_python_interpreter={sys.executable}")
        assert time.monotonic() - started >= 4
    finally:
        timer.join()
        control_plane.client().resources.get(api_version="apiextensions.k8s.io/v1",
                                             kind="CustomResourceDefinition").delete(name=crd["metadata"]["name"])
    # the CRD came after the ConfigMap: the first phase did not wait for it
    assert kube.get("ConfigMap", "first") is not None


def test_kubectl_computes_the_same_applyset_id(kube, tmp_path):
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "probe", "namespace": kube.namespace}}))
    env = dict(os.environ, KUBECTL_APPLYSET="true")
    subprocess.run([str(BIN / "kubectl"), "--kubeconfig", kube.kubeconfig, "apply", "--server-side", "--prune",
                    "--applyset=configmap/kubectl-set", "-n", kube.namespace, "-f", str(manifest)],
                   env=env, check=True, capture_output=True, text=True)
    parent = kube.get("ConfigMap", "kubectl-set")
    assert parent["metadata"]["labels"][ap.ID_LABEL] == ap.applyset_id("kubectl-set", kube.namespace)
    probe = kube.get("ConfigMap", "probe")
    assert probe["metadata"]["labels"][ap.PART_OF] == ap.applyset_id("kubectl-set", kube.namespace)


def test_the_roles_read_the_cluster_through_the_collections_client(kube, tmp_path):
    """Lookup ailab.gpu_lab.kube_objects (the roles' reads): one object, a label-selected list, and [] for a missing
    object and for an API that is not served, as the kubernetes.core.k8s lookup answers."""
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "record", "labels": {"x": "1"}},
                "data": {"owner": "ollama"}})
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "labels": {"x": "2"}}})
    conn = f"kubeconfig='{kube.kubeconfig}'"
    checks = {
        "one": f"query('ailab.gpu_lab.kube_objects', kind='ConfigMap', namespace='{kube.namespace}', "
               f"resource_name='record', {conn}) | map(attribute='data.owner') | list == ['ollama']",
        "listed": f"query('ailab.gpu_lab.kube_objects', kind='ConfigMap', namespace='{kube.namespace}', "
                  f"label_selector='x=2', {conn}) | map(attribute='metadata.name') | list == ['other']",
        "missing": f"query('ailab.gpu_lab.kube_objects', kind='ConfigMap', namespace='{kube.namespace}', "
                   f"resource_name='nope', {conn}) == []",
        "unserved": f"query('ailab.gpu_lab.kube_objects', api_version='nothing.example/v1', kind='Widget', "
                    f"namespace='{kube.namespace}', resource_name='w', {conn}) == []",
    }
    play = tmp_path / "lookup.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": f"lookup {name}", "ansible.builtin.assert": {"that": [expr]}} for name, expr in checks.items()]}]))
    out = run_playbook(play, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}").stdout
    assert recap(out) == (0, 0) and out.count("All assertions passed") + out.count("ok: [localhost]") >= 4


def test_check_mode_on_a_fresh_cluster_plans_everything_and_writes_nothing(kube, tmp_path):
    """No lab namespace yet, no owner record: --check --diff shows the objects it would create, says what it cannot
    dry-run, and the namespace still does not exist afterwards."""
    fresh = kube.namespace + "-fresh"
    kube.other_namespaces.append(fresh)   # removed at teardown should the run create it after all
    inventory = _inventory(tmp_path, kube, gpu_lab_namespace=fresh, gpu_runtime_chart_namespace=fresh)
    out = run_playbook(PLAYBOOK, "-i", inventory, "--check", "--diff").stdout
    assert recap(out)[1] == 0
    assert f"check mode: ConfigMap {fresh}/gpu-lab-state would be created" in out
    assert f"+++ after: Deployment {fresh}/litellm" in out          # the diff of an object to be created
    assert kube.get("Namespace", fresh, namespace=None) is None
