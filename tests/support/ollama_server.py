"""A local server speaking the Ollama HTTP API, for tests (no GPU, no model runtime here).

What is emulated (shapes follow the real Ollama server, checked against its API docs):

- ``GET /`` -> ``Ollama is running``; ``GET /api/version``.
- ``POST /api/pull`` ``{"model": "name:tag", "stream": true}`` streams NDJSON:
  ``{"status": "pulling manifest"}``, then per layer
  ``{"status": "pulling <12 hex>", "digest": "sha256:<64 hex>", "total": N, "completed": n}``,
  then ``verifying sha256 digest``, ``writing manifest``, ``success``. ``"stream": false``
  answers one JSON object (``{"status": "success"}``) or an error with HTTP 500.
  An unknown model gives the real error line ``pull model manifest: file does not exist``
  AFTER ``pulling manifest`` with HTTP 200 (the stream has started).
- Partial pulls resume: bytes of a layer already received before a failure or a dropped
  connection are kept, and the next pull of the same layer starts at ``completed`` = those bytes
  (Ollama keeps partial blobs and resumes them).
- ``GET /api/tags`` (local models: name, model, modified_at, size, digest (64 hex, no prefix),
  details), ``POST /api/show`` (404 ``{"error": "model 'x' not found"}`` if absent),
  ``DELETE /api/delete`` (404 if absent), ``GET /api/ps`` (loaded models with ``size_vram``,
  ``expires_at``), ``POST /api/generate``: with a prompt it "loads" the model (listed by
  /api/ps) and answers a fixed text; with ``"keep_alive": 0`` and no prompt it unloads it
  (``done_reason: "unload"``), after ``unload_delay`` seconds (a real unload is not instant).
- Name normalisation like Ollama: ``llama3.1`` means ``llama3.1:latest``.

Not emulated: real model files or inference, /api/chat, /api/embed, /api/create, /api/push,
blob uploads, registry authentication, parallel part downloads (one stream per layer here).

Switches (``server.behave(...)``, or CLI flags) to exercise the client's failure paths:
``fail_after`` (bytes streamed in a pull before an ``{"error": ...}`` line at HTTP 200),
``drop_after`` (bytes before the TCP connection is cut mid-stream), ``delay`` (seconds slept
between stream lines: a slow server), ``stall`` (seconds of silence before the first pull
line: a hung server), ``hold_at`` (bytes of a pull after which it pauses, repeating its last
progress line every 0.2 s as a waiting download does, until the test calls ``release()``;
``holding`` is set while it waits), each for the next ``times`` pulls (default 1; 0 = always).

Use in-process::

    srv = OllamaServer(registry={"tiny:1b": 3 * 1024 * 1024}); srv.start(); srv.url ...; srv.stop()

or as a CLI: ``python -m tests.support.ollama_server --port 11434 [--model tiny:1b=3145728]``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from tests.support.serve import BackgroundHTTPServer, run_in_foreground

DEFAULT_REGISTRY = {
    "tinyllama:1b": 2 * 1024 * 1024,
    "nomic-embed-text:latest": 512 * 1024,
    "qwen2.5:0.5b": 1024 * 1024,
}
CHUNK = 64 * 1024


def normalize(name: str) -> str:
    """Ollama's short form: ``llama3.1`` -> ``llama3.1:latest``; strips ``registry.ollama.ai/library/``."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    return name


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat()


class _Model:
    """A remote model: a manifest of layers (digest, size) generated deterministically."""

    def __init__(self, name: str, size: int, generation: int = 0):
        self.name = name
        self.generation = generation
        seed = f"{name}#{generation}".encode()
        sizes = [size, 1024 + generation, 96]
        media = ["application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
                 "application/vnd.ollama.image.params"]
        self.layers = []
        for i, (sz, mt) in enumerate(zip(sizes, media)):
            # the digest is a real sha256 of the (virtual) blob content, as in Ollama
            digest = "sha256:" + hashlib.sha256(seed + b"/%d/%d" % (i, sz)).hexdigest()
            self.layers.append({"digest": digest, "size": sz, "mediaType": mt})
        manifest = json.dumps({"schemaVersion": 2, "layers": self.layers}, sort_keys=True).encode()
        self.digest = hashlib.sha256(manifest).hexdigest()
        self.size = sum(sz for sz in sizes)


