"""Open WebUI as the lab's people use it: a real browser signs up, picks a catalog alias and chats; uploads documents.

REAL: Open WebUI (the pinned open-webui from PyPI, .venv-open-webui; tests/support/open_webui.py) started with the
environment the open_webui role renders (the role run by the real ansible-playbook in its rendered state, the
Deployment's env read back, not retyped); the LiteLLM proxy (.venv-litellm) with the gateway config our
litellm_config code path renders from the example catalog and the role's defaults, its custom_auth hook and Open
WebUI's own key; Chromium (Debian's chromium and chromium-driver) driven by selenium.
EMULATED: the model servers (tests/support/openai_backend.py: vLLM's and Ollama's HTTP APIs, deterministic replies
naming the backend and the model it was asked for; embeddings are bag-of-words vectors); Qdrant's server
(tests/support/qdrant_server.py: its REST API in front of qdrant-client's local mode, the Qdrant team's own
implementation of collections, filters and search); the Secrets (each secretKeyRef
of the rendered env gets the value the test chose) and the gateway's key list, set as the litellm role's Deployment
sets it (LAB_KEYS and LITELLM_KEY_<NAME>, shape proved in test_litellm_playbook.py).
"""

import contextlib
import json
import os
import re
import shutil
import sqlite3
import urllib.parse
from pathlib import Path

import jwt
import pytest
import requests

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
from tests.support.catalog_example import load_example_catalog
from tests.support.litellm_proxy import LiteLLMProxy, gateway_env, write_gateway_config
from tests.support.open_webui import REPO, OpenWebUI, chromium, container_env, rendered_deployment, rendered_env
from tests.support.openai_backend import OpenAIBackend
from tests.support.qdrant_server import QdrantServer
from tests.support.promql import substitute_grafana_vars
from tests.support.serve import BackgroundHTTPServer, JSONHandler, free_port, json_request

pytestmark = pytest.mark.slow

OPEN_WEBUI_KEY = "sk-openwebui-browser-0123456789abcdefghij"   # Secret litellm-key-open-webui
QDRANT_KEY = "qdrant-browser-test-key"
WEBUI_SECRET = "webui-secret-browser-test-0123456789abcdef"
ADMIN = {"name": "Ada Lovelace", "email": "ada@lab.test", "password": "correct-horse-battery-9"}
WAIT = 120  # seconds a page step may take on the 2-core machine while other tests run


def _catalog(mode):
    return [m["name"] for m in load_example_catalog()["gpu_lab_models"] if m.get("mode", "chat") == mode]


@contextlib.contextmanager
def _lab(tmp_path, role_vars=None, services=None):
    """The stand-in backends, the real gateway and the real Open WebUI with the role's rendered env (``role_vars`` on
    top of the role's defaults; ``services``: more Service URLs the env names, e.g. SearXNG's)."""
    vllm = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama, cloud = OpenAIBackend("ollama").start(), OpenAIBackend("cloud").start()
    qdrant = QdrantServer(api_key=QDRANT_KEY).start()
    env = dict(gateway_env(), LAB_KEYS=json.dumps([{"name": "open-webui", "models": [], "rpm": None, "tpm": None}]))
    env[ds.litellm_key_secret("open-webui")[2]] = OPEN_WEBUI_KEY
    try:
        config, _ = write_gateway_config(tmp_path, vllm, ollama, cloud)
        deployment = rendered_deployment(tmp_path / "render", dict(role_vars or {}, open_webui_port=free_port()))
        with LiteLLMProxy(config, env=env) as proxy:
            webui_env = rendered_env(
                container_env(deployment), services=dict(services or {}, litellm=proxy.url, qdrant=qdrant.url),
                secrets={"OPENAI_API_KEY": OPEN_WEBUI_KEY, "RAG_OPENAI_API_KEY": OPEN_WEBUI_KEY,
                         "WEBUI_SECRET_KEY": WEBUI_SECRET, "QDRANT_API_KEY": QDRANT_KEY},
                data_dir=tmp_path / "data")
            with OpenWebUI(webui_env) as webui:
                yield {"webui": webui, "proxy": proxy, "env": webui_env, "ollama": ollama, "qdrant": qdrant}
    finally:
        qdrant.stop()
        for backend in (vllm, ollama, cloud):
            backend.stop()


