"""No secret of the lab reaches the output of the secrets, deploy and gpu_swap playbooks, even at -vvv.

One lab, its three playbooks in the order a user runs them, each at -vvv (Ansible then prints every
module's arguments and result, and each loop item): the secrets playbook (from a .env), the deploy
playbook (every default component and searxng, the Qdrant collections step, the Ollama pulls, the vLLM weights from a
private Hugging Face repo that needs the token), a gpu_swap ollama -> vllm whose gateway check reads the
LiteLLM master key from its Secret, and a deploy of Qdrant that fails because Qdrant refuses the key
(the failure must still say what went wrong, without the key). The whole output of each run (stdout and
stderr) is searched for every secret value of the lab: each value of the .env, each value the secrets
playbook generated (read back from the Secrets), the Hugging Face token, the Qdrant key, and the base64
form of each.

REAL: ansible-playbook, the roles and modules, python-dotenv, huggingface_hub (a real snapshot download
with the token), the Kubernetes API (the control plane of the ``kube`` fixture; kwok plays the kubelet,
no container runs). EMULATED (tests/support): the Qdrant API (qdrant_server.py, checking the api-key
header), the Ollama API (ollama_server.py), the Hugging Face Hub (hf_server.py, a private repo answering
401 without the token), the gateway (openai_backend.py, recording the Authorization header), nvidia-smi.
"""

from __future__ import annotations

import base64
import re
import time

from tests.conftest import REPO, run_playbook
from tests.support.gpu_swap_lab import Lab, recap
from tests.support.hf_server import HFServer, tiny_model_files
from tests.support.ollama_server import OllamaServer
from tests.support.openai_backend import OpenAIBackend
from tests.support.qdrant_server import QdrantServer
from tests.support.secrets_fixtures import GOOD_ENV, all_secret_values, env_text, write_env

SECRETS = f"{REPO}/playbooks/secrets.yml"
DEPLOY = f"{REPO}/playbooks/deploy.yml"
PRIVATE_REPO = "ailab-test/private-tiny"