class OllamaServer(BackgroundHTTPServer):
    """In-process Ollama API server. ``start()`` / ``stop()``, ``url``; state is inspectable."""

    handler_base = None  # set below, once _Handler is defined
    thread_name = "ollama-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, registry: dict | None = None,
                 local: list | None = None, chunk: int = CHUNK):
        self.host = host
        self.port = port
        self.chunk = chunk
        self.lock = threading.RLock()
        self.remote: dict[str, _Model] = {}
        for name, size in (registry if registry is not None else DEFAULT_REGISTRY).items():
            self.remote[normalize(name)] = _Model(normalize(name), size)
        self.local: dict[str, dict] = {}          # name -> {"model": _Model, "modified_at": str}
        self.partial: dict[str, int] = {}         # layer digest -> bytes already received
        self.blobs: set[str] = set()              # complete layer digests
        self.loaded: dict[str, dict] = {}         # name -> {"expires_at": str, "size_vram": int}
        self.requests: list[tuple[str, str, dict | None]] = []   # (method, path, body) log
        self.bytes_sent = 0                       # layer bytes streamed (to check resume)
        self.unload_delay = 0.0
        self.holding = threading.Event()          # a pull reached ``hold_at`` and waits for release()
        self._released = threading.Event()
        self._behaviour: dict = {}
        self._httpd: ThreadingHTTPServer | None = None
        for name in local or []:
            self.install(name)

    # ---- control -------------------------------------------------------------------------


    def behave(self, fail_after: int | None = None, drop_after: int | None = None, delay: float = 0.0,
               stall: float = 0.0, times: int = 1, message: str = "max retries exceeded: unexpected EOF",
               hold_at: int | None = None) -> None:
        """Set failure switches for the next ``times`` pulls (0 = every pull until ``reset()``)."""
        with self.lock:
            self._behaviour = {"fail_after": fail_after, "drop_after": drop_after, "delay": delay,
                               "stall": stall, "times": times, "message": message, "hold_at": hold_at}
            self.holding.clear()
            self._released.clear()

    def release(self) -> None:
        """Let a pull paused at ``hold_at`` go on."""
        self._released.set()

    def stop(self) -> None:
        self._released.set()   # never leave a handler thread waiting
        super().stop()

    def reset(self) -> None:
        with self.lock:
            self._behaviour = {}

    def publish(self, name: str, size: int | None = None) -> str:
        """Publish a new version of ``name`` in the registry (``latest`` will see a new digest)."""
        name = normalize(name)
        with self.lock:
            old = self.remote.get(name)
            gen = old.generation + 1 if old else 0
            self.remote[name] = _Model(name, size if size is not None else (old.layers[0]["size"] if old else CHUNK), gen)
            return self.remote[name].digest

    def install(self, name: str) -> None:
        """Make ``name`` a local model as if pulled earlier."""
        name = normalize(name)
        with self.lock:
            model = self.remote[name]
            self.local[name] = {"model": model, "modified_at": _now()}
            self.blobs.update(layer["digest"] for layer in model.layers)

    def load(self, name: str, size_vram: int | None = None) -> None:
        name = normalize(name)
        with self.lock:
            model = self.local[name]["model"]
            self.loaded[name] = {"expires_at": _now(), "size_vram": size_vram if size_vram is not None else model.size}

    # ---- behaviour bookkeeping -------------------------------------------------------------
    def _take_behaviour(self) -> dict:
        with self.lock:
            b = dict(self._behaviour)
            if b and b.get("times", 1):
                self._behaviour["times"] -= 1
                if self._behaviour["times"] <= 0:
                    self._behaviour = {}
            return b