@pytest.fixture
def lab(tmp_path):
    with _lab(tmp_path) as running:
        yield running


def _sign_up(driver, act, url):
    """First visit: the onboarding page, then the sign-up form (the first user becomes the admin), then the release
    notes a new admin is shown, closed as a user would."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    act(lambda d: _button(d, "Get started").click())
    act(lambda d: d.find_element(By.CSS_SELECTOR, "input[autocomplete=name]").send_keys(ADMIN["name"]))
    act(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=email]").send_keys(ADMIN["email"]))
    act(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(ADMIN["password"]))
    act(lambda d: _button(d, "Create Admin Account").click())
    act(lambda d: _button(d, "Okay, Let's Go!").click())


def _button(driver, text):
    from selenium.webdriver.common.by import By

    return next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.is_displayed() and b.text.strip() == text)


def _screenshot(driver, shot):
    """The page as a PNG; copied to $AILAB_SCREENSHOT_DIR too, to refresh the docs' pictures (docs/testing.md)."""
    driver.save_screenshot(str(shot))
    if os.environ.get("AILAB_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["AILAB_SCREENSHOT_DIR"]) / shot.name)


@contextlib.contextmanager
def _browser(webui, tmp_path):
    """Chromium, a wait and ``act(step)``: the page re-renders as its data arrives, so a step is retried until the
    element it needs is there and usable. On a failure: its screenshot, Open WebUI's log and the page's text."""
    from selenium.common.exceptions import (ElementClickInterceptedException, ElementNotInteractableException,
                                            NoSuchElementException, StaleElementReferenceException)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=(
        StaleElementReferenceException, NoSuchElementException, ElementClickInterceptedException,
        ElementNotInteractableException, StopIteration))
    try:
        yield driver, wait, lambda step: wait.until(lambda d: step(d) or True)
    except Exception:
        driver.save_screenshot(str(tmp_path / "failure.png"))
        print("Open WebUI log:\n" + webui.log()[-4000:] + "\npage:\n" + driver.find_element(By.TAG_NAME, "body").text[-2000:])
        raise
    finally:
        driver.quit()


