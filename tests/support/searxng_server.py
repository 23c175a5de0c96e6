"""A local stand-in for SearXNG's search API (the part Open WebUI's ``searxng`` web search engine calls).

EMULATED, modelled on searxng/searxng (the pinned image's commit 799086874, ``searx/webapp.py`` ``search()``,
``index_error()``, ``health()`` and ``searx/webutils.py`` ``get_json_response()``):

* ``GET|POST /search`` reads ``format`` (default ``html``; a value outside ``html, csv, json, rss`` counts as
  ``html``); a format the instance's ``search.formats`` does not list is refused with **403** (``flask.abort(403)``,
  an HTML body), exactly what a SearXNG whose settings.yml lacks ``json`` answers Open WebUI;
* no ``q`` (or an empty one) with ``format=json``: 400 ``{"error": "No query"}``;
* ``format=json``: 200 ``application/json`` ``{"query", "results": [{"url", "title", "content", "engine",
  "engines", "score", "category", ...}], "answers": [], "corrections": [], "infoboxes": [], "suggestions": [],
  "unresponsive_engines": []}``; ``format=html``: a minimal HTML page (the real one renders its theme);
* ``GET /healthz``: ``OK`` (text/plain), the role's probes' path.

The instance's ``search.formats`` is given by the test: read from the settings.yml the searxng role renders into its
ConfigMap, so a role that dropped ``json`` makes this server refuse Open WebUI as SearXNG would.
NOT emulated: the metasearch itself (the results are the ones the test gives, for any query), ranking, engines,
the limiter, csv/rss bodies, preferences and cookies. Every request is recorded in ``requests``
(method, path, the form as a dict) so the test can assert what Open WebUI asked.
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import yaml

from tests.support.serve import BackgroundHTTPServer, JSONHandler

OUTPUT_FORMATS = ("html", "csv", "json", "rss")   # searx/webapp.py OUTPUT_FORMATS


def rendered_settings(objects):
    """settings.yml of the ConfigMap ``searxng-settings`` among the objects the searxng role renders."""
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "searxng-settings")
    return yaml.safe_load(config_map["data"]["settings.yml"])


class _Handler(JSONHandler):
    srv = None  # set by BackgroundHTTPServer

    def _form(self):
        """Flask's request.form as SearXNG builds it: the query string, then a POSTed urlencoded body."""
        parts = urlsplit(self.path)
        form = dict(parse_qsl(parts.query, keep_blank_values=True))
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            form.update(parse_qsl(body, keep_blank_values=True))
        return parts.path, form

    def _text(self, status, text, content_type):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self):
        path, form = self._form()
        with self.srv.lock:
            self.srv.requests.append((self.command, path, form))
        if path == "/healthz" and self.command == "GET":
            return self._text(200, "OK", "text/plain; charset=utf-8")
        if path != "/search":
            return self._text(404, "<h1>Not Found</h1>", "text/html; charset=utf-8")
        output_format = form.get("format", "html")
        if output_format not in OUTPUT_FORMATS:
            output_format = "html"
        if output_format not in self.srv.formats:
            return self._text(403, "<!doctype html><title>403 Forbidden</title><h1>Forbidden</h1>",
                              "text/html; charset=utf-8")
        query = form.get("q") or ""
        if not query:
            if output_format == "json":
                return self.send_json(400, {"error": "No query"})
            return self._text(200, "<!doctype html><title>SearXNG</title>", "text/html; charset=utf-8")
        if output_format != "json":
            return self._text(200, "<!doctype html><title>%s - SearXNG</title>" % query, "text/html; charset=utf-8")
        results = [dict({"engine": "stand-in", "engines": ["stand-in"], "score": 1.0 / (i + 1), "category": "general",
                         "positions": [i + 1], "template": "default.html", "parsed_url": list(urlsplit(r["url"]))}, **r)
                   for i, r in enumerate(self.srv.results)]
        return self.send_json(200, {"query": query, "number_of_results": 0, "results": results, "answers": [],
                                    "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []})

    def do_GET(self):  # noqa: N802 - http.server naming
        self._route()

    def do_POST(self):  # noqa: N802 - http.server naming
        self._route()


class SearXNGServer(BackgroundHTTPServer):
    """``results``: what every search answers (each with url, title, content); ``formats``: the instance's
    ``search.formats`` (from the rendered settings.yml)."""

    handler_base = _Handler
    thread_name = "searxng-stand-in"

    def __init__(self, results, formats, host="127.0.0.1", port=0):
        self.host, self.port = host, port
        self.results = [dict(r) for r in results]
        self.formats = list(formats)
        self.requests = []
        self.lock = threading.Lock()

    def searches(self, output_format="json"):
        """The forms of the /search requests with that format."""
        with self.lock:
            return [form for method, path, form in self.requests
                    if path == "/search" and form.get("format", "html") == output_format]