def _catalog(revision):
    models = [
        {"name": "tiny-vllm", "backend": "vllm", "source": PRIVATE_REPO, "revision": revision},
        {"name": "tiny-chat", "backend": "ollama", "source": "tiny:1b"},
        {"name": "nomic-embed", "backend": "ollama", "source": "nomic-embed-text", "mode": "embedding",
         "dimensions": 768},
        {"name": "cloud-fallback", "backend": "anthropic", "source": "claude-sonnet-4-5",
         "api_key_env": "ANTHROPIC_API_KEY"},
        {"name": "gpt", "backend": "openai", "source": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
    ]
    return models, {"tiny-chat": ["cloud-fallback"]}


def _forms(labelled):
    """value -> what it is  =>  each value and its base64 form (how a Secret's data holds it) -> what it is."""
    forms = {}
    for value, label in labelled.items():
        forms[value] = label
        forms[base64.b64encode(value.encode()).decode()] = "base64 of " + label
    return forms


def test_no_secret_value_in_the_vvv_output_of_secrets_deploy_and_gpu_swap(kube, tmp_path):
    monitoring = f"{kube.namespace}-mon"
    kube.other_namespaces.append(monitoring)
    hf_token = GOOD_ENV["HF_TOKEN"]
    with HFServer(token=hf_token) as hub, \
            OllamaServer(registry={"tiny:1b": 1048576, "nomic-embed-text": 262144}) as ollama, \
            OpenAIBackend(name="gateway-stand-in") as gateway:
        revision = hub.add_repo(PRIVATE_REPO, [tiny_model_files(0)], private=True).order[0]
        models, routes = _catalog(revision)
        lab = Lab(kube, tmp_path, models=models, routes=routes, record=False)
        cache = tmp_path / "models" / "hub"
        lab.vars = {
            "gpu_lab_env_file": write_env(str(tmp_path / "lab.env"), env_text(GOOD_ENV)),
            "gpu_lab_monitoring_namespace": monitoring, "secrets_grafana_namespace": monitoring,
            "gpu_lab_gpu_owner": "ollama", "gpu_lab_gpu_node": "gpu-box",
            "gpu_lab_components": {"searxng": True},   # its generated SEARXNG_SECRET is searched for too
            "gpu_lab_tailnet_ip": "100.101.102.103", "gpu_lab_tailnet_name": "gpu-box.tail1234.ts.net",
            "ingress_tls_source": "existing",
            "qdrant_collections": [{"name": "docs", "vector_size": 768},
                                   {"name": "notes", "vector_size": 384, "embedding_model": ""}],
            "ollama_pull_url": ollama.url, "ollama_embed_pull_url": ollama.url,   # one stand-in for both Ollamas
            "vllm_hf_endpoint": hub.url, "vllm_hf_token": hf_token, "vllm_pull_cache_dir": str(cache),
            "vllm_pull_become": False,
            "gpu_swap_verify_gateway": True, "gpu_swap_gateway_url": gateway.url, "gpu_swap_gateway_timeout": 30,
            "gpu_swap_vllm_pull": True, "gpu_swap_vllm_pull_become": False, "gpu_swap_vllm_cache_dir": str(cache),
            "gpu_swap_hf_endpoint": hub.url,
        }
        outputs, seconds = {}, {}

        def run(name, runner):
            started = time.monotonic()
            outputs[name] = runner().stdout
            seconds[name] = round(time.monotonic() - started, 1)
            return outputs[name]

        run("secrets", lambda: run_playbook(SECRETS, "-i", lab.inventory(), "-vvv", "--diff"))
        lab_secrets = kube.secrets()
        qdrant_key = lab_secrets["qdrant-api-key"]["QDRANT__SERVICE__API_KEY"]
        master_key = lab_secrets["litellm-env"]["LITELLM_MASTER_KEY"]
        with QdrantServer(api_key=qdrant_key, collections={"notes": {"size": 384, "distance": "Cosine"}}) as qdrant:
            lab.vars["qdrant_api_url"] = qdrant.url
            run("deploy", lambda: run_playbook(DEPLOY, "-i", lab.inventory(), "-vvv", timeout=1200))
            run("gpu_swap", lambda: lab.swap("vllm:tiny-vllm", "-vvv"))
            # Qdrant refuses the key: the failure names the collection and the status, not the key.
            qdrant.api_key = "not-the-lab-key"
            refused = run("deploy --tags qdrant, key refused", lambda: run_playbook(
                DEPLOY, "-i", lab.inventory(), "-vvv", "--tags", "qdrant", check=False))
        pulled = [body["model"] for method, path, body in ollama.requests if path == "/api/pull"]
        asked = list(gateway.requests)

    # every secret path really ran
    # -vvv names the module file it sends (with ansible.cfg's pipelining, no AnsiballZ file is written on the host)
    assert recap(outputs["secrets"])["changed"] >= 1 and re.search(
        r"Using module file \S+/plugins/modules/lab_secrets\.py", outputs["secrets"])
    assert ("PUT", "/collections/docs") in qdrant.requests and ("PUT", "/collections/notes") not in qdrant.requests
    assert sorted(pulled) == ["nomic-embed-text:latest", "tiny:1b"], ollama.requests
    assert list((cache / f"models--{PRIVATE_REPO.replace('/', '--')}" / "snapshots").iterdir()), "no HF download"
    assert asked and asked[-1]["authorization"] == f"Bearer {master_key}", "the gateway check did not use the Secret"
    assert lab.state().get("owner") == "vllm" and lab.state().get("model") == "tiny-vllm"
    assert "collection docs, notes: HTTP 401 (Must provide an API key" in refused, refused[-3000:]   # one listing for both
    assert "failed=1" in refused

    # Every value, named by where it lives (a failure names the secret, never shows any of it).
    labelled = {value: f".env {key}" for key, value in GOOD_ENV.items()}
    for namespace in (kube.namespace, monitoring):
        for secret, data in kube.secrets(namespace).items():
            for key, value in data.items():
                if key != "admin-user":
                    labelled.setdefault(value, f"Secret {secret} key {key} (read back)")
    assert {qdrant_key, master_key, hf_token, lab_secrets["searxng-secret"]["SEARXNG_SECRET"]} <= set(labelled)
    assert all_secret_values(kube) <= set(labelled)
    generated = [label for label in labelled.values() if label.endswith("(read back)")]
    assert len(generated) >= 4, generated  # master and salt keys, Qdrant key, Open WebUI secret
    forms = _forms(labelled)
    leaks = sorted({(run_name, label) for run_name, text in outputs.items() for form, label in forms.items()
                    if form in text})
    assert not leaks, f"secret values in the -vvv output (run, which secret): {leaks}"
    print(f"\n-vvv runs (seconds): {seconds}; {len(labelled)} secret values, {len(forms)} forms searched in "
          f"{sum(len(t) for t in outputs.values())} characters of output")
