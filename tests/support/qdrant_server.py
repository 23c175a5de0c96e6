"""A local stand-in for Qdrant's REST API, its semantics those of ``qdrant-client``'s LOCAL MODE.

No Qdrant server is installable from the package registries here, so the collections and points live in
``QdrantClient(location=":memory:")``'s engine (``qdrant_client.local.qdrant_local.QdrantLocal``): the Qdrant team's
own Python implementation of collections, points, filters, scoring (Cosine, Dot, Euclid, Manhattan) and paging.
This file only speaks HTTP in front of it: each route parses the request body into the REST model the real server's
OpenAPI schema declares (``qdrant_client.http.models``, the same classes the remote client sends), calls the local
engine, and answers in the real server's envelope ``{"result": ..., "status": "ok", "time": s}``; errors as
``{"status": {"error": "..."}, "time": s}`` with the real server's status codes (400 a bad body, 401 no or a wrong
key, 404 a missing collection or an unknown route, 409 a collection that exists).

Routes (qdrant-client 1.18's REST paths, ``qdrant_client/http/api/*.py``; what the qdrant role and Open WebUI's
``qdrant`` and ``qdrant_multitenancy`` vector stores call):
``GET /`` (the version, qdrant-client 1.18.0's own), ``GET /collections``, ``GET|PUT|DELETE /collections/{name}``, ``GET /collections/{name}/exists``,
``PUT /collections/{name}/index`` (accepted; local mode keeps no payload index and filters without one),
``PUT /collections/{name}/points`` (upsert: a list or a batch), ``POST /collections/{name}/points/{query,scroll,
count,delete}``. Every other path answers 404, as the real server does for a route it does not have; a route the
real server has and this one does not (snapshots, aliases, payload updates, ...) answers 404 too, so nothing
silently succeeds. Not emulated: gRPC, payload indexes' effect on speed, sharding, persistence (in memory only).

Auth as the real server's: the ``api-key`` header (or ``Authorization: Bearer``) on every route except
``/``, ``/healthz``, ``/readyz`` and ``/livez`` (401 otherwise). Every request is logged (method, path) so tests can assert
what was asked.

qdrant-client is pinned in requirements/open-webui.txt (Open WebUI needs it for ``VECTOR_DB=qdrant``), so the server
runs in that venv: ``QdrantServer`` starts it there as a subprocess (``qdrant_python()``), and ``main()`` started by
a Python without qdrant-client re-executes itself there. By hand:
    QDRANT__SERVICE__API_KEY=KEY python -m tests.support.qdrant_server --port 0 --port-file qdrant.port
The key comes, like the real server's, from ``QDRANT__SERVICE__API_KEY``, or ``--api-key-file PATH``, or
``--api-key=KEY`` (never ``--api-key KEY``: a generated key starting with ``-`` would be taken for an option).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.serve import (BackgroundHTTPServer, JSONHandler, add_secret_option, run_in_foreground, secret_value,
                                 stop_process_group)

REPO = Path(__file__).resolve().parents[2]
OPEN_PATHS = ("/", "/healthz", "/readyz", "/livez")  # no key needed (Qdrant's auth whitelist)
KEY_ENV = "QDRANT__SERVICE__API_KEY"  # where the real Qdrant reads its API key
DEFAULT_KEY = "qdrant-test-key"
_NAME = r"(?P<name>[A-Za-z0-9_.-]+)"


def qdrant_python() -> str:
    """A Python with qdrant-client: ``$AILAB_QDRANT_PYTHON``, else this one if it has it, else Open WebUI's venv."""
    if os.environ.get("AILAB_QDRANT_PYTHON"):
        return os.environ["AILAB_QDRANT_PYTHON"]
    if importlib.util.find_spec("qdrant_client") is not None:
        return sys.executable
    venv = Path(os.environ.get("AILAB_OPEN_WEBUI_VENV") or REPO / ".venv-open-webui")
    if not (venv / "bin" / "python").exists():
        raise RuntimeError(f"no Python with qdrant-client: {venv} is missing; run `make setup` (qdrant-client is "
                           "pinned in requirements/open-webui.txt) or set AILAB_QDRANT_PYTHON")
    return str(venv / "bin" / "python")


# -- the server (runs where qdrant_client imports) -------------------------------------------------------------------

