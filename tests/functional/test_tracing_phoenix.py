"""Tracing component end to end: a request through the REAL LiteLLM proxy leaves its trace in a REAL
Phoenix.

REAL: Arize Phoenix 20.26.1 (`phoenix serve` from the venv tools/phoenix-venv.sh builds; SQLite in a
temp dir, OTLP gRPC and HTTP on 127.0.0.1), the pinned LiteLLM proxy with the litellm role's settings
plus the `otel` callback and the OTEL_* variables exactly as the role sets them for the tracing
component (OTLP over gRPC), Phoenix's REST API that the spans are read back from.
EMULATED: the inference server behind LiteLLM (tests/support/openai_backend.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.support.serve import ServerProcess, free_port

pytestmark = pytest.mark.slow


def _get(url, timeout=5):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


class Phoenix(ServerProcess):
    """``phoenix serve`` of ``venv`` on free loopback ports (HTTP ``port``, OTLP gRPC ``grpc_port``), its SQLite in
    ``working_dir``; ready when ``/healthz`` answers 200."""

    name = "Phoenix"
    log_name = "phoenix"
    health_path = "/healthz"
    poll_interval = 0.5
    stop_grace = 30.0

    def __init__(self, venv, working_dir):
        port, self.grpc_port = free_port(), free_port()
        super().__init__({"PHOENIX_WORKING_DIR": str(working_dir), "PHOENIX_HOST": "127.0.0.1",
                          "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(self.grpc_port),
                          "PHOENIX_TELEMETRY_ENABLED": "false"},
                         port=port, startup_timeout=240)
        self.venv = venv

    def command(self):
        return [str(self.venv / "bin" / "phoenix"), "serve"]


@pytest.fixture
def phoenix(tmp_path):
    proc = subprocess.run(["bash", str(Path(REPO) / "tools" / "phoenix-venv.sh")], capture_output=True, text=True,
                          timeout=3600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Phoenix(Path(proc.stdout.strip()), tmp_path / "phoenix") as server:
        yield {"http": server.url, "grpc": f"http://127.0.0.1:{server.grpc_port}"}


def _role_otel_env(endpoint):
    """The OTEL_* variables the litellm role puts on the proxy when litellm_otel_endpoint is set."""
    roles_vars = (Path(REPO) / "roles" / "litellm" / "vars" / "main.yml").read_text()
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME"):
        assert name in roles_vars, name
    defaults = yaml.safe_load((Path(REPO) / "roles" / "litellm" / "defaults" / "main.yml").read_text())
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": defaults["litellm_otel_protocol"],
            "OTEL_SERVICE_NAME": "litellm"}


def test_a_gateway_request_is_traced_into_phoenix(tmp_path, phoenix):
    from tests.support.litellm_proxy import LiteLLMProxy, gateway_env, role_base_config, write_gateway_config
    from tests.support.openai_backend import OpenAIBackend

    ollama, vllm = OpenAIBackend("ollama").start(), OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    try:
        config = role_base_config()
        config["litellm_settings"]["callbacks"] = ["prometheus", "otel"]     # what the role renders with tracing on
        path, _built = write_gateway_config(tmp_path, vllm, ollama, config=config)
        env = dict(gateway_env(), **_role_otel_env(phoenix["grpc"]))
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        secret_prompt = "the-quick-brown-fox-%d" % time.time_ns()
        with LiteLLMProxy(path, env=env) as proxy:
            status, body = proxy.chat("llama3.1-8b", secret_prompt)
            assert status == 200, body
            spans = []
            deadline = time.monotonic() + 60              # the batch span processor exports within seconds
            while time.monotonic() < deadline and "litellm_request" not in {s["name"] for s in spans}:
                time.sleep(1)
                status, text = _get(phoenix["http"] + "/v1/projects/default/spans?limit=1000")
                assert status == 200, text
                spans = json.loads(text)["data"]
    finally:
        ollama.stop()
        vllm.stop()
    assert spans, "no span reached Phoenix within 60 s"   # (health checks and auth are traced too)
    names = {s["name"] for s in spans}
    assert {"Received Proxy Server Request", "litellm_request"} <= names, names
    llm = next(s for s in spans if s["name"] == "litellm_request")
    assert llm["span_kind"] == "LLM" and llm["status_code"] == "OK"
    assert llm["attributes"]["litellm.provider.model"] == "ollama_chat/llama3.1:8b"
    # one trace: the LLM span hangs under the proxy's request span
    request = next(s for s in spans if s["name"] == "Received Proxy Server Request")
    assert llm["context"]["trace_id"] == request["context"]["trace_id"] and llm["parent_id"] == request["context"]["span_id"]
    # the role's turn_off_message_logging holds for traces too: the prompt never leaves the gateway
    assert secret_prompt not in json.dumps(spans)
