"""The litellm role applied for real: Postgres on, then off, then the whole gateway removed.

REAL: ansible-playbook, the role, kubernetes.core.k8s, and the Kubernetes control plane of the
``kube`` fixture (kube-apiserver, controller-manager with the StatefulSet and garbage-collector
controllers, scheduler; a fresh namespace per test). EMULATED: the node and its kubelet (kwok:
pods become Running/Ready, no container runs, so Postgres itself never starts), and volume
provisioning (the control plane's local-path stand-in, see docs/testing.md).
"""

from __future__ import annotations

import sys

import yaml

from tests.conftest import run_playbook
from tests.support.catalog_example import EXAMPLE_CATALOG_PATH


def _converge(kube, tmp_path, **role_vars):
    """Run the litellm role once with ``role_vars``; return the play recap's counts."""
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable}, "vars_files": [str(EXAMPLE_CATALOG_PATH)],
             "roles": [{"role": "ailab.gpu_lab.litellm", "vars": dict(
                 {"litellm_kubeconfig": kube.kubeconfig, "litellm_namespace": kube.namespace,
                  "litellm_servicemonitor_enabled": False}, **role_vars)}]}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    proc = run_playbook(path, "-i", "localhost,")
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost")][-1]
    return {k: int(v) for k, v in (item.split("=") for item in recap.split(":", 1)[1].split())}


def _secrets(kube):
    """The Secrets the secrets playbook would have made (the pods reference them)."""
    for name, data in (("litellm-env", {"LITELLM_MASTER_KEY": "sk-test", "LITELLM_SALT_KEY": "salt",
                                        "ANTHROPIC_API_KEY": "sk-ant-test"}),
                       ("litellm-postgres", {"POSTGRES_PASSWORD": "pg-test"})):
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})


def _gateway(kube):
    return {kind: kube.get(kind, name, api_version) for kind, name, api_version in (
        ("ConfigMap", "litellm-config", "v1"), ("Deployment", "litellm", "apps/v1"), ("Service", "litellm", "v1"))}


def test_postgres_is_applied_then_removed_keeping_its_claim(kube, tmp_path):
    _secrets(kube)
    assert _converge(kube, tmp_path, litellm_postgres_enabled=True)["failed"] == 0
    sts = kube.get("StatefulSet", "litellm-postgres", "apps/v1")
    assert sts and kube.get("Service", "litellm-postgres")["spec"]["clusterIP"] == "None"
    # the real StatefulSet controller makes the pod and its claim from the template
    pod = kube.wait_for(lambda: kube.get("Pod", "litellm-postgres-0"), what="pod litellm-postgres-0")
    assert pod["spec"]["containers"][0]["env"][-1]["valueFrom"]["secretKeyRef"] == {
        "name": "litellm-postgres", "key": "POSTGRES_PASSWORD"}
    claim = kube.wait_for(lambda: kube.get("PersistentVolumeClaim", "data-litellm-postgres-0"), what="claim")
    assert claim["metadata"]["labels"]["backup-tier"] == "gfs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    kube.wait_for(lambda: (kube.get("StatefulSet", "litellm-postgres", "apps/v1").get("status") or {})
                  .get("readyReplicas") == 1, what="postgres StatefulSet ready")
    # the gateway is wired to it
    config = yaml.safe_load(_gateway(kube)["ConfigMap"]["data"]["config.yaml"])
    assert config["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    env = {e["name"]: e for e in _gateway(kube)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["value"] == "postgresql://litellm:$(POSTGRES_PASSWORD)@litellm-postgres:5432/litellm"

    assert _converge(kube, tmp_path, litellm_postgres_enabled=True)["changed"] == 0

    # turned off: StatefulSet and Service go, the claim (the data) stays
    assert _converge(kube, tmp_path, litellm_postgres_enabled=False)["failed"] == 0
    assert kube.get("StatefulSet", "litellm-postgres", "apps/v1") is None
    assert kube.get("Service", "litellm-postgres") is None
    assert kube.get("PersistentVolumeClaim", "data-litellm-postgres-0") is not None
    kube.wait_for(lambda: not kube.pods(label_selector="app.kubernetes.io/name=litellm-postgres"),
                  what="postgres pod deleted by the garbage collector")
    config = yaml.safe_load(_gateway(kube)["ConfigMap"]["data"]["config.yaml"])
    assert "database_url" not in config["general_settings"]


def test_state_absent_removes_the_gateway_and_is_idempotent(kube, tmp_path):
    _secrets(kube)
    assert _converge(kube, tmp_path, litellm_postgres_enabled=True)["failed"] == 0
    assert all(_gateway(kube).values())
    kube.wait_for(lambda: kube.pods(label_selector="app.kubernetes.io/name=litellm", running=True),
                  what="gateway pod running")

    removed = _converge(kube, tmp_path, litellm_state="absent")
    assert removed["failed"] == 0 and removed["changed"] > 0
    assert _gateway(kube) == {"ConfigMap": None, "Deployment": None, "Service": None}
    assert kube.get("StatefulSet", "litellm-postgres", "apps/v1") is None
    assert kube.get("Service", "litellm-postgres") is None
    assert kube.get("PersistentVolumeClaim", "data-litellm-postgres-0") is not None, "absent keeps the data"
    kube.wait_for(lambda: not kube.pods(), what="every pod of the gateway and Postgres deleted")
    assert {s["metadata"]["name"] for s in kube.list("Secret")} >= {"litellm-env", "litellm-postgres"}

    assert _converge(kube, tmp_path, litellm_state="absent")["changed"] == 0
