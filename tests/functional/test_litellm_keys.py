"""A key per person or app (docs/litellm.md "Keys"), against the REAL LiteLLM proxy with the official OpenAI SDK.

REAL: the LiteLLM proxy (litellm[proxy]==1.106.2 from .venv-litellm) with the config our litellm_config code path
renders from the example catalog and the litellm role's defaults (custom_auth: the role's own
roles/litellm/files/lab_keys_auth.py beside the config, as the role mounts it), its auth, model-access checks and
rate limiter; the client is the official `openai` SDK (requirements/dev.txt).
EMULATED: the model servers (tests/support/openai_backend.py), and the Secrets: the env the role's Deployment gives the
proxy (LAB_KEYS and LITELLM_KEY_<NAME>, shape proved in test_litellm_playbook.py) is set here directly.
"""

import json

import openai
import pytest
import requests

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
from tests.support.litellm_proxy import LiteLLMProxy, MASTER_KEY, gateway_env, role_base_config, write_gateway_config
from tests.support.openai_backend import OpenAIBackend

pytestmark = pytest.mark.slow

OPEN_WEBUI = "sk-openwebui-test-0123456789abcdefghij"
ALICE = "sk-alice-test-0123456789abcdefghijklmn"
BOB = "sk-bob-revoked-0123456789abcdefghijklm"     # his entry was removed from litellm_keys: revoked


def _client(proxy, key):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _chat(client, model):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_keys_are_admitted_held_to_their_models_and_rates_and_wrong_keys_get_401(tmp_path):
    vllm = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama, cloud = OpenAIBackend("ollama").start(), OpenAIBackend("cloud").start()
    keys = [{"name": "open-webui", "models": [], "rpm": None, "tpm": None},
            {"name": "alice", "models": ["qwen2.5-7b"], "rpm": 2, "tpm": None},
            {"name": "ci-bot", "models": [], "rpm": None, "tpm": None}]        # its Secret is empty: never admitted
    env = dict(gateway_env(), LAB_KEYS=json.dumps(keys))
    for name, value in (("open-webui", OPEN_WEBUI), ("alice", ALICE), ("ci-bot", ""), ("bob", BOB)):
        env[ds.litellm_key_secret(name)[2]] = value
    try:
        config, _ = write_gateway_config(tmp_path, vllm, ollama, cloud)
        with LiteLLMProxy(config, env=env) as proxy:
            # a wrong, a revoked and an empty key: 401 with LiteLLM's message (the issue saw 400 "No connected db.")
            for key in ("sk-mistyped-0123456789", BOB):
                with pytest.raises(openai.AuthenticationError) as err:
                    _chat(_client(proxy, key), "qwen2.5-7b")
                assert err.value.status_code == 401, err.value
                assert "Invalid proxy server token passed" in str(err.value.body), err.value.body
            status = requests.post(proxy.url + "/v1/chat/completions", headers={"Authorization": "Bearer "},
                                   json={"model": "qwen2.5-7b", "messages": []}, timeout=30).status_code
            assert status == 401
            assert proxy.get("/health/liveliness", auth=False)[0] == 200     # the probes need no key
            assert not vllm.requests, vllm.requests

            # the master key is still admitted, as the admin
            assert _chat(_client(proxy, MASTER_KEY), "qwen2.5-7b").choices[0].message.content.startswith("[vllm]")

            # Open WebUI's key: every alias, inference only (no metrics, no key management)
            owui = _client(proxy, OPEN_WEBUI)
            assert {m.id for m in owui.models.list()} >= {"qwen2.5-7b", "nomic-embed"}
            assert _chat(owui, "qwen2.5-7b").choices[0].message.content.startswith("[vllm]")
            assert len(owui.embeddings.create(model="nomic-embed", input="x").data[0].embedding) > 0
            headers = {"Authorization": "Bearer " + OPEN_WEBUI}
            assert requests.get(proxy.url + "/metrics/", headers=headers, timeout=30).status_code == 401
            assert requests.post(proxy.url + "/key/generate", headers=headers, json={},
                                 timeout=30).status_code == 403

            # alice: only her model (the list shows only it), 2 requests a minute
            alice = _client(proxy, ALICE)
            assert [m.id for m in alice.models.list()] == ["qwen2.5-7b"]
            # ... and a key reads the model info clients need (supports_vision, mode) from the allowed route
            info = requests.get(proxy.url + "/model_group/info", headers={"Authorization": "Bearer " + ALICE},
                                timeout=30)
            assert info.status_code == 200, info.text
            groups = {g["model_group"]: g for g in info.json()["data"]}
            assert groups["qwen2.5-7b"]["supports_vision"] is False, groups
            assert "api_base" not in info.text and "os.environ" not in info.text, info.text
            with pytest.raises(openai.PermissionDeniedError) as err:
                _chat(alice, "nomic-embed")
            assert "not available for this API key" in str(err.value.body), err.value.body
            _chat(alice, "qwen2.5-7b")
            with pytest.raises(openai.RateLimitError) as err:
                _chat(alice, "qwen2.5-7b")
                _chat(alice, "qwen2.5-7b")
            assert "Rate limit exceeded" in str(err.value.body), err.value.body
            assert "Limit type: requests. Current limit: 2" in str(err.value.body), err.value.body
            # the person Open WebUI forwards is trusted on its own key only
            person = {"X-OpenWebUI-User-Email": "carol@lab.example"}
            _client(proxy, OPEN_WEBUI).with_options(default_headers=person).chat.completions.create(
                model="qwen2.5-7b", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.RateLimitError):      # alice is over her rpm: the request is still counted
                _client(proxy, ALICE).with_options(default_headers={"X-OpenWebUI-User-Email": "mallory@lab.example"}
                                                   ).chat.completions.create(model="qwen2.5-7b", messages=[])
            # requests per key stay visible in the gateway's metrics (the master key reads them)
            metrics = requests.get(proxy.url + "/metrics/", headers=proxy.auth, timeout=30).text.splitlines()
            alice_lines = [m for m in metrics if m.startswith('litellm_proxy_total_requests_metric_total{api_key_alias='
                                                              '"alice"') and 'user="alice"' in m]
            assert {m.split('status_code="')[1][:3] for m in alice_lines} == {"200", "429"}, alice_lines
            assert any('end_user="carol@lab.example"' in m and 'api_key_alias="open-webui"' in m for m in metrics)
            assert not [m for m in metrics if "mallory" in m]
            assert OPEN_WEBUI not in proxy.log() and ALICE not in proxy.log()
    finally:
        for backend in (vllm, ollama, cloud):
            backend.stop()


def test_without_the_hook_a_wrong_key_gets_400_no_connected_db(tmp_path):
    """Why the issue saw HTTP 400 "No connected db.": the real proxy's own key lookup (litellm/proxy/auth/
    user_api_key_auth.py) answers any key other than the master key with it when no database is connected. The
    role's custom_auth hook is what turns it into 401 (the test above)."""
    backend = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    try:
        config = role_base_config()
        for key in ("custom_auth", "custom_auth_run_common_checks"):
            config["general_settings"].pop(key)
        path, _ = write_gateway_config(tmp_path, backend, backend, backend, config=config)
        with LiteLLMProxy(path, env=gateway_env()) as proxy:
            with pytest.raises(openai.BadRequestError) as err:
                _chat(_client(proxy, "sk-mistyped-0123456789"), "qwen2.5-7b")
            assert err.value.status_code == 400 and "No connected db." in str(err.value.body), err.value.body
    finally:
        backend.stop()
