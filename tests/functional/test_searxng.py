"""The searxng component rendered by the real deploy playbook: valid objects, its secret_key only in a Secret, every
URL and port derived from the component registry, bad settings refused before anything is rendered; and the
SearXNG stand-in the browser test uses refuses what the real SearXNG refuses.

REAL: ansible-playbook (deploy in render mode, the searxng role alone), kubectl kustomize and kubernetes-validate
--strict (tests/support/validate_render.py), the secrets layout of module_utils/dotenv_secrets.py.
EMULATED: SearXNG itself (tests/support/searxng_server.py, modelled on searxng's searx/webapp.py); the image is
not run here (no container runtime).
"""

from __future__ import annotations

import json

import pytest
import requests

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
from tests.conftest import REPO, run_playbook
from tests.support.deploy_render import load_objects, render_roles
from tests.support.searxng_server import SearXNGServer, rendered_settings
from tests.support.validate_render import validate

PORT = 8181   # not the registry's default (8080): every reference must follow the override


def _env(deployment, container):
    spec = deployment["spec"]["template"]["spec"]
    return {e["name"]: e for e in next(c for c in spec["containers"] if c["name"] == container)["env"]}


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    render = tmp_path_factory.mktemp("searxng") / "rendered"
    run_playbook(f"{REPO}/playbooks/deploy.yml", "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                 "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=vllm:qwen2.5-7b",
                 "-e", json.dumps({"gpu_lab_components": {"searxng": True}, "searxng_port": PORT}))
    validate(str(render), out=lambda line: None)   # kustomize build + kubernetes-validate --strict
    return load_objects(render / "k8s")


def test_searxng_renders_with_json_output_its_secret_from_a_secret_and_the_registry_port(objects):
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    settings = rendered_settings(objects)
    assert "json" in settings["search"]["formats"] and settings["use_default_settings"] is True
    config_map = by_key[("ConfigMap", "searxng-settings")]
    # no secret in the ConfigMap: no secret_key at all (SearXNG's default is replaced by env SEARXNG_SECRET)
    assert "secret_key" not in config_map["data"]["settings.yml"] and "secret_key" not in settings.get("server", {})
    env = _env(by_key[("Deployment", "searxng")], "searxng")
    # the Secret and key the secrets playbook creates for the component (one layout for .env and External Secrets)
    spec = next(s for s in ds.secret_layout({"searxng": True})[0] if s.component == "searxng")
    assert env["SEARXNG_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": spec.name, "key": spec.keys[0].key}
    assert [s for s in objects if s["kind"] == "Secret"] == []
    # the port: the registry's, overridden by searxng_port, in the env the entrypoint reads, the container, Service
    assert env["SEARXNG_PORT"]["value"] == str(PORT)
    pod = by_key[("Deployment", "searxng")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    assert by_key[("Service", "searxng")]["spec"]["ports"][0]["port"] == PORT
    # a new settings.yml rolls the pod
    assert by_key[("Deployment", "searxng")]["spec"]["template"]["metadata"]["annotations"][
        "ailab.gpu-lab/config-checksum"]
    # Open WebUI's web search points at that Service and port, and loads no page itself (no internet egress)
    webui = {k: e.get("value") for k, e in _env(by_key[("Deployment", "open-webui")], "open-webui").items()}
    assert webui["ENABLE_WEB_SEARCH"] == "true" and webui["WEB_SEARCH_ENGINE"] == "searxng"
    assert webui["SEARXNG_QUERY_URL"] == f"http://searxng:{PORT}/search?q=<query>"
    assert webui["BYPASS_WEB_SEARCH_WEB_LOADER"] == "true"
    # the policies open the same port, from Open WebUI only
    policy = by_key[("NetworkPolicy", "searxng")]["spec"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "open-webui"}}}],
                                  "ports": [{"protocol": "TCP", "port": PORT}]}]
    assert [r["ports"] for r in policy["egress"]] == [[{"protocol": "TCP", "port": 443}]]


def test_searxng_off_by_default_leaves_open_webui_without_web_search(tmp_path):
    objects = load_objects(render_roles(tmp_path, ["open_webui"]))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert not {"ENABLE_WEB_SEARCH", "SEARXNG_QUERY_URL"} & set(_env(deployment, "open-webui"))


def test_settings_with_a_secret_key_or_without_json_are_refused_before_rendering(tmp_path):
    out = render_roles(tmp_path, ["searxng"], expect_failure=True, extra_vars={
        "searxng_settings": {"server": {"secret_key": "typed-into-the-inventory"}, "search": {"formats": ["html"]}}})
    assert "searxng_settings: server.secret_key would be written into the ConfigMap searxng-settings" in out
    assert "searxng_settings: search.formats ['html'] has no json" in out
    assert not list(tmp_path.rglob("searxng.yaml")), "nothing is rendered"


def test_the_stand_in_refuses_what_searxng_refuses(objects):
    """searx/webapp.py search(): a format not in search.formats is 403; format=json without q is 400."""
    result = {"url": "https://example.org/a", "title": "A", "content": "a"}
    with SearXNGServer([result], formats=["html"]) as html_only:
        session = requests.Session()
        session.trust_env = False
        assert session.get(html_only.url + "/search", params={"q": "x", "format": "json"}).status_code == 403
        assert session.get(html_only.url + "/search", params={"q": "x"}).status_code == 200   # html is listed
    with SearXNGServer([result], formats=rendered_settings(objects)["search"]["formats"]) as server:
        answer = session.get(server.url + "/search", params={"q": "x", "format": "json"})
        assert answer.status_code == 200 and answer.json()["query"] == "x"
        assert [(r["url"], r["title"], r["content"]) for r in answer.json()["results"]] == [("https://example.org/a",
                                                                                               "A", "a")]
        empty = session.get(server.url + "/search", params={"format": "json"})
        assert (empty.status_code, empty.json()) == (400, {"error": "No query"})
        assert session.get(server.url + "/healthz").text == "OK"
