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
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.deploy_render import load_objects, render_roles
from tests.support.open_webui import rendered_env
from tests.support.serve import json_request, stop_process_group

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


class LlamaStack:
    """One real Llama Stack server process with a run.yaml (text) and env; serves on ``port``."""

    def __init__(self, config_text: str, env: dict[str, str], port: int, workdir: Path, startup_timeout: float = 180.0):
        self.config = Path(workdir) / "run.yaml"
        self.config.write_text(config_text)
        self.env_extra = dict(env)
        self.port = port
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="llama-stack-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _env(self) -> dict:
        # nothing of the caller's settings leaks in (Llama Stack reads ${env.*} and provider keys from its env)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "OPENAI_", "QDRANT_", "LLAMA_", "VLLM_"))}
        env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        env.update(self.env_extra)
        return env

    def start(self, wait: bool = True) -> "LlamaStack":
        cmd = [str(llama_stack_python()), "-m", "llama_stack.distribution.server.server", "--config", str(self.config),
               "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(self.workdir), start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LlamaStackStartError(f"Llama Stack exited with {self.proc.returncode} before /v1/health:\n"
                                           + self.log()[-4000:])
            if self.get("/v1/health", timeout=2)[0] == 200:
                return
            time.sleep(0.25)
        self.stop()
        raise LlamaStackStartError(f"Llama Stack not healthy after {self.startup_timeout}s:\n" + self.log()[-4000:])

    def wait_exited(self, timeout: float = 120.0) -> int | None:
        """Wait for the process to exit by itself (a configuration it refuses). None if still running."""
        try:
            return self.proc.wait(timeout=timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            stop_process_group(proc, grace=15.0)

    def get(self, path: str, timeout: float = 30.0):
        return json_request("GET", self.url + path, None, {}, timeout)

    def post(self, path: str, payload, timeout: float = 120.0):
        return json_request("POST", self.url + path, payload, {}, timeout)

    def __enter__(self) -> "LlamaStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
