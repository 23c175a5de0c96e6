"""Start and stop the REAL Llama Stack server for tests, with the run.yaml and environment the llama_stack role renders.

Nothing of Llama Stack is emulated: this runs the pinned ``llama-stack`` from PyPI out of its own venv
(``$AILAB_LLAMA_STACK_VENV``, default ``<repo>/.venv-llama-stack``, built by ``make setup`` from
``requirements/llama-stack.txt``) as a subprocess on 127.0.0.1, started as the role's container starts it
(``python -m llama_stack.distribution.server.server --config run.yaml --port N``), and waits for ``/v1/health``.

The run.yaml is the ConfigMap ``llama-stack-config`` the role renders, written to a file byte for byte; the env is
the role's Deployment's (``rendered``: the role run with ``llama_stack_state: rendered`` by the real
ansible-playbook, read back, never retyped). Only what a pod gets from the cluster is filled in, by
tests/support/open_webui.py's ``rendered_env`` (a ``secretKeyRef`` gets the test's value, a Service URL the local
server standing in for that Service) and here: ``/data`` (the PVC's mount: ``SQLITE_STORE_DIR`` and ``HOME``)
becomes a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.deploy_render import load_objects, render_roles
from tests.support.open_webui import rendered_env
from tests.support.serve import ServerProcess

REPO = Path(__file__).resolve().parents[2]
NAME = "llama-stack"
DATA_MOUNT = "/data"   # the PVC's mountPath in the role's Deployment


def llama_stack_python() -> Path:
    """The python of the venv make setup builds (``$AILAB_LLAMA_STACK_VENV``, default .venv-llama-stack)."""
    venv = Path(os.environ.get("AILAB_LLAMA_STACK_VENV") or REPO / ".venv-llama-stack")
    if not (venv / "bin" / "python").exists() or not list(venv.glob("lib/python*/site-packages/llama_stack")):
        raise RuntimeError(f"llama-stack not found in {venv}: run `make setup` "
                           "(or set AILAB_LLAMA_STACK_VENV to a venv with requirements/llama-stack.txt).")
    return venv / "bin" / "python"


def rendered(out_dir: Path, roles: list[str], extra_vars: dict | None = None) -> list[dict]:
    """Every object the roles render (the real ansible-playbook, example inventory), ``llama_stack`` among them."""
    return load_objects(render_roles(Path(out_dir), roles, extra_vars=extra_vars))


def run_yaml(objects: list[dict]) -> str:
    """The run.yaml of the ConfigMap the role renders."""
    return next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "llama-stack-config")[
        "data"]["run.yaml"]


def container(objects: list[dict], kind: str, name: str, container_name: str) -> dict:
    deployment = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == container_name)


def pod_env(objects: list[dict], services: dict[str, str], secrets: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The Llama Stack container's env as the pod sees it, the cluster's parts replaced (module docstring)."""
    env = rendered_env(container(objects, "Deployment", NAME, NAME)["env"], services, secrets, data_dir)
    return {name: (str(data_dir) if value == DATA_MOUNT else value) for name, value in env.items()}


class LlamaStackStartError(RuntimeError):
    pass


class LlamaStack(ServerProcess):
    """One real Llama Stack server process with a run.yaml (text) and env; serves on ``port``."""

    name = "Llama Stack"
    log_name = "llama-stack"
    # nothing of the caller's settings leaks in (Llama Stack reads ${env.*} and provider keys from its env)
    drop_env = ("LAB_", "OPENAI_", "QDRANT_", "LLAMA_", "VLLM_")
    health_path = "/v1/health"
    start_error = LlamaStackStartError
    exit_timeout = 120.0
    stop_grace = 15.0

    def __init__(self, config_text: str, env: dict[str, str], port: int, workdir: Path, startup_timeout: float = 180.0):
        super().__init__(env, port, startup_timeout)
        self.workdir = Path(workdir)
        self.config = self.workdir / "run.yaml"
        self.config.write_text(config_text)

    def command(self) -> list[str]:
        return [str(llama_stack_python()), "-m", "llama_stack.distribution.server.server", "--config", str(self.config),
                "--port", str(self.port)]

    def post(self, path: str, payload, timeout: float = 120.0, **kw):
        return super().post(path, payload, timeout=timeout, **kw)
