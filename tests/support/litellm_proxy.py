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

import os
from pathlib import Path

from tests.support.serve import ServerProcess
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


class LiteLLMProxy(ServerProcess):
    """One real LiteLLM proxy process."""

    name = "LiteLLM"
    log_name = "litellm"
    drop_env = ("LITELLM_", "OPENAI_", "ANTHROPIC_")
    server_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "DATABASE_URL": None}
    health_path = "/health/readiness"
    start_error = ProxyStartError
    stop_grace = 15.0

    def __init__(self, config: str | Path, env: dict | None = None, port: int | None = None,
                 master_key: str | None = None, startup_timeout: float = 90.0, extra_args: list[str] | None = None):
        super().__init__(env, port, startup_timeout)
        self.config = Path(config)
        self.workdir = self.config.parent
        self.master_key = master_key or self.env_extra.get("LITELLM_MASTER_KEY")
        self.extra_args = list(extra_args or [])

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.master_key}"} if self.master_key else {}

    def command(self) -> list[str]:
        # the litellm role always mounts its custom_auth hook beside the config (docs/litellm.md "Keys")
        hook = self.config.parent / KEYS_HOOK.name
        if not hook.exists():
            hook.write_text(KEYS_HOOK.read_text())
        return [str(litellm_binary()), "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port),
                *self.extra_args]

    def ready(self) -> bool:
        status, body = self.get(self.health_path, timeout=2)
        return status == 200 and isinstance(body, dict) and body.get("status") in ("healthy", "connected")

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