class QdrantError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _routes():
    """(method, path pattern, handler(engine, name, body) -> result) for every route served."""
    from qdrant_client.http import models  # pylint: disable=import-outside-toplevel

    def parse(model, body):
        return model.model_validate(body if body is not None else {})

    def collection(engine, name):
        if not engine.collection_exists(name):
            raise QdrantError(404, f"Not found: Collection `{name}` doesn't exist!")
        return name

    def create(engine, name, body):
        request = parse(models.CreateCollection, body)
        if engine.collection_exists(name):
            raise QdrantError(409, f"Wrong input: Collection `{name}` already exists!")
        vectors = request.vectors if isinstance(request.vectors, dict) else {"": request.vectors}
        if any(v is None or v.size < 1 for v in vectors.values()):
            raise QdrantError(400, "Validation error in JSON body: [vectors.size: value 0 invalid, must be 1 or larger]")
        return engine.create_collection(name, vectors_config=request.vectors,
                                        sparse_vectors_config=request.sparse_vectors, metadata=request.metadata)

    def delete_collection(engine, name, _body):
        existed = engine.collection_exists(name)
        engine.delete_collection(name)
        return existed

    def upsert(engine, name, body):
        request = models.PointsList.model_validate(body) if "points" in (body or {}) else parse(models.PointsBatch, body)
        points = request.points if isinstance(request, models.PointsList) else request.batch
        return engine.upsert(collection(engine, name), points, update_filter=request.update_filter,
                             update_mode=request.update_mode)

    def query(engine, name, body):
        request = parse(models.QueryRequest, body)
        return engine.query_points(
            collection(engine, name), query=request.query, using=request.using, prefetch=request.prefetch,
            query_filter=request.filter, search_params=request.params, limit=request.limit or 10,
            offset=request.offset, with_payload=request.with_payload or False, with_vectors=request.with_vector or False,
            score_threshold=request.score_threshold, lookup_from=request.lookup_from)

    def scroll(engine, name, body):
        request = parse(models.ScrollRequest, body)
        points, offset = engine.scroll(
            collection(engine, name), scroll_filter=request.filter, limit=request.limit or 10, order_by=request.order_by,
            offset=request.offset, with_payload=True if request.with_payload is None else request.with_payload,
            with_vectors=request.with_vector or False)
        return models.ScrollResult(points=points, next_page_offset=offset)

    def count(engine, name, body):
        return engine.count(collection(engine, name), count_filter=parse(models.CountRequest, body).filter)

    def delete_points(engine, name, body):
        selector = (models.PointIdsList if "points" in (body or {}) else models.FilterSelector).model_validate(body)
        return engine.delete(collection(engine, name), selector)

    def create_index(engine, name, body):
        request = parse(models.CreateFieldIndex, body)
        return engine.create_payload_index(collection(engine, name), request.field_name, request.field_schema)

    return [
        ("GET", r"/collections", lambda engine, _name, _body: engine.get_collections()),
        ("GET", rf"/collections/{_NAME}/exists", lambda engine, name, _body: {"exists": engine.collection_exists(name)}),
        ("GET", rf"/collections/{_NAME}", lambda engine, name, _body: engine.get_collection(collection(engine, name))),
        ("PUT", rf"/collections/{_NAME}", create),
        ("DELETE", rf"/collections/{_NAME}", delete_collection),
        ("PUT", rf"/collections/{_NAME}/index", create_index),
        ("PUT", rf"/collections/{_NAME}/points", upsert),
        ("POST", rf"/collections/{_NAME}/points/query", query),
        ("POST", rf"/collections/{_NAME}/points/scroll", scroll),
        ("POST", rf"/collections/{_NAME}/points/count", count),
        ("POST", rf"/collections/{_NAME}/points/delete", delete_points),
    ]


