"""Start and stop the REAL LiteLLM proxy for tests and benchmarks.

Nothing is emulated here: this runs the pinned ``litellm[proxy]`` from its own venv
(``$AILAB_LITELLM_VENV``, default ``<repo>/.venv-litellm``) as a subprocess on 127.0.0.1 and
a free port, with a config file, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (offline), and waits
for ``/health/readiness`` with a timeout. A start costs about 8 s and a lot of CPU on a small
machine, so tests share one proxy per module (see ``proxy_session``) and group assertions.

Usage::

    with LiteLLMProxy(config_path, env={"LITELLM_MASTER_KEY": "sk-test"}) as proxy:
        requests.post(proxy.url + "/v1/chat/completions", headers=proxy.auth, json=...)

``LiteLLMProxy.start(wait=False)`` + ``wait_exited()`` lets a test observe a config the
proxy refuses to start with; ``proxy.log()`` returns its combined stdout/stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.serve import free_port, json_request
from tests.support.catalog_example import load_example_catalog

REPO = Path(__file__).resolve().parents[2]


def litellm_venv() -> Path:
    return Path(os.environ.get("AILAB_LITELLM_VENV") or REPO / ".venv-litellm")


def litellm_binary() -> Path:
    binary = litellm_venv() / "bin" / "litellm"
    if not binary.exists():
        raise RuntimeError(f"LiteLLM proxy not found at {binary}: run `make setup` "
                           "(or set AILAB_LITELLM_VENV to the venv holding litellm[proxy]).")
    return binary


class ProxyStartError(RuntimeError):
    pass


class LiteLLMProxy:
    """One real LiteLLM proxy process."""

    def __init__(self, config: str | Path, env: dict | None = None, port: int | None = None,
                 master_key: str | None = None, startup_timeout: float = 90.0, extra_args: list[str] | None = None):
        self.config = Path(config)
        self.port = port or free_port()
        self.env_extra = dict(env or {})
        self.master_key = master_key or self.env_extra.get("LITELLM_MASTER_KEY")
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._logfile = tempfile.NamedTemporaryFile(prefix="litellm-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.master_key}"} if self.master_key else {}

    def log(self) -> str:
        try:
            return Path(self._logfile.name).read_text(errors="replace")
        except OSError:
            return ""

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "ANTHROPIC_"))}
        env.update({
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        env.pop("DATABASE_URL", None)
        env.update(self.env_extra)
        return env

    def start(self, wait: bool = True) -> "LiteLLMProxy":
        # the litellm role always mounts its custom_auth hook beside the config (docs/litellm.md "Keys")
        hook = self.config.parent / KEYS_HOOK.name
        if not hook.exists():
            hook.write_text(KEYS_HOOK.read_text())
        cmd = [str(litellm_binary()), "--config", str(self.config), "--host", "127.0.0.1",
               "--port", str(self.port), *self.extra_args]
        self.proc = subprocess.Popen(cmd, env=self._env(), stdout=self._logfile, stderr=subprocess.STDOUT,
                                     cwd=str(self.config.parent), start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProxyStartError(f"LiteLLM exited with {self.proc.returncode} before becoming ready:\n"
                                      + self.log()[-4000:])
            status, body = self.get("/health/readiness", timeout=2)
            if status == 200 and isinstance(body, dict) and body.get("status") in ("healthy", "connected"):
                return
            time.sleep(0.25)
        self.stop()
        raise ProxyStartError(f"LiteLLM not ready after {self.startup_timeout}s:\n" + self.log()[-4000:])

    def wait_exited(self, timeout: float = 60.0) -> int | None:
        """Wait for the process to exit by itself (a config it refuses). None if still running."""
        try:
            return self.proc.wait(timeout=timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> "LiteLLMProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- small HTTP client (stdlib, so the test venv needs nothing extra) ----------------------
    def request(self, method: str, path: str, payload=None, headers: dict | None = None, timeout: float = 30.0,
                auth: bool = True):
        """Return (status, parsed JSON body or text). Never raises on HTTP errors."""
        hdrs = dict(self.auth) if auth else {}
        hdrs.update(headers or {})
        return json_request(method, self.url + path, payload, hdrs, timeout)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, payload, **kw):
        return self.request("POST", path, payload, **kw)

    def chat(self, model: str, content: str = "hello", **kw):
        return self.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": content}]},
                         **kw)


# -- the gateway config the litellm role deploys, pointed at local backends -----------------------------

MASTER_KEY = "sk-ailab-test-0123456789abcdef"
KEYS_HOOK = REPO / "roles" / "litellm" / "files" / "lab_keys_auth.py"


def role_base_config() -> dict:
    """The litellm role's default config sections (roles/litellm/defaults/main.yml), so tests and the
    benchmark run exactly the settings the role deploys."""
    import yaml

    defaults = yaml.safe_load((REPO / "roles" / "litellm" / "defaults" / "main.yml").read_text())
    return {"litellm_settings": defaults["litellm_litellm_settings"],
            "router_settings": defaults["litellm_router_settings"],
            "general_settings": defaults["litellm_general_settings"]}


def example_catalog() -> dict:
    import yaml

    return load_example_catalog()


def write_gateway_config(directory, vllm, ollama, cloud=None, models=None, routes=None, provided_env=None,
                         config=None, ollama_embed=None) -> tuple[Path, dict]:
    """Render the example catalog (or ``models``) with the module's code path into ``directory``.

    ``vllm``/``ollama``/``cloud`` are OpenAIBackend instances standing in for the in-cluster
    Services and the hosted provider (reached through its catalog ``api_base`` override);
    ``ollama_embed`` stands in for the CPU Ollama of the embedding models (Service ``ollama-embed``),
    by default the same stand-in as ``ollama`` (tests that do not tell the two instances apart).
    Returns (path, build result).
    """
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as lc

    catalog = example_catalog()
    models = [dict(m) for m in (models if models is not None else catalog["gpu_lab_models"])]
    if cloud is not None:
        for entry in models:
            if entry["backend"] not in ("vllm", "ollama"):
                entry["api_base"] = cloud.url
    result = lc.build(config if config is not None else role_base_config(), models=models,
                      routes=catalog["gpu_lab_routes"] if routes is None else routes,
                      vllm_api_base=vllm.v1, ollama_api_base=ollama.url,
                      ollama_embed_api_base=(ollama_embed or ollama).url,
                      provided_env=provided_env or ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "ANTHROPIC_API_KEY"])
    path = Path(directory) / "litellm-config.yaml"
    path.write_text(result["content"])
    return path, result


def gateway_env() -> dict:
    return {"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_SALT_KEY": "sk-salt-test-0123456789",
            "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key", "LITELLM_LOG": "ERROR"}
