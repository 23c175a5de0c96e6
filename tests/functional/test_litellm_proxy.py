"""Proof against the REAL LiteLLM proxy (litellm[proxy]==1.106.2 from .venv-litellm).

REAL: the LiteLLM proxy process, its config loading, routing, fallbacks, auth, Prometheus
metrics; the config is rendered by our litellm_config code path from the example catalog
with the litellm role's default settings.
EMULATED: the inference servers behind it (tests/support/openai_backend.py: vLLM's OpenAI API,
Ollama's /api/chat and /api/embed, Anthropic's /v1/messages, with canned replies).

A proxy start costs ~8 s of both CPUs, so each test function below is ONE proxy start with
its assertions grouped (one function, not a module fixture: pytest-xdist would split a
module's tests over workers and start the proxy twice).
"""

import time

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as lc
from tests.support.litellm_proxy import (LiteLLMProxy, gateway_env, role_base_config, write_gateway_config)
from tests.support.openai_backend import EMBEDDING_DIM, OpenAIBackend
from tests.support.serve import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def backends():
    vllm = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama = OpenAIBackend("ollama").start()
    cloud = OpenAIBackend("cloud").start()
    yield vllm, ollama, cloud
    for backend in (vllm, ollama, cloud):
        backend.stop()


def _assert_openai_chat(status, body, backend_name, model_sent):
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["id"]
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].startswith("[%s] %s:" % (backend_name, model_sent)), body
    assert body["usage"]["total_tokens"] > 0


