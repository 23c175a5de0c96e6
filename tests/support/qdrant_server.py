"""A local stand-in for the part of Qdrant's HTTP API (1.19) the qdrant role uses.

EMULATED (as Qdrant documents and answers it): the ``api-key`` header (or ``Authorization:
Bearer``) is required on every route except ``/healthz``, ``/readyz``, ``/livez`` (401 otherwise);
``GET /collections/{name}/exists`` -> ``{"result": {"exists": bool}}``; ``PUT /collections/{name}``
with ``{"vectors": {"size": N, "distance": D}}`` creates it (``{"result": true}``), 409 if it exists,
400 on a bad body; ``GET /collections/{name}`` returns its config; ``GET /collections`` lists them.
NOT emulated: points, search, snapshots, gRPC, metrics, anything else (404).

Every request is logged in ``requests`` (method, path) so tests can assert what was asked.
    QDRANT__SERVICE__API_KEY=KEY python -m tests.support.qdrant_server --port 0 --port-file qdrant.port
The key comes, like the real server's, from ``QDRANT__SERVICE__API_KEY``, or ``--api-key-file PATH``, or
``--api-key=KEY`` (never ``--api-key KEY``: a generated key starting with ``-`` would be taken for an option).
"""

from __future__ import annotations

import argparse
import json
import re
import threading

from tests.support.serve import BackgroundHTTPServer, JSONHandler, add_secret_option, run_in_foreground, secret_value

OPEN_PATHS = ("/healthz", "/readyz", "/livez")
KEY_ENV = "QDRANT__SERVICE__API_KEY"  # where the real Qdrant reads its API key
DEFAULT_KEY = "qdrant-test-key"
DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
_COLLECTION = re.compile(r"^/collections/([A-Za-z0-9_-]+)(/exists)?$")


class _Handler(JSONHandler):
    srv = None  # set by BackgroundHTTPServer

    def _authorized(self):
        key = self.headers.get("api-key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            key = key or auth[7:]
        return key == self.srv.api_key

    def _route(self, method):
        path = self.path.split("?", 1)[0]
        with self.srv.lock:
            self.srv.requests.append((method, path))
        if path in OPEN_PATHS and method == "GET":
            return self.send_json(200, {"title": "qdrant - vector search engine", "version": "1.19.0"})
        if not self._authorized():
            return self.send_json(401, {"status": {"error": "Must provide an API key or an Authorization bearer token"}})
        if path == "/collections" and method == "GET":
            with self.srv.lock:
                names = sorted(self.srv.collections)
            return self.send_json(200, {"result": {"collections": [{"name": n} for n in names]}, "status": "ok"})
        match = _COLLECTION.match(path)
        if not match:
            return self.send_json(404, {"status": {"error": "Not found"}})
        name, exists = match.group(1), match.group(2)
        with self.srv.lock:
            if method == "GET" and exists:
                return self.send_json(200, {"result": {"exists": name in self.srv.collections}, "status": "ok"})
            if method == "GET":
                if name not in self.srv.collections:
                    return self.send_json(404, {"status": {"error": "Collection `%s` doesn't exist!" % name}})
                return self.send_json(200, {"result": {"config": {"params": {"vectors": self.srv.collections[name]}}}})
            if method == "PUT" and not exists:
                if name in self.srv.collections:
                    return self.send_json(409, {"status": {"error": "Wrong input: Collection `%s` already exists!" % name}})
                try:
                    vectors = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))["vectors"]
                    size, distance = int(vectors["size"]), vectors["distance"]
                except (ValueError, KeyError, TypeError):
                    return self.send_json(400, {"status": {"error": "Json deserialize error: missing field `vectors`"}})
                if size < 1 or distance not in DISTANCES:
                    return self.send_json(400, {"status": {"error": "Wrong input: bad vector size or distance"}})
                self.srv.collections[name] = {"size": size, "distance": distance}
                return self.send_json(200, {"result": True, "status": "ok"})
        return self.send_json(405, {"status": {"error": "Method not allowed"}})

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_PUT(self):  # noqa: N802
        self._route("PUT")


class QdrantServer(BackgroundHTTPServer):
    """Qdrant collections API on 127.0.0.1 (see the module docstring)."""

    handler_base = _Handler
    thread_name = "qdrant-test-server"

    def __init__(self, host="127.0.0.1", port=0, api_key=DEFAULT_KEY, collections=None):
        self.host, self.port, self.api_key = host, port, api_key
        self.collections = dict(collections or {})
        self.requests = []
        self.lock = threading.Lock()


def parse_args(argv=None):
    """The command line, with ``api_key`` resolved (--api-key=KEY, --api-key-file, $QDRANT__SERVICE__API_KEY)."""
    parser = argparse.ArgumentParser(description="Local Qdrant collections API test server (see module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    add_secret_option(parser, "api-key", env=KEY_ENV, what="the API key every request must carry")
    parser.add_argument("--collection", action="append", default=[], metavar="NAME=SIZE",
                        help="a collection that exists already (Cosine)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)
    args.api_key = secret_value(args, "api-key", env=KEY_ENV, default=DEFAULT_KEY)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    existing = dict((n, {"size": int(s), "distance": "Cosine"}) for n, s in (c.split("=", 1) for c in args.collection))
    srv = QdrantServer(args.host, args.port, api_key=args.api_key, collections=existing).start()
    return run_in_foreground(srv, f"qdrant test server on {srv.url}", args.port_file)


if __name__ == "__main__":
    raise SystemExit(main())
