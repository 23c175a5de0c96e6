"""A local OpenAI-compatible inference backend for tests (stands in for vLLM and Ollama).

What is REAL here: the HTTP wire formats. The server speaks, on 127.0.0.1,

* the OpenAI API that vLLM's server exposes (what LiteLLM's ``hosted_vllm/`` and
  ``openai/`` providers call):
  ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or ``"stream": true`` as
  Server-Sent Events ending with ``data: [DONE]``), ``POST /v1/embeddings``,
  ``GET /health`` (vLLM's liveness endpoint);
* the Anthropic Messages API (``POST /v1/messages``, non-streaming only), standing in for a
  hosted provider reached through an ``api_base`` override;
* the Ollama chat/embedding endpoints that LiteLLM's ``ollama_chat/`` provider calls:
  ``POST /api/chat`` (JSON, or NDJSON when streaming), ``POST /api/embed``,
  ``POST /api/show``, ``GET /`` ("Ollama is running").

What is EMULATED: the model. Replies are deterministic text that names the backend and the
model it was asked for (``"[<backend name>] <model>: <last user message>"``), token counts
are word counts, and embeddings are a bag-of-words vector (``fake_embedding``: words hashed into buckets, so texts
on distinct topics are far apart and retrieval finds the one a question is about).
Nothing is loaded, no GPU is used.

Switches for failure tests:

* ``backend.stop()`` closes the listening socket (connection refused, like a scaled-down
  Deployment); ``backend.start()`` brings it back on the SAME port.
* ``backend.set_failure(status=500)`` answers every inference request with that HTTP status
  and an OpenAI-style error body (``set_failure(None)`` clears it).
* ``backend.set_delay(seconds)`` sleeps before every inference answer (slow model).
* ``backend.served_models``: if set, requests for any other model get a 404 exactly like vLLM
  does when the client sends a name other than ``--served-model-name``.

Every request is recorded in ``backend.requests`` (method, path, model, authorization
header, stream flag) so tests can assert WHICH backend served a call and with what name.

Run by hand: ``python -m tests.support.openai_backend --port 8000 --name vllm``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import socket
import threading
import time
from http.server import ThreadingHTTPServer

from tests.support.serve import JSONHandler, free_port, run_in_foreground

EMBEDDING_DIM = 256
_WORD = re.compile(r"[a-z0-9]+")


def fake_embedding(text: str) -> list[float]:
    """A deterministic bag-of-words embedding: each lowercase word adds 1 to the bucket its SHA-256 picks, then the
    vector is scaled to length 1. Texts sharing words get a high cosine similarity, texts on distinct topics a low
    one, so retrieval over these vectors finds the document a question is about (no model, no meaning: word
    overlap). A text without words gets the first unit vector."""
    vector = [0.0] * EMBEDDING_DIM
    for word in _WORD.findall(text.lower()):
        vector[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % EMBEDDING_DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [round(v / norm, 6) for v in vector] if norm else [1.0] + [0.0] * (EMBEDDING_DIM - 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        self.connections = set()
        self.conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open (keep-alive) connection, as a killed server would."""
        with self.conn_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class OpenAIBackend:
    """A started/stopped local inference server. Use as a context manager or start()/stop()."""

    handler_class = None  # the request handler (``_Handler``; tests/support/vllm_backend.py extends it)

    def __init__(self, name: str = "backend", port: int | None = None, host: str = "127.0.0.1",
                 served_models: list[str] | None = None, stream_chunks: int = 3):
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.served_models = served_models
        self.stream_chunks = stream_chunks
        self.requests: list[dict] = []
        self._failure: int | None = None
        self._delay = 0.0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL without ``/v1`` (the Ollama-style base)."""
        return f"http://{self.host}:{self.port}"

    @property
    def v1(self) -> str:
        """Base URL with ``/v1`` (the vLLM/OpenAI-style base)."""
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> "OpenAIBackend":
        if self._httpd is not None:
            return self
        handler = type("Handler", (self.handler_class or _Handler,), {"backend": self})
        self._httpd = _Server((self.host, self.port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"openai-backend-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OpenAIBackend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- switches --------------------------------------------------------------------------
    def set_failure(self, status: int | None) -> None:
        self._failure = status

    def set_delay(self, seconds: float) -> None:
        self._delay = seconds

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self._failure = None
        self._delay = 0.0

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def models_requested(self) -> list[str]:
        with self._lock:
            return [r["model"] for r in self.requests if r.get("model")]


class _Handler(JSONHandler):
    backend: OpenAIBackend  # set on the subclass made in start()
    protocol_version = "HTTP/1.1"
    server_version = "openai-backend-test/1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall

    # -- helpers ---------------------------------------------------------------------------
    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reply_text(self, model: str, messages: list) -> str:
        last = ""
        for message in messages or []:
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):  # content blocks (OpenAI multimodal / Anthropic)
                    content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
                last = content if isinstance(content, str) else json.dumps(content)
        return f"[{self.backend.name}] {model}: {last}"

    def _gate(self, model: str | None, path: str, stream: bool = False) -> bool:
        """Record the request, apply delay/failure/unknown-model. True if it may proceed."""
        backend = self.backend
        backend.record({"method": self.command, "path": path, "model": model, "stream": stream,
                        "authorization": self.headers.get("Authorization"), "time": time.time()})
        if backend._delay:
            time.sleep(backend._delay)
        if backend._failure:
            self.send_json(backend._failure, {"error": {"message": f"{backend.name}: injected failure",
                                                    "type": "server_error", "code": backend._failure}})
            return False
        if backend.served_models is not None and model not in backend.served_models:
            self.send_json(404, {"object": "error", "type": "NotFoundError", "code": 404,
                             "message": f"The model `{model}` does not exist."})
            return False
        return True

    # -- routes ----------------------------------------------------------------------------
    def do_GET(self):  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            names = self.backend.served_models or ["test-model"]
            self.send_json(200, {"object": "list", "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": self.backend.name} for n in names]})
        elif path == "/health":
            self.send_json(200, {})
        elif path == "/":
            self.send_body(200, b"Ollama is running", "text/plain")
        else:
            self.send_json(404, {"error": {"message": f"no route {path}"}})

    def do_POST(self):  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        body = self._body()
        model = body.get("model") or body.get("name")
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
            "/api/chat": self._ollama_chat,
            "/api/embed": self._ollama_embed,
        }
        if path == "/api/show":
            self.send_json(200, {"details": {"family": "test"}, "model_info": {"test.context_length": 8192},
                             "template": "", "modelfile": ""})
            return
        route = routes.get(path)
        if route is None and path.endswith("/v1/messages"):
            route = self._anthropic_messages
        if route is None:
            self.send_json(404, {"error": {"message": f"no route {path}"}})
            return
        if not self._gate(model, path, bool(body.get("stream"))):
            return
        route(model, body)

    def _chat(self, model: str, body: dict) -> None:
        text = self._reply_text(model, body.get("messages"))
        created = int(time.time())
        cid = "chatcmpl-" + hashlib.sha1(f"{created}{text}{time.perf_counter()}".encode()).hexdigest()[:24]
        words = text.split(" ")
        usage = {"prompt_tokens": len(json.dumps(body.get("messages", [])).split()),
                 "completion_tokens": len(words)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            self.send_json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": usage})
            return
        self._start_stream("text/event-stream")
        n = max(1, self.backend.stream_chunks)
        n = min(n, len(words))
        pieces = [" ".join(words[i * len(words) // n:(i + 1) * len(words) // n]) for i in range(n)]
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        first = dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        self._chunk(b"data: " + json.dumps(first).encode() + b"\n\n")
        for i, piece in enumerate(pieces):
            content = piece if i == 0 else " " + piece
            chunk = dict(base, choices=[{"index": 0, "delta": {"content": content}, "finish_reason": None}])
            self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            last["usage"] = usage
        self._chunk(b"data: " + json.dumps(last).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _anthropic_messages(self, model: str, body: dict) -> None:
        text = self._reply_text(model, body.get("messages"))
        self.send_json(200, {"id": "msg_" + hashlib.sha1(text.encode()).hexdigest()[:20], "type": "message",
                         "role": "assistant", "model": model, "content": [{"type": "text", "text": text}],
                         "stop_reason": "end_turn", "stop_sequence": None,
                         "usage": {"input_tokens": 1, "output_tokens": len(text.split())}})

    def _embeddings(self, model: str, body: dict) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(t))} for i, t in enumerate(inputs)]
        tokens = sum(len(str(t).split()) for t in inputs)
        self.send_json(200, {"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _ollama_chat(self, model: str, body: dict) -> None:
        text = self._reply_text(model, body.get("messages"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        final = {"model": model, "created_at": stamp, "message": {"role": "assistant", "content": text},
                 "done": True, "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": 1,
                 "eval_count": len(text.split())}
        if body.get("stream") is False or "stream" not in body:
            self.send_json(200, final)
            return
        self._start_stream("application/x-ndjson")
        for word in text.split(" "):
            line = {"model": model, "created_at": stamp, "message": {"role": "assistant", "content": word + " "},
                    "done": False}
            self._chunk(json.dumps(line).encode() + b"\n")
        final["message"] = {"role": "assistant", "content": ""}
        self._chunk(json.dumps(final).encode() + b"\n")
        self._end_stream()

    def _ollama_embed(self, model: str, body: dict) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        self.send_json(200, {"model": model, "embeddings": [fake_embedding(str(t)) for t in inputs],
                         "prompt_eval_count": sum(len(str(t).split()) for t in inputs)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--served-model", action="append", default=None)
    args = parser.parse_args()
    backend = OpenAIBackend(name=args.name, port=args.port, served_models=args.served_model).start()
    run_in_foreground(backend, f"{backend.name} listening on {backend.url}")


if __name__ == "__main__":
    main()