def _settings_took_effect(webui, env, token):
    """The rendered settings as the running Open WebUI reports them to its admin (the browser's session token)."""
    # the session is signed with WEBUI_SECRET_KEY (HS256), so it survives restarts and no other key verifies it
    assert jwt.decode(token, env["WEBUI_SECRET_KEY"], algorithms=["HS256"])["id"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-0123456789abcdef0123456789", algorithms=["HS256"])
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = "Bearer " + token

    def get(path):
        response = session.get(webui.url + path, timeout=30)
        return response.status_code, response.json()

    # ENABLE_OPENAI_API, OPENAI_API_BASE_URL (the gateway, the only connection), OPENAI_API_CONFIGS (its model list)
    status, openai_config = get("/openai/config")
    assert status == 200, openai_config
    assert openai_config["ENABLE_OPENAI_API"] is True
    assert openai_config["OPENAI_API_BASE_URLS"] == [env["OPENAI_API_BASE_URL"]]
    assert openai_config["OPENAI_API_CONFIGS"] == json.loads(env["OPENAI_API_CONFIGS"])
    # ENABLE_OLLAMA_API=False: the Ollama routes answer 503, Open WebUI reaches no Ollama of its own
    assert get("/ollama/config")[1]["ENABLE_OLLAMA_API"] is False
    assert get("/ollama/api/tags")[0] == 503
    # RAG: embeddings by the gateway (RAG_EMBEDDING_ENGINE=openai, its URL and the catalog's embedding alias)
    status, embedding = get("/api/v1/retrieval/embedding")
    assert status == 200, embedding
    assert (embedding["RAG_EMBEDDING_ENGINE"], embedding["RAG_EMBEDDING_MODEL"]) == ("openai", _catalog("embedding")[0])
    assert embedding["openai_config"]["url"] == env["RAG_OPENAI_API_BASE_URL"] == env["OPENAI_API_BASE_URL"]


def test_a_new_user_signs_up_picks_a_catalog_alias_and_gets_its_answer_in_the_browser(lab, tmp_path):
    from selenium.webdriver.common.by import By

    webui, ollama = lab["webui"], lab["ollama"]
    chat_models, embedding_models = _catalog("chat"), _catalog("embedding")
    assert embedding_models, "the example catalog has an embedding alias: the test proves it is not offered for chat"
    with _browser(webui, tmp_path) as (driver, wait, act):
        _sign_up(driver, act, webui.url)
        act(lambda d: d.find_element(By.ID, "model-selector-model-button").click())
        def options(d):
            """The offered aliases once the list is drawn (each option's text set, the same on two reads)."""
            reads = [[o.text.strip() for o in d.find_elements(By.CSS_SELECTOR, "button[id^=model-option-]")]
                     for _ in range(2)]
            return reads[0] if reads[0] and all(reads[0]) and reads[0] == reads[1] else None

        offered = wait.until(options)
        # every chat alias of the catalog, and only those: the embedding alias is no chat model
        assert sorted(offered) == sorted(chat_models), offered
        assert not set(offered) & set(embedding_models), offered

        # pick an alias other than the default, send a message, see the Ollama stand-in's answer for it
        alias = "llama3.1-8b"
        source = next(m["source"] for m in load_example_catalog()["gpu_lab_models"] if m["name"] == alias)
        act(lambda d: d.find_element(By.CSS_SELECTOR, f"button[aria-label='Select {alias} model']").click())
        wait.until(lambda d: d.find_element(By.ID, "model-selector-model-button").text.strip() == alias)
        prompt = "Which GPU does the lab share?"
        act(lambda d: d.find_element(By.ID, "chat-input").click())
        act(lambda d: d.find_element(By.ID, "chat-input").send_keys(prompt))
        act(lambda d: d.find_element(By.ID, "send-message-button").click())
        # the gateway sent the alias to the Ollama backend under the catalog's source tag; the page shows that answer
        answer = f"[ollama] {source}: {prompt}"
        wait.until(lambda d: answer in d.find_element(By.ID, "messages-container").text)
        assert source in ollama.models_requested(), ollama.requests
        _settings_took_effect(webui, lab["env"], driver.execute_script("return localStorage.token"))

        _screenshot(driver, tmp_path / "open-webui-chat.png")


# Two documents on distinct topics, each long enough for several chunks (Open WebUI's default chunk size is 1000
# characters, top_k 3): retrieval must pick the asked document's chunks, not merely return everything there is.
DOCUMENTS = {
    "sourdough-starter.txt": "\n\n".join(
        f"Sourdough starter note {i}: keep the sourdough starter at a steady temperature of 24 degrees Celsius, feed "
        f"the starter equal weights of rye flour and water every {i + 8} hours, and watch the sourdough starter rise "
        "and fall before baking bread." for i in range(18)),
    "tidal-turbines.txt": "\n\n".join(
        f"Tidal turbine log {i}: rotor blades of turbine unit {i} face ocean currents in the estuary channel; "
        "generators convert tide flow into electricity for harbour cranes; divers inspect bearings for barnacles "
        "during neap tides." for i in range(18)),
}
KB = "Lab notes"
QUESTION = "At which temperature should the sourdough starter be kept?"


def _stored_documents(qdrant, collection):
    """{document name: chunks} as Open WebUI stored them in a collection of the Qdrant stand-in (every tenant)."""
    status, body = json_request("POST", f"{qdrant.url}/collections/{collection}/points/scroll",
                                {"limit": 1000, "with_payload": True}, headers={"api-key": qdrant.api_key})
    if status == 404:
        return {}
    assert status == 200, body
    # (a knowledge base's own description is a point of the knowledge collection too, with no file name)
    names = [p["payload"]["metadata"]["name"] for p in body["result"]["points"] if "name" in p["payload"]["metadata"]]
    return {n: names.count(n) for n in set(names)}


def test_two_documents_uploaded_in_the_browser_the_answer_cites_the_one_asked_about(lab, tmp_path):
    """RAG end to end: the browser uploads two documents and asks about one; the answer's sources name that one.

    Real: Open WebUI's upload, extraction, chunking, retrieval and citations; the gateway's embedding alias
    (RAG_OPENAI_API_BASE_URL, RAG_EMBEDDING_MODEL) on Open WebUI's own key; qdrant-client's remote client in Open
    WebUI talking REST to the Qdrant stand-in, whose storage and search are qdrant-client's local mode
    (tests/support/qdrant_server.py). Emulated: the embedding model (the Ollama stand-in's bag-of-words vectors,
    tests/support/openai_backend.py fake_embedding: texts sharing words are near, so the question finds the
    document it shares words with) and the chat model (it echoes the prompt Open WebUI built, context included)."""
    from selenium.webdriver.common.by import By

    webui, proxy, ollama, qdrant = lab["webui"], lab["proxy"], lab["ollama"], lab["qdrant"]
    embedding_source = next(m["source"] for m in load_example_catalog()["gpu_lab_models"]
                            if m["name"] == _catalog("embedding")[0])
    session = requests.Session()
    session.trust_env = False
    signed_up = session.post(webui.url + "/api/v1/auths/signup", json=ADMIN, timeout=60)
    assert signed_up.status_code == 200, signed_up.text
    token = signed_up.json()["token"]
    for name, text in DOCUMENTS.items():
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")

    with _browser(webui, tmp_path) as (driver, wait, act):
        # the person signed up already (the first test signs up in the browser): the page opens with the session
        driver.get(webui.url + "/auth")
        driver.execute_script("localStorage.token = arguments[0]", token)
        driver.get(webui.url)
        act(lambda d: _button(d, "Okay, Let's Go!").click())   # the release notes a new admin is shown, closed once

        # a knowledge base with both documents, uploaded through its page's file picker one after the other, each
        # until its chunks are in Qdrant (two at once race in Open WebUI 0.12.4 on a fresh Qdrant: both create the
        # shared collection, the second gets 409 and its document is never stored; docs/testing.md)
        driver.get(webui.url + "/workspace/knowledge/create")
        act(lambda d: d.find_element(By.CSS_SELECTOR, "input[placeholder='Name your knowledge base']").send_keys(KB))
        act(lambda d: d.find_element(By.CSS_SELECTOR, "textarea").send_keys("What the lab keeps written down"))
        act(lambda d: _button(d, "Create Knowledge").click())
        wait.until(lambda d: "/workspace/knowledge/" in d.current_url and not d.current_url.endswith("/create"))
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[placeholder='Search Collection']").is_displayed())
        for name in DOCUMENTS:
            act(lambda d, name=name: d.find_element(By.ID, "files-input").send_keys(str(tmp_path / name)))
            wait.until(lambda _, name=name: name in _stored_documents(qdrant, "open-webui_knowledge"))
        stored = _stored_documents(qdrant, "open-webui_knowledge")
        assert sorted(stored) == sorted(DOCUMENTS) and all(n >= 3 for n in stored.values()), stored

        # a new chat: the alias, the knowledge base picked with "#", the question
        driver.get(webui.url)
        act(lambda d: d.find_element(By.ID, "model-selector-model-button").click())
        act(lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label='Select llama3.1-8b model']").click())
        wait.until(lambda d: d.find_element(By.ID, "model-selector-model-button").text.strip() == "llama3.1-8b")
        act(lambda d: d.find_element(By.ID, "chat-input").click())
        act(lambda d: d.find_element(By.ID, "chat-input").send_keys("#"))
        act(lambda d: _button(d, KB).click())
        act(lambda d: d.find_element(By.ID, "chat-input").click())
        act(lambda d: d.find_element(By.ID, "chat-input").send_keys(QUESTION))
        act(lambda d: d.find_element(By.ID, "send-message-button").click())
        # the answer's sources, listed as the person sees them: the asked document, never the other
        act(lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label^=Toggle][aria-label*=source]").click())
        cited = wait.until(lambda d: {re.sub(r"^View source: (\d+ )?", "", b.get_attribute("aria-label")) for b in
                                      d.find_elements(By.CSS_SELECTOR, "button[aria-label^='View source:']")} or None)
        assert cited == {"sourdough-starter.txt"}, cited
        # the chat model got the asked document's chunks as its context (the stand-in echoes its prompt), not the other's
        answer = driver.find_element(By.ID, "messages-container").text
        assert "[ollama] llama3.1:8b:" in answer and "Sourdough starter note" in answer, answer[-2000:]
        assert "Tidal turbine log" not in answer, answer[-2000:]
        # the embeddings came through the gateway: its embedding alias on the Ollama backend under the catalog's tag
        assert {r["model"] for r in ollama.requests if r["path"] == "/api/embed"} == {embedding_source}, ollama.requests
        _screenshot(driver, tmp_path / "open-webui-rag.png")
        _rag_settings_took_effect(webui, lab["env"], proxy, token, tmp_path)


def _rag_settings_took_effect(webui, env, proxy, token, tmp_path):
    """The settings the RAG flow depends on, as the running Open WebUI and the gateway report them."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = "Bearer " + token
    # ENABLE_RETRIEVAL_QUERY_GENERATION=False: retrieval searched with the person's own question (no extra model call)
    tasks = session.get(webui.url + "/api/v1/tasks/config", timeout=30).json()
    assert tasks["ENABLE_RETRIEVAL_QUERY_GENERATION"] is (env["ENABLE_RETRIEVAL_QUERY_GENERATION"] == "True") is False
    # ENABLE_FORWARD_USER_INFO_HEADERS: the gateway saw the signed-in person on Open WebUI's key (its metrics' end_user)
    status, metrics = proxy.get("/metrics/")
    assert status == 200, metrics
    person = {"api_key_alias": "open-webui", "end_user": ADMIN["email"]}
    assert person in _per_key_and_person_panel(metrics, tmp_path), metrics[-3000:]
    # ENABLE_PERSISTENT_CONFIG=False: an admin's change applies but is not written to the database, so the next start
    # takes the role's env again (with it True, Open WebUI would keep the database's value over the env)
    changed = session.post(webui.url + "/ollama/config/update", timeout=30, json={
        "ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": ["http://127.0.0.1:9"], "OLLAMA_API_CONFIGS": {}})
    assert changed.status_code == 200 and changed.json()["ENABLE_OLLAMA_API"] is True, changed.text
    with sqlite3.connect(Path(env["DATA_DIR"]) / "webui.db") as db:
        assert db.execute("SELECT key FROM config WHERE key LIKE 'ollama.%'").fetchall() == []


def _per_key_and_person_panel(exposition, tmp_path):
    """The series of the gateway dashboard's "Requests per key and person" panel, its query evaluated by a REAL
    Prometheus (Debian's, tools/dashboard_png.py) over the real proxy's request counters: each series of the exposition
    backfilled as two samples a minute apart, 0 and the value the proxy reported."""
    from tools.dashboard_png import END, Prometheus

    dashboard = json.loads((REPO / "roles" / "monitoring" / "files" / "dashboards" / "gateway.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"] == "Requests per key and person")
    counter = "litellm_proxy_total_requests_metric"
    samples = [line.rsplit(" ", 1) for line in exposition.splitlines() if line.startswith(counter + "_total{")]
    assert samples, exposition[-2000:]
    openmetrics = "".join(f"{series} 0 {END - 60}\n{series} {value} {END}\n" for series, value in samples)
    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(tmp_path / "prometheus", f"# TYPE {counter} counter\n{openmetrics}# EOF\n")
    try:
        status, body = json_request("GET", f"http://127.0.0.1:{prometheus.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": substitute_grafana_vars(panel["targets"][0]["expr"]), "time": END}))
    finally:
        prometheus.stop()
    assert status == 200 and body["status"] == "success", body
    return [r["metric"] for r in body["data"]["result"]]


# -- web search by the lab's SearXNG (component searxng) ---------------------------------------------------------------

class _PageHandler(JSONHandler):
    def do_GET(self):  # noqa: N802 - http.server naming
        self.srv.requests.append(self.path)
        self.send_body(200, b"<html><body><p>Page text that only a page loader would see.</p></body></html>", "text/html")


class _Pages(BackgroundHTTPServer):
    """A local web server for the search result's page: it counts the requests, so the test proves Open WebUI loads
    no page itself (BYPASS_WEB_SEARCH_WEB_LOADER: in the lab Open WebUI has no internet egress, docs/network.md)."""

    handler_base = _PageHandler
    thread_name = "result-pages"

    def __init__(self):
        self.host, self.port = "127.0.0.1", 0
        self.requests = []


def test_a_user_asks_with_web_search_and_the_answer_cites_the_searxng_result(tmp_path):
    """Web search on (the role's env with open_webui_web_search_enabled, as deploy sets it while the searxng component
    is on): Open WebUI asks SearXNG (the stand-in, with the search.formats of the settings.yml the searxng role
    renders) for JSON, puts the result's text into the prompt the model gets through the gateway, and the answer's
    sources name the result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from urllib.parse import urlsplit

    from tests.support.deploy_render import load_objects, render_roles
    from tests.support.searxng_server import SearXNGServer, rendered_settings

    pages = _Pages().start()
    result = {"url": pages.url + "/lab-gpu-notes", "title": "Lab GPU notes",
              "content": "The lab's single GPU is an RTX 4090 shared by vLLM and Ollama."}
    formats = rendered_settings(load_objects(render_roles(tmp_path / "searxng", ["searxng"])))["search"]["formats"]
    searxng = SearXNGServer([result], formats=formats).start()
    try:
        with _lab(tmp_path, {"open_webui_web_search_enabled": True}, {"searxng": searxng.url}) as running:
            webui, webui_env, qdrant = running["webui"], running["env"], running["qdrant"]
            with _browser(webui, tmp_path) as (driver, wait, act):
                _sign_up(driver, act, webui.url)
                # web search switched on as a user does: the message input's Integrations menu, its Web Search
                # switch (offered only because ENABLE_WEB_SEARCH is on)
                act(lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label=Integrations]").click())
                act(lambda d: next(e for e in d.find_elements(By.XPATH, "//*[normalize-space(text())='Web Search']")
                                   if e.is_displayed()).click())
                act(lambda d: d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE))
                prompt = "Which GPU does the lab share?"
                act(lambda d: d.find_element(By.ID, "chat-input").click())
                act(lambda d: d.find_element(By.ID, "chat-input").send_keys(prompt))
                act(lambda d: d.find_element(By.ID, "send-message-button").click())
                # the model's answer (the stand-in repeats the prompt it got) holds the result's text: Open WebUI
                # put SearXNG's content into the prompt, through the gateway
                wait.until(lambda d: result["content"] in d.find_element(By.ID, "messages-container").text)
                # the answer cites the result: the citation names its site and the sources list has its link
                host = urlsplit(result["url"]).netloc
                messages = wait.until(lambda d: d.find_element(By.ID, "messages-container").text)
                assert "Retrieved 1 source" in messages and host in messages, messages[-1500:]
                act(lambda d: _button(d, "1 Source").click())
                wait.until(lambda d: result["url"] in d.find_element(By.TAG_NAME, "body").get_attribute("innerHTML"))
                _screenshot(driver, tmp_path / "open-webui-web-search.png")
                token = driver.execute_script("return localStorage.token")
            # every web search setting the role renders, as the running Open WebUI reports it to its admin
            session = requests.Session()
            session.trust_env = False
            session.headers["Authorization"] = "Bearer " + token
            web = session.get(webui.url + "/api/v1/retrieval/config", timeout=30).json()["web"]
            assert (web["ENABLE_WEB_SEARCH"], web["WEB_SEARCH_ENGINE"]) == (True, "searxng")
            assert web["SEARXNG_QUERY_URL"] == webui_env["SEARXNG_QUERY_URL"] == searxng.url + "/search?q=<query>"
            assert web["WEB_SEARCH_RESULT_COUNT"] == int(webui_env["WEB_SEARCH_RESULT_COUNT"])
            assert web["BYPASS_WEB_SEARCH_WEB_LOADER"] is True
            assert web["BYPASS_WEB_SEARCH_EMBEDDING_AND_RETRIEVAL"] is True
            qdrant_requests = list(qdrant.requests)
    finally:
        searxng.stop()
        pages.stop()
    # Open WebUI asked SearXNG for JSON (format=json is what the stand-in, like SearXNG, answers only when listed)
    searches = searxng.searches("json")
    assert searches and all(s["q"] for s in searches), searxng.requests
    # no page was loaded by Open WebUI: the result's text is SearXNG's (BYPASS_WEB_SEARCH_WEB_LOADER)
    assert pages.requests == []
    # the embeddings were not asked for the search results (BYPASS_WEB_SEARCH_EMBEDDING_AND_RETRIEVAL): no Qdrant write
    assert not [r for r in qdrant_requests if "/points" in r[1]], qdrant_requests
