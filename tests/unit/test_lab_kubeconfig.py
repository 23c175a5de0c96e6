"""The kubeconfig path of a lab host, written once (module_utils/kube_client.py DEFAULT_KUBECONFIG, filter
ailab.gpu_lab.lab_kubeconfig) and derived by every role, the deploy playbook's module_defaults and the provision
role that writes the file. Pure Python over the repository's files."""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.filter.lab import FilterModule, lab_kubeconfig
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client

REPO = Path(__file__).resolve().parents[2]
DERIVED = "{{ inventory_hostname | ailab.gpu_lab.lab_kubeconfig(gpu_lab_kubeconfig | default('')) }}"


def test_the_inventory_wins_else_the_default_path_of_the_host():
    assert lab_kubeconfig("gpu-box") == "~/.kube/gpu_lab/gpu-box.yaml" == kube_client.DEFAULT_KUBECONFIG % "gpu-box"
    assert lab_kubeconfig("gpu-box", "/etc/lab/kubeconfig") == "/etc/lab/kubeconfig"
    assert lab_kubeconfig("gpu-box", "") == "~/.kube/gpu_lab/gpu-box.yaml"   # empty = not set
    with pytest.raises(AnsibleFilterError, match="expects an inventory host name"):
        lab_kubeconfig("")
    assert FilterModule().filters() == {"lab_kubeconfig": lab_kubeconfig}


def test_the_default_follows_the_constant(monkeypatch):
    monkeypatch.setattr(kube_client, "DEFAULT_KUBECONFIG", "/srv/kube/%s.conf")
    assert lab_kubeconfig("gpu-box") == "/srv/kube/gpu-box.conf"
    assert "/srv/kube/<host>.conf" in kube_client.missing_kubeconfig("/nope")


def _names_a_kubeconfig(key):
    return (key.endswith("_kubeconfig") and key != "provision_fetch_kubeconfig") or key == "provision_kubeconfig_dest"


def _kubeconfig_defaults():
    """(file, variable, value) of every role default and spec default that names a kubeconfig."""
    found = []
    for path in sorted(REPO.glob("roles/*/defaults/main.yml")):
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if _names_a_kubeconfig(key):
                found.append((path.relative_to(REPO), key, value))
    for path in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        for entry in (yaml.safe_load(path.read_text())["argument_specs"] or {}).values():
            for key, spec in (entry.get("options") or {}).items():
                if _names_a_kubeconfig(key) and "default" in spec:
                    found.append((path.relative_to(REPO), key, spec["default"]))
    return found


def test_every_role_and_the_deploy_playbook_derive_the_path_from_the_filter():
    found = _kubeconfig_defaults()
    roles = {str(path).split("/")[1] for path, _key, _value in found}
    assert len(roles) >= 18, roles   # every role that talks to the API server, and provision that writes the file
    assert [(str(p), k) for p, k, v in found if v != DERIVED] == []
    deploy = yaml.safe_load((REPO / "playbooks" / "deploy.yml").read_text())[0]
    assert deploy["module_defaults"]["group/ailab.gpu_lab.kubernetes"]["kubeconfig"] == DERIVED
    # and the path itself is written nowhere else in code (docs and examples may show it)
    literal = "'~/.kube/gpu_lab/'"
    code = list(REPO.glob("roles/*/*/*.yml")) + list(REPO.glob("playbooks/*.yml")) + list(REPO.glob("plugins/*/*.py"))
    assert [str(p.relative_to(REPO)) for p in code if literal in p.read_text()] == []
