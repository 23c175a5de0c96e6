"""Llama Stack (component llama_stack) answers through the lab's gateway: a model list and a chat answer.

REAL: Llama Stack 0.2.12 (the pinned llama-stack from PyPI, .venv-llama-stack; tests/support/llama_stack.py) started
with the run.yaml of the ConfigMap and the env of the Deployment the llama_stack role renders (the role run by the real
ansible-playbook in its rendered state, read back, not retyped); the LiteLLM proxy (.venv-litellm) with the gateway
config our litellm_config code path renders from the example catalog and the role's defaults, its custom_auth hook,
and the key list of the litellm Deployment the litellm role renders with the component on (LAB_KEYS, and Llama Stack's
own key in LITELLM_KEY_LLAMA_STACK from Secret litellm-key-llama-stack).
EMULATED: the model servers behind the gateway (tests/support/openai_backend.py: vLLM's and Ollama's HTTP APIs; each
answer names the backend and the model name the gateway sent it, which only the gateway knows: Llama Stack sends the
alias); Qdrant (tests/support/qdrant_server.py) for the vector IO check, which never gets as far as calling it; the
Secrets (each secretKeyRef gets the value the test chose).
NOT RUN: the container image (docker.io/llamastack/distribution-remote-vllm:0.2.12, the same release), Llama Stack
inserting into or querying Qdrant (0.2.12 refuses remote::qdrant at start: the last test proves it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import deploy_lab_inventory, recap
from tests.support.catalog_example import load_example_catalog
from tests.support.deploy_render import render_roles
from tests.support.litellm_proxy import LiteLLMProxy, gateway_env, write_gateway_config
from tests.support.llama_stack import LlamaStack, container, pod_env, rendered, run_yaml
from tests.support.openai_backend import OpenAIBackend
from tests.support.qdrant_server import QdrantServer
from tests.support.serve import free_port

pytestmark = pytest.mark.slow

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
LLAMA_STACK_KEY = "sk-llama-stack-test-0123456789abcdefghij"   # Secret litellm-key-llama-stack
QDRANT_KEY = "qdrant-llama-stack-test-key"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The stand-in backends, the real gateway (the litellm role's keys with the component on) and the rendered
    objects of both roles."""
    tmp = tmp_path_factory.mktemp("llama-stack")
    objects = rendered(tmp / "render", ["litellm", "llama_stack"],
                       {"litellm_llama_stack_enabled": True, "llama_stack_port": free_port()})
    gateway = {e["name"]: e for e in container(objects, "Deployment", "litellm", "litellm")["env"]}
    ref = gateway["LITELLM_KEY_LLAMA_STACK"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("litellm-key-llama-stack", "api-key")
    vllm = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama, cloud = OpenAIBackend("ollama").start(), OpenAIBackend("cloud").start()
    env = dict(gateway_env(), LAB_KEYS=gateway["LAB_KEYS"]["value"], LITELLM_KEY_LLAMA_STACK=LLAMA_STACK_KEY)
    try:
        config, _ = write_gateway_config(tmp, vllm, ollama, cloud)
        with LiteLLMProxy(config, env=env) as proxy:
            yield {"objects": objects, "proxy": proxy, "vllm": vllm, "ollama": ollama, "tmp": tmp}
    finally:
        for backend in (vllm, ollama, cloud):
            backend.stop()


def _server(lab, name, key=LLAMA_STACK_KEY, objects=None, services=None, secrets=None):
    objects = objects or lab["objects"]
    args = container(objects, "Deployment", "llama-stack", "llama-stack")["args"]
    workdir = lab["tmp"] / name
    workdir.mkdir()
    env = pod_env(objects, dict({"litellm": lab["proxy"].url}, **(services or {})),
                  dict({"LAB_GATEWAY_KEY": key}, **(secrets or {})), workdir / "data")
    (workdir / "data").mkdir()
    return LlamaStack(run_yaml(objects), env, port=int(args[args.index("--port") + 1]), workdir=workdir)


def test_llama_stack_lists_the_catalog_and_answers_through_the_gateway_with_its_own_key(lab):
    catalog = load_example_catalog()["gpu_lab_models"]
    chat = [m["name"] for m in catalog if m.get("mode", "chat") == "chat"]
    embedding = {m["name"]: m["dimensions"] for m in catalog if m.get("mode") == "embedding" and "dimensions" in m}
    source = {m["name"]: m["source"] for m in catalog}
    config = run_yaml(lab["objects"])
    assert "sk-" not in config and "litellm" not in config   # no key, no address: both come from the pod's env
    with _server(lab, "main") as server:
        status, models = server.get("/v1/models")
        assert status == 200, models
        # each model was checked against the gateway's /v1/models (with Llama Stack's key) when the server started
        listed = {m["identifier"]: m for m in models["data"]}
        assert sorted(listed) == sorted(chat + list(embedding))
        assert {m["provider_id"] for m in listed.values()} == {"gateway"}
        assert [n for n in chat if listed[n]["model_type"] == "llm"] == chat
        assert {n: listed[n]["metadata"]["embedding_dimension"] for n in embedding} == embedding

        # Llama Stack's own API: the alias reaches the GPU Ollama as the catalog's source tag, chosen by the gateway
        asked = len(lab["ollama"].requests)
        status, body = server.post("/v1/inference/chat-completion",
                                   {"model_id": "llama3.1-8b", "messages": [{"role": "user", "content": "why is the sky blue"}]})
        assert status == 200, body
        assert body["completion_message"]["content"] == "[ollama] %s: why is the sky blue" % source["llama3.1-8b"]
        assert [r["model"] for r in lab["ollama"].requests[asked:]] == [source["llama3.1-8b"]]

        # its OpenAI-compatible API: the vLLM alias reaches the vLLM stand-in by its served name
        status, body = server.post("/v1/openai/v1/chat/completions",
                                   {"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "and the sea"}]})
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == "[vllm] qwen2.5-7b: and the sea"
    # not the master key: the gateway counted the requests under Llama Stack's own key (the one the litellm Deployment
    # reads from Secret litellm-key-llama-stack); a key it does not admit is refused (next test)
    status, metrics = lab["proxy"].get("/metrics/")
    assert status == 200
    ours = [m for m in metrics.splitlines() if m.startswith("litellm_proxy_total_requests_metric_total{")
            and 'api_key_alias="llama-stack"' in m and 'status_code="200"' in m]
    assert {m.split('requested_model="')[1].split('"')[0] for m in ours} >= {"llama3.1-8b", "qwen2.5-7b"}, ours
    assert LLAMA_STACK_KEY not in lab["proxy"].log() and LLAMA_STACK_KEY not in server.log()


def test_llama_stack_does_not_start_with_a_key_the_gateway_does_not_admit(lab):
    """remote::vllm checks each model against the gateway's /v1/models at start: a wrong key is a 401 there."""
    server = _server(lab, "wrong-key", key="sk-not-a-lab-key-0123456789abcdef").start(wait=False)
    try:
        code = server.wait_exited(120)
    finally:
        server.stop()
    assert code not in (None, 0), server.log()[-3000:]
    assert "401" in server.log() and "Authentication Error" in server.log(), server.log()[-3000:]


def test_qdrant_vector_io_is_refused_by_the_pinned_release_and_by_the_role_with_its_image(lab):
    """The role renders remote::qdrant on the lab's Qdrant (URL and key from the pod's env) when
    llama_stack_qdrant_enabled, and refuses that with the pinned image: 0.2.12 does not start with the provider
    (a method signature of remote::qdrant that upstream fixed after 0.2.12, meta-llama/llama-stack#2503). When the
    pin moves past it this test fails: turn the component's vector IO on and test it here against Qdrant."""
    tmp = lab["tmp"]
    output = render_roles(tmp / "refused", ["llama_stack"], {"llama_stack_qdrant_enabled": True}, expect_failure=True)
    assert "llama_stack_qdrant_enabled: true needs an image built from a llama-stack release after 0.2.12" in output
    assert "llama_stack_image is docker.io/llamastack/distribution-remote-vllm:0.2.12" in output

    objects = rendered(tmp / "render-qdrant", ["llama_stack"], {"llama_stack_qdrant_enabled": True,
                                                         "llama_stack_image": "registry.lab/llama-stack-qdrant:0.2.13",
                                                         "llama_stack_port": free_port()})
    config = run_yaml(objects)
    assert "remote::qdrant" in config and QDRANT_KEY not in config
    qdrant = QdrantServer(api_key=QDRANT_KEY).start()
    try:
        server = _server(lab, "qdrant", objects=objects, services={"qdrant": qdrant.url},
                         secrets={"QDRANT_API_KEY": QDRANT_KEY}).start(wait=False)
        try:
            code = server.wait_exited(120)
        finally:
            server.stop()
    finally:
        qdrant.stop()
    assert code not in (None, 0), server.log()[-3000:]
    assert "Provider `qdrant (Api.vector_io)` does not implement the following methods" in server.log()
    assert "openai_list_files_in_vector_store" in server.log()


def _deploy_inventory(tmp_path, kube, llama_stack):
    off = ("observability", "ingress", "open_webui", "qdrant")
    return deploy_lab_inventory(tmp_path, kube, dict({name: False for name in off}, llama_stack=llama_stack),
                                load_example_catalog())


def test_deploy_applies_the_component_idempotently_and_prunes_it_when_turned_off(kube, tmp_path):
    """REAL: the deploy playbook with the one apply against the real kube-apiserver (kwok plays the kubelet: no
    container runs). Check mode writes nothing; the applied run.yaml is the render's; the gateway reads Llama Stack's
    key from its Secret; a second run changes nothing; turned off, its objects are pruned and its PVC kept."""
    inventory = _deploy_inventory(tmp_path, kube, True)
    checked = run_playbook(PLAYBOOK, "-i", inventory, "--check", "--diff")
    assert recap(checked.stdout)[1] == 0 and "llama-stack-config" in checked.stdout
    assert kube.get("ConfigMap", "llama-stack-config") is None
    run_playbook(PLAYBOOK, "-i", inventory)
    run = yaml.safe_load(kube.get("ConfigMap", "llama-stack-config")["data"]["run.yaml"])
    assert [(p["provider_type"], p["config"]["url"]) for p in run["providers"]["inference"]] == [
        ("remote::vllm", "${env.LAB_GATEWAY_URL}")]
    assert [m["model_id"] for m in run["models"]] == [m["name"] for m in load_example_catalog()["gpu_lab_models"]
                                                      if m.get("mode", "chat") == "chat" or "dimensions" in m]
    pod = kube.get("Deployment", "llama-stack", api_version="apps/v1")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LAB_GATEWAY_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "litellm-key-llama-stack", "key": "api-key"}
    gateway = kube.get("Deployment", "litellm", api_version="apps/v1")["spec"]["template"]["spec"]["containers"][0]
    keys = {e["name"]: e for e in gateway["env"]}
    assert keys["LITELLM_KEY_LLAMA_STACK"]["valueFrom"]["secretKeyRef"]["name"] == "litellm-key-llama-stack"
    assert "llama-stack" in [k["name"] for k in json.loads(keys["LAB_KEYS"]["value"])]
    assert kube.get("NetworkPolicy", "llama-stack", api_version="networking.k8s.io/v1")
    again = run_playbook(PLAYBOOK, "-i", inventory)
    assert recap(again.stdout) == (0, 0), again.stdout[-4000:]

    off = run_playbook(PLAYBOOK, "-i", _deploy_inventory(tmp_path, kube, False))
    assert recap(off.stdout)[1] == 0
    for kind, name, api in (("ConfigMap", "llama-stack-config", "v1"), ("Deployment", "llama-stack", "apps/v1"),
                            ("Service", "llama-stack", "v1"),
                            ("NetworkPolicy", "llama-stack", "networking.k8s.io/v1")):
        assert kube.get(kind, name, api_version=api) is None, (kind, name)
    assert kube.get("PersistentVolumeClaim", "llama-stack-data") is not None
    gateway = kube.get("Deployment", "litellm", api_version="apps/v1")["spec"]["template"]["spec"]["containers"][0]
    assert "LITELLM_KEY_LLAMA_STACK" not in [e["name"] for e in gateway["env"]]
