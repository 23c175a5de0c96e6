"""Run the REAL on-demand swap service (roles/gpu_demand/files/gpu_demand_server.py) for tests, the bench and the demo.

Real: the server and module_utils/gpu_demand.py, run by the LiteLLM venv's Python (the image the lab runs it on:
same litellm/prometheus_client pins, requirements/litellm.txt), the control plane it talks to, and its
authentication: a ServiceAccount token of account gpu-demand (the role's), bound to exactly the swap's least-privilege RBAC
(gpu_swap.rbac_objects), read from a token directory as the kubelet mounts it (kube_client's in-cluster transport).
What differs from the pod: the API server is reached on 127.0.0.1 (KUBERNETES_SERVICE_HOST), the backends' URLs are
the local stand-ins' instead of the Services' cluster DNS names, nvidia-smi is the test's fake script.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_demand as gd
from tests.support.catalog_example import load_example_catalog
from tests.support.litellm_proxy import LiteLLMProxy, gateway_env, litellm_venv, role_base_config, write_gateway_config
from tests.support.serve import ServerProcess, json_request

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "gpu_demand" / "files"
HOOK = REPO / "roles" / "litellm" / "files" / "gpu_demand_hook.py"   # the litellm role mounts it beside the config
TOKEN = "gpu-demand-test-token-0123456789"

CATALOG = load_example_catalog()
ON_DEMAND = ("qwen2.5-7b", "llama3.1-8b")
MODELS = [dict(m, on_demand=True) if m["name"] in ON_DEMAND else dict(m) for m in CATALOG["gpu_lab_models"]]
ROUTES = CATALOG["gpu_lab_routes"]
SWAP = {"lease_duration": 30, "lock_timeout": 1, "delete_timeout": 60, "ready_timeout": 60, "poll_interval": 0.2,
        "verify_timeout": 30, "unload_timeout": 5}


def service_for(kube, lab, workdir, backends, **policy):
    sa_dir, api_env = service_account_dir(kube, workdir)
    config = gd.service_config(MODELS, ROUTES, kube.namespace, backends, swap=SWAP,
                               policy=dict({"poll_interval": 0.2}, **policy),
                               host={"nvidia_smi_path": str(lab.smi), "timeout": 5})
    return DemandService(config, sa_dir, api_env).start()


def service_account_dir(kube, workdir, account="gpu-demand"):
    """Apply the swap's RBAC objects, request a token of ``account`` and lay it out as the kubelet mounts it."""
    from kubernetes import client as k8s  # pylint: disable=import-outside-toplevel
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs  # pylint: disable=import-outside-toplevel

    for obj in gs.rbac_objects(kube.namespace, account=account):
        kube.apply(obj)
    token = k8s.CoreV1Api(kube.client.client).create_namespaced_service_account_token(
        account, kube.namespace, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": 3600}}).status.token
    with open(kube.kubeconfig, encoding="utf-8") as handle:
        cluster = yaml.safe_load(handle)["clusters"][0]["cluster"]
    sa_dir = Path(workdir) / "serviceaccount"
    sa_dir.mkdir(parents=True, exist_ok=True)
    (sa_dir / "token").write_text(token)
    (sa_dir / "namespace").write_text(kube.namespace)
    (sa_dir / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    server = urlsplit(cluster["server"])
    return sa_dir, {"KUBERNETES_SERVICE_HOST": server.hostname, "KUBERNETES_SERVICE_PORT": str(server.port)}


class DemandService(ServerProcess):
    """One service process; ``url``, ``ensure(alias)``, ``status()``, ``metrics()``, ``log()``."""

    name = "gpu-demand"
    log_name = "gpu-demand"
    drop_env = ("KUBE",)
    server_env = {"PYTHONPATH": str(REPO / ".collections"), "NO_PROXY": "*"}
    health_path = "/healthz"
    poll_interval = 0.1

    def __init__(self, config: dict, sa_dir: Path, api_env: dict, token: str = TOKEN):
        self.dir = Path(tempfile.mkdtemp(prefix="gpu-demand-"))
        super().__init__(dict(api_env, GPU_DEMAND_TOKEN=token), startup_timeout=30, log_path=self.dir / "service.log")
        self.config = config
        self.sa_dir = sa_dir
        self.token = token

    def command(self):
        path = self.dir / "config.json"
        path.write_text(json.dumps(self.config))
        shutil.copy(FILES / "gpu_demand_server.py", self.dir / "gpu_demand_server.py")
        return [str(litellm_venv() / "bin" / "python"), str(self.dir / "gpu_demand_server.py"), "--config", str(path),
                "--host", "127.0.0.1", "--port", str(self.port), "--sa-dir", str(self.sa_dir)]

    def request(self, method, path, payload=None, token=None, timeout=180):  # pylint: disable=arguments-renamed
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return json_request(method, self.url + path, payload, headers, timeout)

    def ensure(self, alias, token=TOKEN):
        return self.request("POST", "/v1/ensure", {"model": alias}, token=token)

    def status(self):
        return self.request("GET", "/v1/status")[1]

    def metrics(self):
        return self.request("GET", "/metrics")[1]


def gateway_with_hook(workdir, stand_ins, service):
    """The real LiteLLM proxy with the litellm role's settings plus the hook (as the litellm role adds it when
    gpu_demand is on), the stand-ins as backends."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = role_base_config()
    base["litellm_settings"] = gd.gateway_litellm_settings(base["litellm_settings"])
    config, _ = write_gateway_config(workdir, vllm=stand_ins.vllm, ollama=stand_ins.ollama, cloud=stand_ins.cloud,
                                     models=MODELS, config=base)
    shutil.copy(HOOK, config.parent / gd.HOOK_FILE)
    env = dict(gateway_env(), GPU_DEMAND_URL=service.url, GPU_DEMAND_TOKEN=TOKEN)
    return LiteLLMProxy(config, env=env).start()