def test_example_catalog_served_by_real_proxy(tmp_path, backends):
    vllm, ollama, cloud = backends
    path, built = write_gateway_config(tmp_path, vllm, ollama, cloud)
    assert yaml.safe_load(path.read_text()) == built["config"]

    with LiteLLMProxy(path, env=gateway_env()) as proxy:
        # health endpoints the Deployment's probes use (no auth needed)
        status, body = proxy.get("/health/readiness", auth=False)
        assert status == 200 and body["status"] == "healthy", body
        assert proxy.get("/health/liveliness", auth=False)[0] == 200

        # the master key is enforced: 401, and the backend never sees the request (`prisma` is
        # pinned in requirements/litellm.txt as in LiteLLM's image; without it the auth error
        # handler fails on `import prisma` and answers 500, which this assertion would catch)
        status, body = proxy.chat("qwen2.5-7b", auth=False)
        assert status == 401 and not vllm.requests, (status, body)
        assert body["error"]["type"] == "auth_error" and str(body["error"]["code"]) == "401", body

        # every alias of the catalog is loaded (nothing silently dropped)
        status, body = proxy.get("/v1/models")
        assert status == 200
        assert sorted(m["id"] for m in body["data"]) == sorted(built["models"])

        # a chat completion to each chat alias reaches the right backend with the right name
        _assert_openai_chat(*proxy.chat("qwen2.5-7b"), "vllm", "qwen2.5-7b")
        _assert_openai_chat(*proxy.chat("llama3.1-8b"), "ollama", "llama3.1:8b")
        _assert_openai_chat(*proxy.chat("cloud-fallback"), "cloud", "claude-sonnet-4-5")
        assert vllm.models_requested() == ["qwen2.5-7b"], "vLLM must be called with its served name"
        assert ollama.requests[-1]["path"] == "/api/chat"
        assert cloud.requests[-1]["path"].endswith("/v1/messages")
        assert cloud.requests[-1]["model"] == "claude-sonnet-4-5"

        # embeddings alias (mode: embedding) in OpenAI format
        status, body = proxy.post("/v1/embeddings", {"model": "nomic-embed", "input": ["hello", "world"]})
        assert status == 200, body
        assert body["object"] == "list" and len(body["data"]) == 2
        assert body["data"][0]["object"] == "embedding" and len(body["data"][0]["embedding"]) == EMBEDDING_DIM
        assert ollama.requests[-1]["path"] == "/api/embed" and ollama.requests[-1]["model"] == "nomic-embed-text"

        # streaming: Server-Sent Events in OpenAI chunk format, ending with [DONE]
        status, text = proxy.post("/v1/chat/completions", {
            "model": "qwen2.5-7b", "stream": True, "messages": [{"role": "user", "content": "stream me"}]})
        assert status == 200
        events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [yaml.safe_load(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        streamed = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        assert streamed == "[vllm] qwen2.5-7b: stream me"

        # Prometheus metrics: with the key yes, without it no
        assert proxy.get("/metrics/", auth=False)[0] == 401
        status, metrics = proxy.get("/metrics/")
        assert status == 200
        assert 'litellm_proxy_total_requests_metric_total{' in metrics
        assert 'requested_model="llama3.1-8b"' in metrics
        assert "litellm_request_total_latency_metric" in metrics

        # fallback: the primary (vLLM) is gone -> served by the next alias of the route (Ollama)
        vllm.stop()
        before = len(ollama.requests)
        status, body = proxy.chat("qwen2.5-7b", "are you there?")
        _assert_openai_chat(status, body, "ollama", "llama3.1:8b")
        assert len(ollama.requests) == before + 1
        # a 500 from the primary falls back the same way
        vllm.start()
        vllm.set_failure(500)
        ollama.set_failure(503)
        status, body = proxy.chat("qwen2.5-7b", "and now?")
        _assert_openai_chat(status, body, "cloud", "claude-sonnet-4-5")

        status, body = proxy.get("/health/readiness", auth=False)
        assert status == 200 and body["status"] == "healthy"


def _bad_config(vllm, ollama, cloud, dead_port):
    """A config with several problems LiteLLM accepts at start. Each entry is named after its problem."""
    config = role_base_config()
    config["model_list"] = [
        {"model_name": "good", "litellm_params": {"model": "hosted_vllm/qwen2.5-7b", "api_base": vllm.v1}},
        # no provider prefix
        {"model_name": "no-prefix", "litellm_params": {"model": "qwen2.5-7b", "api_base": vllm.v1}},
        # env var not provided by the litellm-env Secret
        {"model_name": "unset-env", "litellm_params": {"model": "openai/gpt-4o", "api_base": cloud.v1,
                                                       "api_key": "os.environ/OPENAI_KEY"}},
        # duplicate alias: silently load-balanced between two different models
        {"model_name": "dup", "litellm_params": {"model": "hosted_vllm/qwen2.5-7b", "api_base": vllm.v1}},
        {"model_name": "dup", "litellm_params": {"model": "ollama_chat/llama3.1:8b", "api_base": ollama.url}},
        # /v1 on an Ollama base
        {"model_name": "ollama-v1", "litellm_params": {"model": "ollama_chat/llama3.1:8b", "api_base": ollama.v1}},
        # /v1 missing on a vLLM base
        {"model_name": "vllm-no-v1", "litellm_params": {"model": "hosted_vllm/qwen2.5-7b", "api_base": vllm.url}},
        # a dead primary whose fallback is configured under a misspelled key
        {"model_name": "dead", "litellm_params": {"model": "hosted_vllm/qwen2.5-7b",
                                                  "api_base": "http://127.0.0.1:%d/v1" % dead_port}},
    ]
    config["router_settings"] = dict(config["router_settings"], fallback=[{"dead": ["good"]}])
    return config


def test_unvalidated_configs_misbehave_in_real_proxy_and_module_rejects_them(tmp_path, backends):
    vllm, ollama, cloud = backends
    dead_port = free_port()
    config = _bad_config(vllm, ollama, cloud, dead_port)
    provided = ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "ANTHROPIC_API_KEY"]

    # our module rejects it first, naming each entry and the fix
    with pytest.raises(lc.ConfigError) as info:
        lc.build(config, provided_env=provided)
    message = str(info.value)
    for expected in (
            "model_list[1] (model_name 'no-prefix'): litellm_params.model 'qwen2.5-7b' has no provider prefix",
            "model_list[2] (model_name 'unset-env').litellm_params.api_key: references OPENAI_KEY",
            "model_list[4] (model_name 'dup'): duplicate of model_list[3]",
            "model_list[5] (model_name 'ollama-v1'): api_base '%s' ends in /v1" % ollama.v1,
            "model_list[6] (model_name 'vllm-no-v1'): api_base '%s' lacks /v1" % vllm.url,
            "router_settings: key 'fallback' is unknown to LiteLLM, which would silently ignore it "
            "(did you mean 'fallbacks'?)"):
        assert expected in message, "%r not in:\n%s" % (expected, message)

    # the real proxy starts with it anyway, and misbehaves
    path = tmp_path / "unvalidated.yaml"
    path.write_text(yaml.safe_dump(config))
    with LiteLLMProxy(path, env=gateway_env()) as proxy:
        status, body = proxy.get("/v1/models")
        served = sorted(m["id"] for m in body["data"])
        assert "no-prefix" not in served, "LiteLLM silently dropped the model without a provider prefix"
        assert "good" in served

        status, body = proxy.chat("no-prefix")
        assert status == 400 and "no healthy deployments" in str(body)

        # the proxy started fine with an unset os.environ/ variable: every request to it fails
        status, body = proxy.chat("unset-env")
        assert status == 500 and "api_key" in str(body), (status, body)
        assert not cloud.requests

        vllm.reset()
        ollama.reset()
        for _ in range(16):
            assert proxy.chat("dup")[0] == 200
        assert vllm.requests and ollama.requests, "two different models silently load-balanced under one alias"

        ollama.reset()
        status, body = proxy.chat("ollama-v1")
        assert status >= 400, body
        assert all(r["path"] != "/api/chat" for r in ollama.requests)

        vllm.reset()
        status, body = proxy.chat("vllm-no-v1")
        assert status >= 400, body

        status, body = proxy.chat("dead")
        assert status >= 500, "the misspelled 'fallback' key was ignored: no fallback to 'good' (%s)" % body


def test_no_master_key_real_proxy_refuses_to_start_and_module_rejects(tmp_path, backends):
    vllm, _ollama, _cloud = backends
    config = role_base_config()
    config["general_settings"] = {k: v for k, v in config["general_settings"].items() if k != "master_key"}
    config["model_list"] = [{"model_name": "good", "litellm_params": {"model": "hosted_vllm/qwen2.5-7b",
                                                                      "api_base": vllm.v1}}]
    with pytest.raises(lc.ConfigError, match="general_settings.master_key is missing"):
        lc.build(config)

    path = tmp_path / "nokey.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in gateway_env().items() if k != "LITELLM_MASTER_KEY"}
    proxy = LiteLLMProxy(path, env=env)
    proxy.start(wait=False)
    try:
        # It exits while loading the config (seconds alone; minutes on a saturated 2-core machine).
        code = proxy.wait_exited(timeout=300)
    finally:
        proxy.stop()
    assert code not in (None, 0), "LiteLLM kept running without a master key"
    assert "refused to start: no master key" in proxy.log()


def _answered_by(proxy, alias):
    status, body = proxy.chat(alias, "who answers?", timeout=30)
    assert status == 200, body
    text = body["choices"][0]["message"]["content"]
    return text[1:text.index("]")]


def test_self_hosted_model_is_routed_again_after_its_own_short_cooldown(tmp_path, backends):
    """A GPU backend that was down (a swap) is cooled down by LiteLLM; the catalog gives vllm/ollama
    model_info.cooldown_time 5, so it is routed again within seconds, not after the router's 30 s
    (the swap's gateway check waited up to 26 s for this before)."""
    vllm, _ollama, _cloud = backends
    path, built = write_gateway_config(tmp_path, vllm, _ollama, _cloud)
    qwen = next(m for m in built["config"]["model_list"] if m["model_name"] == "qwen2.5-7b")
    assert qwen["model_info"]["cooldown_time"] == 5 and built["config"]["router_settings"]["cooldown_time"] == 30
    with LiteLLMProxy(path, env=gateway_env()) as proxy:
        assert _answered_by(proxy, "qwen2.5-7b") == "vllm"
        vllm.set_failure(503)                          # the backend goes away (scaled to 0 by a swap)
        for _ in range(6):
            assert _answered_by(proxy, "qwen2.5-7b") == "ollama"   # the route's first fallback
        tried = len(vllm.requests)
        assert _answered_by(proxy, "qwen2.5-7b") == "ollama"
        assert len(vllm.requests) == tried, "LiteLLM still tried vllm: it was never cooled down"
        vllm.set_failure(None)                         # the new owner is Ready again
        back = time.monotonic()
        deadline = back + 25                           # the router's 30 s cooldown would still hold here
        while _answered_by(proxy, "qwen2.5-7b") != "vllm":
            assert time.monotonic() < deadline, "vllm not routed again within 25 s: the model's cooldown_time is ignored"
            time.sleep(0.2)
        print(f"\nvllm routed again {time.monotonic() - back:.1f} s after it recovered (model cooldown_time 5 s, "
              "router cooldown_time 30 s)")


def test_embeddings_are_answered_by_the_cpu_ollama_while_the_gpu_ollama_is_stopped(tmp_path, backends):
    """Embeddings on CPU (issue 18): the config the deploy renders sends the catalog's embedding alias to the CPU
    Ollama (Service ollama-embed), so RAG keeps working while the GPU Ollama is scaled to 0 (vLLM or nobody owns
    the GPU). REAL: the LiteLLM proxy and its routing. EMULATED: both Ollamas are tests/support/openai_backend.py
    speaking Ollama's /api/chat and /api/embed; a stopped stand-in refuses connections, as a Service without a
    ready pod does (kube-proxy rejects them)."""
    vllm, gpu_ollama, cloud = backends
    cpu_ollama = OpenAIBackend("ollama-embed").start()
    try:
        path, built = write_gateway_config(tmp_path, vllm, gpu_ollama, cloud, ollama_embed=cpu_ollama)
        bases = dict((m["model_name"], m["litellm_params"]["api_base"]) for m in built["config"]["model_list"]
                     if m["model_name"] in ("nomic-embed", "llama3.1-8b"))
        assert bases == {"nomic-embed": cpu_ollama.url, "llama3.1-8b": gpu_ollama.url}
        with LiteLLMProxy(path, env=gateway_env()) as proxy:
            gpu_ollama.stop()                       # the GPU went to vLLM: the GPU Ollama is scaled to 0
            for text in ("first chunk", "second chunk"):
                status, body = proxy.post("/v1/embeddings", {"model": "nomic-embed", "input": [text]})
                assert status == 200, body
                assert body["data"][0]["embedding"] and body["model"] in ("nomic-embed", "nomic-embed-text"), body
            assert [(r["path"], r["model"]) for r in cpu_ollama.requests] == [("/api/embed", "nomic-embed-text")] * 2
            assert gpu_ollama.requests == []
            # the chat alias on the GPU Ollama is down meanwhile and falls back along its route (to the hosted model)
            _assert_openai_chat(*proxy.chat("llama3.1-8b"), "cloud", "claude-sonnet-4-5")
            assert len(cpu_ollama.requests) == 2, "a chat request reached the CPU Ollama"
    finally:
        cpu_ollama.stop()


def test_the_gateway_refuses_its_pass_through_routes_and_serves_the_allowed_ones(tmp_path):
    """The litellm role's general_settings.allowed_routes, in the real proxy: LiteLLM's pass-through route /vllm/...
    forwarded to vLLM's api_base and put the vLLM stand-in (tests/support/vllm_backend.py, dev mode as with
    vllm_sleep_mode) to sleep with any key (/vllm/..%2Fsleep); with the role's settings it is refused and vLLM stays
    awake, while the OpenAI routes, the metrics and the public health probes are served."""
    from tests.support.vllm_backend import VLLMBackend  # pylint: disable=import-outside-toplevel
    vllm, ollama, cloud = VLLMBackend().start(), OpenAIBackend(name="ollama").start(), OpenAIBackend(name="cloud").start()
    try:
        config, _ = write_gateway_config(tmp_path, vllm=vllm, ollama=ollama, cloud=cloud)
        with LiteLLMProxy(config, env=gateway_env()) as proxy:
            for path in ("/vllm/..%2Fsleep", "/vllm/..%2Fwake_up", "/openai/v1/models", "/anthropic/v1/messages"):
                status, body = proxy.post(path, {"model": "qwen2.5-7b"})
                assert status == 403 and "not allowed" in str(body), (path, status, body)
            assert not [r for r in vllm.requests if "sleep" in r["path"] or "wake" in r["path"]], vllm.requests
            status, body = proxy.chat("qwen2.5-7b", "still awake?")
            assert status == 200 and body["choices"][0]["message"]["content"].startswith("[vllm]"), body
            assert proxy.get("/v1/models")[0] == 200 and proxy.get("/metrics/")[0] == 200
            assert proxy.post("/v1/embeddings", {"model": "nomic-embed", "input": "x"})[0] == 200
            assert proxy.get("/health/liveliness", auth=False)[0] == 200
    finally:
        for backend in (vllm, ollama, cloud):
            backend.stop()