def _jsonable(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)   # as the server: serde skips unset fields
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Handler(JSONHandler):
    srv = None  # set by BackgroundHTTPServer

    def _authorized(self):
        key = self.headers.get("api-key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            key = key or auth[7:]
        return key == self.srv.current_key()

    def _route(self, method):
        from pydantic import ValidationError  # pylint: disable=import-outside-toplevel

        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        self.srv.log_request(method, path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def error(status, message):
            self.send_json(status, {"status": {"error": message}, "time": time.monotonic() - started})

        if path in OPEN_PATHS and method == "GET":
            # the version, not in the envelope (qdrant-client's compatibility check reads it at the top level)
            return self.send_json(200, {"title": "qdrant - vector search engine", "version": self.srv.version})
        if not self._authorized():
            return error(401, "Must provide an API key or an Authorization bearer token")
        for verb, pattern, handler in self.srv.routes:
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                break
        else:
            return error(404, f"Not found: {method} {path}")
        try:
            body = json.loads(raw) if raw.strip() else None
            with self.srv.lock:
                result = handler(self.srv.engine, match.groupdict().get("name"), body)
        except QdrantError as err:
            return error(err.status, str(err))
        except (ValueError, ValidationError) as err:  # json, pydantic (a ValueError too) and the engine's own checks
            return error(400, f"Wrong input: {err}")
        except Exception as err:  # pylint: disable=broad-except  # the real server's answer to its own failure
            return error(500, f"Service internal error: {err}")
        return self.send_json(200, {"result": _jsonable(result), "status": "ok", "time": time.monotonic() - started})

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_PUT(self):  # noqa: N802
        self._route("PUT")

    def do_POST(self):  # noqa: N802
        self._route("POST")

    def do_DELETE(self):  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._route("PATCH")


class _LocalQdrantHTTP(BackgroundHTTPServer):
    """The HTTP front over one in-memory local-mode engine (runs in a Python with qdrant-client)."""

    handler_base = _Handler
    thread_name = "qdrant-test-server"

    def __init__(self, host, port, api_key, key_file=None, request_log=None, collections=None):
        from qdrant_client import QdrantClient, models  # pylint: disable=import-outside-toplevel

        self.host, self.port, self.api_key, self.key_file, self.request_log = host, port, api_key, key_file, request_log
        self.client = QdrantClient(location=":memory:")  # kept: the client closes its engine when collected
        self.engine = self.client._client  # pylint: disable=protected-access  # the QdrantLocal engine itself
        self.version = self.engine.info().version
        self.routes = _routes()
        self.lock = threading.Lock()
        for name, (size, distance) in (collections or {}).items():
            self.engine.create_collection(name, vectors_config=models.VectorParams(size=size, distance=distance))

    def current_key(self):
        """The key to check: the key file is read on each request, so a test can change the key the server
        expects without a restart (the real server reads its key once at start)."""
        if self.key_file:
            return Path(self.key_file).read_text(encoding="utf-8").splitlines()[0]
        return self.api_key

    def log_request(self, method, path):
        if self.request_log:
            with self.lock, open(self.request_log, "a", encoding="utf-8") as log:
                log.write(json.dumps([method, path]) + "\n")


# -- the launcher the tests use (any Python) -------------------------------------------------------------------------

class QdrantServer:
    """The stand-in in its own process under ``qdrant_python()``; ``url``, ``api_key`` (settable), ``requests``."""

    def __init__(self, host="127.0.0.1", port=0, api_key=DEFAULT_KEY, collections=None, startup_timeout=60.0):
        self.host, self.port = host, port
        self.collections = dict(collections or {})  # name -> {"size": N, "distance": D}
        self.startup_timeout = startup_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="qdrant-stand-in-"))
        self._key_file, self._log = self._dir / "api-key", self._dir / "requests.jsonl"
        self.api_key = api_key
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self._key_file.read_text(encoding="utf-8").splitlines()[0]

    @api_key.setter
    def api_key(self, value: str) -> None:
        tmp = self._key_file.with_suffix(".tmp")
        tmp.write_text(value + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self._key_file)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far."""
        if not self._log.exists():
            return []
        return [tuple(json.loads(line)) for line in self._log.read_text(encoding="utf-8").splitlines() if line]

    def start(self) -> "QdrantServer":
        port_file = self._dir / "port"
        cmd = [qdrant_python(), "-m", "tests.support.qdrant_server", "--host", self.host, "--port", str(self.port),
               "--port-file", str(port_file), "--api-key-file", str(self._key_file), "--reread-key",
               "--request-log", str(self._log)]
        for name, spec in self.collections.items():
            cmd += ["--collection", f"{name}={spec['size']}:{spec.get('distance', 'Cosine')}"]
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Qdrant stand-in did not start: " + self.proc.stdout.read().decode(errors="replace"))
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc)

    def __enter__(self) -> "QdrantServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_args(argv=None):
    """The command line, with ``api_key`` resolved (--api-key=KEY, --api-key-file, $QDRANT__SERVICE__API_KEY)."""
    parser = argparse.ArgumentParser(description="Local Qdrant REST API on qdrant-client's local mode (see module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    add_secret_option(parser, "api-key", env=KEY_ENV, what="the API key every request must carry")
    parser.add_argument("--reread-key", action="store_true",
                        help="read --api-key-file on every request (tests change the key the server expects)")
    parser.add_argument("--collection", action="append", default=[], metavar="NAME=SIZE[:DISTANCE]",
                        help="a collection that exists already (distance Cosine unless given)")
    parser.add_argument("--request-log", help="append each request's [method, path] to this file (JSON lines)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)
    args.api_key = secret_value(args, "api-key", env=KEY_ENV, default=DEFAULT_KEY)
    if args.reread_key and not args.api_key_file:
        parser.error("--reread-key needs --api-key-file")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if importlib.util.find_spec("qdrant_client") is None:  # this Python has no qdrant-client: run where it is
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        python = qdrant_python()
        os.execve(python, [python, "-m", "tests.support.qdrant_server", *argv], env)
    existing = {}
    for spec in args.collection:
        name, _, rest = spec.partition("=")
        size, _, distance = rest.partition(":")
        existing[name] = (int(size), distance or "Cosine")
    srv = _LocalQdrantHTTP(args.host, args.port, args.api_key, key_file=args.api_key_file if args.reread_key else None,
                           request_log=args.request_log, collections=existing).start()
    return run_in_foreground(srv, f"qdrant test server (qdrant-client local mode) on {srv.url}", args.port_file)


if __name__ == "__main__":
    raise SystemExit(main())
