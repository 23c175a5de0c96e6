"""Embeddings on CPU (issue 18): the catalog's Ollama embedding models are served by a second Ollama, Deployment and
Service ``ollama-embed``, that requests no GPU, always runs and is never touched by a GPU swap; the gateway routes
the embedding aliases there and deploy pulls them there, chat models to the GPU Ollama.

REAL: ansible-playbook with the deploy and gpu_swap playbooks and their roles, the kube-apiserver (server-side
apply, the Deployments' and ReplicaSets' controllers, the scheduler), the rendered objects. EMULATED: the kubelet
(kwok: pods become Running and Ready, no container runs, so nothing here shows that Ollama really stays on the CPU:
that rests on the env the test checks, CUDA_VISIBLE_DEVICES=-1 and NVIDIA_VISIBLE_DEVICES=void, and on the pod
requesting no GPU); both Ollama servers are tests/support/ollama_server.py (Ollama's pull and tags API) on this
machine, reached through ollama_pull_url / ollama_embed_pull_url instead of the Services' ClusterIPs; nvidia-smi
(the swap's host check) is a script printing NVIDIA's layout (tests/support/gpu_swap_lab.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO, run_playbook
from tests.functional.test_deploy_apply import _inventory
from tests.functional.test_deploy_playbook import _objects
from tests.support.gpu_swap_lab import Lab
from tests.support.kube_ns import fingerprint
from tests.support.ollama_server import OllamaServer

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
EXAMPLE = yaml.safe_load((Path(REPO) / "inventory" / "example" / "group_vars" / "gpu_lab" / "models.yml").read_text())
GPU_KEYS = ("nvidia.com/gpu",)


def _container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _env(container):
    return dict((e["name"], e.get("value")) for e in container.get("env", []))


def _assert_cpu_only(deployment):
    """What keeps the embedding Ollama off the GPU, in the object the cluster runs."""
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    resources = container["resources"]
    assert not any(key in resources.get(part, {}) for part in ("requests", "limits") for key in GPU_KEYS), resources
    assert "runtimeClassName" not in pod and "nvidia.com/gpu.present" not in pod.get("nodeSelector", {}), pod
    env = _env(container)
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and env["NVIDIA_VISIBLE_DEVICES"] == "void", env
    assert deployment["spec"]["replicas"] == 1


def _pulled(server):
    return [body["model"] for method, path, body in server.requests if path == "/api/pull"]


def test_render_serves_embeddings_from_the_cpu_ollama_only_while_the_catalog_has_some(tmp_path, playbook_runner):
    """Render mode, no cluster: the example lab (nomic-embed) gets ollama-embed whatever the GPU owner is, with its own
    PVC (backup tier label) and the gateway's embedding alias on it; a catalog without embedding models gets none."""
    render = tmp_path / "with"
    playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                    "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=none")
    objs = _objects(render)
    assert objs[("Deployment", "ollama")]["spec"]["replicas"] == 0   # the GPU is nobody's ...
    embed = objs[("Deployment", "ollama-embed")]
    _assert_cpu_only(embed)                                            # ... embeddings still run
    volume = embed["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert volume == "ollama-embed-models" != objs[("Deployment", "ollama")]["spec"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"]["claimName"]
    assert objs[("PersistentVolumeClaim", volume)]["metadata"]["labels"]["backup-tier"] == "daily"
    assert _container(embed)["image"] == _container(objs[("Deployment", "ollama")])["image"]   # the image the lab pulls
    config = yaml.safe_load((render / "k8s" / "litellm" / "config.yaml").read_text())
    bases = dict((m["model_name"], m["litellm_params"].get("api_base")) for m in config["model_list"])
    assert bases["nomic-embed"] == "http://ollama-embed.ai-lab.svc.cluster.local:11434"
    assert bases["llama3.1-8b"] == "http://ollama.ai-lab.svc.cluster.local:11434"

    render = tmp_path / "without"
    chat_only = [m for m in EXAMPLE["gpu_lab_models"] if m.get("mode") != "embedding"]
    routes = dict((k, [a for a in v if a != "nomic-embed"]) for k, v in EXAMPLE["gpu_lab_routes"].items())
    playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                    "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=none",
                    "-e", json.dumps({"gpu_lab_models": chat_only, "gpu_lab_routes": routes,
                                      "open_webui_embedding_model": "", "qdrant_collections": []}))
    # (its NetworkPolicy stays: it selects no pod then)
    assert [key for key in _objects(render) if key[1].startswith("ollama-embed")] == [("NetworkPolicy", "ollama-embed")]


