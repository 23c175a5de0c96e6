"""Start and stop the REAL Open WebUI for tests, with the environment the open_webui role renders.

Nothing of Open WebUI is emulated: this runs the pinned ``open-webui`` from PyPI out of its own venv
(``$AILAB_OPEN_WEBUI_VENV``, default ``<repo>/.venv-open-webui``, built by ``make setup`` with
``tools/open-webui-venv.sh`` from ``requirements/open-webui.txt``) as a subprocess on 127.0.0.1, started
the way the PyPI package documents (``open-webui serve``; the image's start.sh runs the same app with
uvicorn), and waits for ``/health``.

The environment is the one the role writes into its Deployment (``rendered_env``: the role run with
``open_webui_state: rendered`` by the real ansible-playbook, read back from the manifest, never retyped).
Only what a pod gets from the cluster is filled in here, and each substitution is named:

* a variable from a ``secretKeyRef`` gets the value the test gives for it (``secrets``); one the test
  does not give fails with the Secret's name (the pod would not start either: CreateContainerConfigError);
* a Service URL (``http://<service>:<port>``) gets the local server standing in for that Service
  (``services``: the real LiteLLM proxy for ``litellm``, the Qdrant stand-in for ``qdrant``); a rendered
  URL naming a Service the test does not map fails;
* ``DATA_DIR`` (the PVC's mount ``/app/backend/data``) becomes a temporary directory.

What differs from the image: the venv holds only the packages Open WebUI's import path and the tested
routes need (requirements/open-webui.txt: no torch, no local embedding or speech models, no OCR; the role
sends embeddings through the gateway, ``RAG_EMBEDDING_ENGINE=openai``), and the frontend is the one the
wheel ships (``open_webui/frontend``), the same build the image copies to /app/build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.support.deploy_render import load_objects, render_roles
from tests.support.serve import ServerProcess

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "open-webui"
DATA_MOUNT = "/app/backend/data"  # the PVC's mountPath in the role's Deployment
_SERVICE_URL = re.compile(r"^http://([a-z0-9-]+):(\d+)")


def open_webui_binary() -> Path:
    """``open-webui`` of the venv make setup builds (``$AILAB_OPEN_WEBUI_VENV``, default .venv-open-webui)."""
    venv = os.environ.get("AILAB_OPEN_WEBUI_VENV") or REPO / ".venv-open-webui"
    if not (Path(venv) / "bin" / "open-webui").exists():
        raise RuntimeError(f"Open WebUI not found in {venv}: run `make setup` "
                           "(or set AILAB_OPEN_WEBUI_VENV to a venv tools/open-webui-venv.sh built).")
    return Path(venv) / "bin" / "open-webui"


def rendered_deployment(out_dir: Path, extra_vars: dict | None = None) -> dict:
    """The open_webui role's Deployment, rendered by the real ansible-playbook (example inventory)."""
    objects = load_objects(render_roles(Path(out_dir), ["open_webui"], extra_vars=extra_vars))
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == CONTAINER)


def container_env(deployment: dict) -> list[dict]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER)["env"]


def rendered_env(env: list[dict], services: dict[str, str], secrets: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The container's env list as the pod would see it, with the cluster's parts replaced (module docstring).

    ``secrets`` maps the name of each variable the role fills from a Secret to the value the test puts there."""
    result = {}
    for entry in env:
        name = entry["name"]
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            if name not in secrets:
                raise KeyError(f"{name} reads Secret {ref['name']} key {ref['key']}: the test gives no value for it")
            result[name] = secrets[name]
            continue
        value = entry["value"]
        match = _SERVICE_URL.match(value)
        if match:
            if match.group(1) not in services:
                raise KeyError(f"{name}={value} names Service {match.group(1)}: the test maps no local server to it")
            value = services[match.group(1)].rstrip("/") + value[match.end():]
        if name == "DATA_DIR":
            assert value == DATA_MOUNT, f"DATA_DIR {value} is not the data volume's mount {DATA_MOUNT}"
            value = str(data_dir)
        result[name] = value
    return result


class OpenWebUIStartError(RuntimeError):
    pass


class OpenWebUI(ServerProcess):
    """One real Open WebUI process with the given (rendered) environment; serves on its ``PORT``."""

    name = "Open WebUI"
    log_name = "open-webui"
    # nothing of the caller's Open WebUI/OpenAI/RAG settings leaks in: only what the role renders
    drop_env = ("OPENAI_", "RAG_", "QDRANT_", "WEBUI_", "ENABLE_", "VECTOR_", "LITELLM_")
    # the Hugging Face hub is out of reach here, as on an offline lab (no model is fetched)
    server_env = {"HF_HUB_OFFLINE": "1"}
    start_error = OpenWebUIStartError
    poll_interval = 0.5
    stop_grace = 20.0

    def __init__(self, env: dict[str, str], startup_timeout: float = 240.0):
        super().__init__(env, int(env.get("PORT") or 0), startup_timeout)
        self.workdir = Path(self.env_extra["DATA_DIR"])

    def command(self) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return [str(open_webui_binary()), "serve", "--host", "127.0.0.1", "--port", str(self.port)]


# -- the browser: Debian's chromium driven by its chromedriver (Playwright cannot fetch its browsers here) ----------

CHROMIUM = Path(os.environ.get("AILAB_CHROMIUM") or "/usr/bin/chromium")
CHROMEDRIVER = Path(os.environ.get("AILAB_CHROMEDRIVER") or "/usr/bin/chromedriver")


def chromium(window: tuple[int, int] = (1280, 800)):
    """A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, tools/system-deps.sh) under selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            raise RuntimeError(f"{path} not found: install Debian's {package} (`make system-deps` as root, or "
                               f"apt-get install -y chromium chromium-driver)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                "--disable-gpu", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    return driver
