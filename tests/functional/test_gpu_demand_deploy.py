"""The gpu_demand component deployed by the deploy playbook, against the real control plane (docs/gpu_demand.md).

REAL: ansible-playbook with the roles and the one apply, the kube-apiserver (schemas, RBAC, TokenRequest,
SelfSubjectAccessReview). EMULATED: the kubelet (kwok: pods become Ready, nothing runs). What this proves: the service's
account may do exactly the swap's requests and nothing more, and the gateway's own account (the litellm Deployment's
ServiceAccount, with a token of it) may change nothing the swap changes: the gateway gets no write access.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import deploy_lab_inventory, recap

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
BIN = Path(sys.executable).parent


def _inventory(tmp_path, kube):
    example = Path(REPO) / "inventory" / "example" / "group_vars" / "gpu_lab" / "models.yml"
    catalog = yaml.safe_load(example.read_text())
    for entry in catalog["gpu_lab_models"]:
        if entry["name"] in ("qwen2.5-7b", "llama3.1-8b"):
            entry["on_demand"] = True
    off = ("observability", "ingress", "tracing", "open_webui", "qdrant")
    return deploy_lab_inventory(tmp_path, kube, dict({name: False for name in off}, gpu_demand=True), catalog)


def _can_i(kube, tmp_path, account, verb, resource, name=None, subresource=None):
    """What ``account``'s own token may do (SelfSubjectAccessReview, sent with that token)."""
    from kubernetes import client as k8s  # pylint: disable=import-outside-toplevel
    token = k8s.CoreV1Api(kube.client.client).create_namespaced_service_account_token(
        account, kube.namespace, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": 600}}).status.token
    config = kube.write_kubeconfig(str(tmp_path / f"{account}.kubeconfig"), token)
    argv = [str(BIN / "kubectl"), "--kubeconfig", config, "-n", kube.namespace, "auth", "can-i", verb,
            resource + (f"/{name}" if name else "")] + ([f"--subresource={subresource}"] if subresource else [])
    out = subprocess.run(argv, text=True, capture_output=True, check=False)
    return out.stdout.strip() == "yes"


def test_deploy_runs_the_service_with_the_swap_rbac_and_the_gateway_gets_no_write_access(kube, tmp_path):
    inventory = _inventory(tmp_path, kube)
    out = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(out.stdout)[1] == 0, out.stdout[-4000:]
    dep = kube.get("Deployment", "gpu-demand", api_version="apps/v1")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gpu-demand" and pod["automountServiceAccountToken"] is True
    assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"])   # no GPU requested
    config = json.loads(kube.get("ConfigMap", "gpu-demand-config")["data"]["config.json"])
    assert sorted(a for a, e in config["aliases"].items() if e["on_demand"]) == ["llama3.1-8b", "qwen2.5-7b"]
    assert config["backends"]["vllm"] == f"http://vllm.{kube.namespace}.svc.cluster.local:8000"
    gateway = kube.get("Deployment", "litellm", api_version="apps/v1")["spec"]["template"]["spec"]
    env = dict((e["name"], e) for e in gateway["containers"][0]["env"])
    assert env["GPU_DEMAND_URL"]["value"] == f"http://gpu-demand.{kube.namespace}.svc.cluster.local:8090"
    assert "gpu_demand_hook.handler" in kube.get("ConfigMap", "litellm-config")["data"]["config.yaml"]
    assert kube.get("ConfigMap", "litellm-config")["data"]["gpu_demand_hook.py"].startswith("# Copyright")
    # The service's account: the swap's requests, nothing more.
    assert _can_i(kube, tmp_path, "gpu-demand", "patch", "deployments", "vllm", subresource="scale")
    assert _can_i(kube, tmp_path, "gpu-demand", "patch", "configmaps", "gpu-lab-state")
    assert not _can_i(kube, tmp_path, "gpu-demand", "patch", "deployments", "litellm")
    assert not _can_i(kube, tmp_path, "gpu-demand", "get", "secrets", "qdrant-api-key")
    # The gateway's own account: no write to anything the swap writes, no read of the record's neighbours.
    account = gateway.get("serviceAccountName", "default")
    assert gateway["automountServiceAccountToken"] is False
    for verb, resource, name, sub in (("patch", "deployments", "vllm", "scale"), ("patch", "deployments", "vllm", None),
                                      ("patch", "configmaps", "gpu-lab-state", None),
                                      ("update", "leases", "gpu-lab-swap", None), ("delete", "pods", None, None)):
        assert not _can_i(kube, tmp_path, account, verb, resource, name, sub), (verb, resource, name, sub)
    # A second run changes nothing.
    again = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(again.stdout) == (0, 0), again.stdout[-4000:]