def test_deploy_pulls_embeddings_into_the_cpu_ollama_and_no_swap_touches_it(kube, tmp_path):
    """Against the real control plane: with vLLM owning the GPU (the GPU Ollama at 0 replicas) the embedding model is
    pulled into the CPU Ollama and the CPU Ollama runs; two swaps (to ollama, then to none) leave its Deployment and
    pod as they were; the next deploy pulls the chat model into the GPU Ollama and nothing more into the CPU one."""
    with OllamaServer(registry={"llama3.1:8b": 1048576, "nomic-embed-text": 262144}) as gpu, \
            OllamaServer(registry={"llama3.1:8b": 1048576, "nomic-embed-text": 262144}) as cpu:
        inventory = _inventory(tmp_path, kube, gpu_lab_gpu_owner="vllm:qwen2.5-7b", ollama_pull_enabled=True,
                               ollama_wait=True, ollama_pull_url=gpu.url, ollama_embed_pull_url=cpu.url)
        run_playbook(PLAYBOOK, "-i", inventory, timeout=900)
        embed = kube.get("Deployment", "ollama-embed", api_version="apps/v1")
        _assert_cpu_only(embed)
        assert embed["status"].get("readyReplicas") == 1                      # deploy waited for it
        assert kube.get("Deployment", "ollama", api_version="apps/v1")["spec"]["replicas"] == 0
        assert _pulled(cpu) == ["nomic-embed-text:latest"] and _pulled(gpu) == []    # the GPU Ollama is not running
        config = yaml.safe_load(kube.get("ConfigMap", "litellm-config")["data"]["config.yaml"])
        bases = dict((m["model_name"], m["litellm_params"]["api_base"]) for m in config["model_list"]
                     if m["model_name"] in ("nomic-embed", "llama3.1-8b"))
        assert bases == {"nomic-embed": f"http://ollama-embed.{kube.namespace}.svc.cluster.local:11434",
                         "llama3.1-8b": f"http://ollama.{kube.namespace}.svc.cluster.local:11434"}

        (tmp_path / "swap").mkdir()
        # the pulls' one read of both Services (on a lab, their ClusterIPs; here the stand-ins' URLs were given)
        selector = yaml.safe_load((Path(REPO) / "roles" / "ollama" / "vars" / "main.yml").read_text())[
            "_ollama_services_selector"]
        play = tmp_path / "services.yml"
        play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
            {"ansible.builtin.assert": {"that": [
                f"query('ailab.gpu_lab.kube_objects', kind='Service', namespace='{kube.namespace}', "
                f"label_selector='{selector}', kubeconfig='{kube.kubeconfig}') | map(attribute='metadata.name') | sort"
                " == ['ollama', 'ollama-embed']"]}}]}]))
        run_playbook(play, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}")

        lab = Lab(kube, tmp_path / "swap", owner="vllm", record=False)   # the objects are deploy's; the swap's inventory

        def embed_state():
            dep = kube.get("Deployment", "ollama-embed", api_version="apps/v1")
            pods = sorted(p["metadata"]["name"] for p in kube.pods(label_selector="app.kubernetes.io/name=ollama-embed")
                          if not p["metadata"].get("deletionTimestamp"))
            return fingerprint(dep), pods, (dep.get("status") or {}).get("readyReplicas")

        before = embed_state()
        for target in ("ollama", "none"):
            started = time.monotonic()
            lab.swap(target)
            assert embed_state() == before, f"the swap to {target} changed the CPU Ollama"
            print(f"\nswap to {target}: {time.monotonic() - started:.1f} s, CPU Ollama untouched")
            if target == "ollama":
                run_playbook(PLAYBOOK, "-i", inventory, timeout=900)
                assert _pulled(gpu) == ["llama3.1:8b"], gpu.requests          # chat models to the GPU Ollama
                assert _pulled(cpu) == ["nomic-embed-text:latest"], cpu.requests      # already there: not pulled again
                assert embed_state() == before


def test_bad_embedding_ollama_input_fails_first_naming_each_variable(tmp_path, playbook_runner):
    """The CPU Ollama's inputs join deploy's early check (sizes, backup tiers, the role's argument spec, the registry's
    ports): every problem named, before anything is rendered or a cluster contacted. (A bad port is run apart:
    ansible-core 2.17 resolves the registry while it checks the roles' specs, and stops at the port first.)"""
    kubeconfig = str(tmp_path / "no-such-kubeconfig")
    for extra, lines in (
            ({"ollama_embed_storage_size": "10GB", "ollama_embed_backup_tier": "weekly", "ollama_embed_tolerations": "x"},
             ("ollama_embed_storage_size: '10GB' is not a Kubernetes quantity",
              "ollama_embed_backup_tier: 'weekly' is not a backup tier", "option 'ollama_embed_tolerations' is of type")),
            ({"ollama_embed_port": 70000}, ("ollama_embed_port: 70000 is not a port number 1-65535",))):
        proc = playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", json.dumps(dict(extra, gpu_lab_kubeconfig=kubeconfig)),
                               check=False)
        assert proc.returncode != 0 and "failed=1" in proc.stdout
        for line in lines:
            assert line in proc.stdout, (line, proc.stdout[-3000:])
        assert "Declare the objects of Ollama" not in proc.stdout