class _Dropped(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    srv: OllamaServer
    protocol_version = "HTTP/1.1"
    server_version = "ollama-test"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- helpers ---------------------------------------------------------------------------
    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return {"__invalid__": raw.decode(errors="replace")}

    def _send(self, code: int, payload, ctype: str = "application/json; charset=utf-8") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _line(self, obj: dict) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _model_arg(self, body: dict | None) -> str | None:
        if not body:
            return None
        name = body.get("model") or body.get("name")
        return normalize(name) if isinstance(name, str) and name.strip() else None

    # ---- routes ----------------------------------------------------------------------------
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        srv = self.srv
        srv.requests.append(("GET", self.path, None))
        if self.path == "/":
            return self._send(200, "Ollama is running", "text/plain; charset=utf-8")
        if self.path == "/api/version":
            return self._send(200, {"version": "0.12.6"})
        if self.path == "/api/tags":
            with srv.lock:
                models = [self._describe(name, entry["model"], entry["modified_at"]) for name, entry in sorted(srv.local.items())]
            return self._send(200, {"models": models})
        if self.path == "/api/ps":
            with srv.lock:
                models = []
                for name, info in sorted(srv.loaded.items()):
                    d = self._describe(name, srv.local[name]["model"], None)
                    d.pop("modified_at")
                    d.update(info)
                    models.append(d)
            return self._send(200, {"models": models})
        return self._send(404, "404 page not found", "text/plain")

    def do_DELETE(self):
        srv = self.srv
        body = self._body()
        srv.requests.append(("DELETE", self.path, body))
        if self.path != "/api/delete":
            return self._send(404, "404 page not found", "text/plain")
        name = self._model_arg(body)
        if not name:
            return self._send(400, {"error": "model is required"})
        with srv.lock:
            if name not in srv.local:
                return self._send(404, {"error": f"model '{name}' not found"})
            del srv.local[name]
            srv.loaded.pop(name, None)
        return self._send(200, "", "text/plain")

    def do_POST(self):
        srv = self.srv
        body = self._body()
        srv.requests.append(("POST", self.path, body))
        if body and "__invalid__" in body:
            return self._send(400, {"error": "invalid character in request body"})
        if self.path == "/api/show":
            name = self._model_arg(body)
            with srv.lock:
                entry = srv.local.get(name or "")
            if entry is None:
                return self._send(404, {"error": f"model '{name}' not found"})
            d = self._describe(name, entry["model"], entry["modified_at"])
            return self._send(200, {"modelfile": f"FROM {name}\n", "parameters": "stop \"<|eot|>\"",
                                    "template": "{{ .Prompt }}", "details": d["details"],
                                    "model_info": {"general.architecture": "llama"},
                                    "modified_at": entry["modified_at"]})
        if self.path == "/api/generate":
            return self._generate(body or {})
        if self.path == "/api/pull":
            return self._pull(body or {})
        return self._send(404, "404 page not found", "text/plain")

    @staticmethod
    def _describe(name: str, model: _Model, modified_at: str | None) -> dict:
        family = name.split(":")[0].split("/")[-1]
        return {"name": name, "model": name, "modified_at": modified_at, "size": model.size,
                "digest": model.digest,
                "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                            "parameter_size": "1B", "quantization_level": "Q4_K_M"}}

    def _generate(self, body: dict):
        srv = self.srv
        name = self._model_arg(body)
        with srv.lock:
            present = name in srv.local
        if not present:
            return self._send(404, {"error": f"model \"{name}\" not found, try pulling it first"})
        keep_alive = body.get("keep_alive")
        if not body.get("prompt") and keep_alive in (0, "0", "0s", "0m"):
            if srv.unload_delay:
                threading.Timer(srv.unload_delay, lambda: srv.loaded.pop(name, None)).start()
            else:
                with srv.lock:
                    srv.loaded.pop(name, None)
            return self._send(200, {"model": name, "created_at": _now(), "response": "", "done": True,
                                    "done_reason": "unload"})
        srv.load(name)
        if not body.get("prompt"):
            return self._send(200, {"model": name, "created_at": _now(), "response": "", "done": True,
                                    "done_reason": "load"})
        return self._send(200, {"model": name, "created_at": _now(), "response": "Hello from the test server.",
                                "done": True, "done_reason": "stop", "eval_count": 6})

    def _pull(self, body: dict):
        srv = self.srv
        name = self._model_arg(body)
        if not name:
            return self._send(400, {"error": "model is required"})
        stream = body.get("stream", True)
        behaviour = srv._take_behaviour()
        with srv.lock:
            model = srv.remote.get(name)
        if not stream:
            try:
                self._do_pull(name, model, behaviour, emit=lambda obj: None)
            except _PullError as exc:
                return self._send(500, {"error": str(exc)})
            except _Dropped:
                self.close_connection = True
                return None
            return self._send(200, {"status": "success"})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._do_pull(name, model, behaviour, emit=self._line)
        except _PullError as exc:
            self._line({"error": str(exc)})
        except _Dropped:
            # cut the TCP connection in the middle of the chunked body
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return None
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return None

    def _do_pull(self, name: str, model: _Model | None, behaviour: dict, emit) -> None:
        srv = self.srv
        if behaviour.get("stall"):
            time.sleep(behaviour["stall"])
        emit({"status": "pulling manifest"})
        if model is None:
            raise _PullError("pull model manifest: file does not exist")
        delay = behaviour.get("delay") or 0.0
        sent_this_pull = 0
        for layer in model.layers:
            digest, total = layer["digest"], layer["size"]
            status = "pulling " + digest.split(":")[1][:12]
            with srv.lock:
                completed = total if digest in srv.blobs else srv.partial.get(digest, 0)
            emit({"status": status, "digest": digest, "total": total, "completed": completed})
            while completed < total:
                if delay:
                    time.sleep(delay)
                step = min(srv.chunk, total - completed)
                fail_after, drop_after = behaviour.get("fail_after"), behaviour.get("drop_after")
                if fail_after is not None and sent_this_pull + step > fail_after:
                    raise _PullError(behaviour.get("message") or "max retries exceeded: unexpected EOF")
                if drop_after is not None and sent_this_pull + step > drop_after:
                    raise _Dropped()
                completed += step
                sent_this_pull += step
                with srv.lock:
                    srv.partial[digest] = completed
                    srv.bytes_sent += step
                line = {"status": status, "digest": digest, "total": total, "completed": completed}
                emit(line)
                hold_at = behaviour.get("hold_at")
                if hold_at is not None and sent_this_pull >= hold_at and not srv.holding.is_set():
                    srv.holding.set()
                    while not srv._released.wait(0.2):
                        emit(line)
            with srv.lock:
                srv.blobs.add(digest)
                srv.partial.pop(digest, None)
        emit({"status": "verifying sha256 digest"})
        emit({"status": "writing manifest"})
        with srv.lock:
            srv.local[name] = {"model": model, "modified_at": _now()}
        emit({"status": "success"})


class _PullError(Exception):
    pass


def _parse_model(spec: str) -> tuple[str, int]:
    name, _sep, size = spec.partition("=")
    return name, int(size) if size else 2 * 1024 * 1024


OllamaServer.handler_base = _Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Local Ollama API test server (see module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", default=[], metavar="NAME[=BYTES]",
                        help="a model available to pull (repeatable; default: a few tiny ones)")
    parser.add_argument("--local", action="append", default=[], metavar="NAME", help="a model already pulled")
    parser.add_argument("--loaded", action="append", default=[], metavar="NAME", help="a local model loaded in VRAM")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between pull lines (every pull)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="bytes per progress line")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)
    registry = dict(_parse_model(m) for m in args.model) if args.model else None
    srv = OllamaServer(args.host, args.port, registry=registry, local=args.local, chunk=args.chunk)
    for name in args.loaded:
        srv.load(name)
    if args.delay:
        srv.behave(delay=args.delay, times=0)
    srv.start()
    return run_in_foreground(srv, f"ollama test server on {srv.url}", args.port_file)


if __name__ == "__main__":
    raise SystemExit(main())
