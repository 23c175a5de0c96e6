"""The vLLM stand-in: tests/support/openai_backend.py's OpenAI API plus vLLM's sleep mode and its /metrics.

What is REAL here: the HTTP wire formats of vLLM v0.11 (the image the vllm role pins), as its source has them
(vllm-project/vllm, vllm/entrypoints/openai/api_server.py of v0.11, read 2026-12-05; the same handlers moved to
vllm/entrypoints/serve/dev/sleep/api_router.py later):

* ``POST /sleep?level=N`` (``level`` defaults to ``"1"``, parsed with ``int()``) answers ``200`` with an EMPTY body
  (``Response(status_code=200)``); ``POST /wake_up`` (optional ``?tags=weights&tags=kv_cache``) answers ``200``
  with an empty body; ``GET /is_sleeping`` answers ``{"is_sleeping": <bool>}``. These routes are registered only
  under ``if envs.VLLM_SERVER_DEV_MODE:`` -- without ``dev_mode`` they answer FastAPI's ``404 {"detail": "Not
  Found"}``. Sleeping twice, or waking an awake engine, is a no-op answered 200 (the executor logs "Executor is
  already sleeping." / "Executor is not sleeping." and returns).
* ``GET /metrics``: ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` and ``vllm:engine_sleep_state``
  (``sleep_state`` = ``awake`` | ``weights_offloaded`` | ``discard_all``) with the labels ``model_name`` and
  ``engine`` of vllm/v1/metrics/loggers.py (PrometheusStatLogger; names checked against
  tests/functional/data/metric_names.yml). A request counts as running from its arrival to its last byte.
* ``--enable-sleep-mode`` matters: only then are the weights and the KV cache allocated in vLLM's CuMem pool, so
  only then does a sleep free GPU memory. With dev mode but without sleep mode, ``/sleep`` still answers 200 and
  ``/is_sleeping`` says true, but nothing is freed (vLLM logs "Sleep mode freed 0.00 GiB memory").

How it FAILS, as reported upstream (cited, because a swap must never do these):

* an inference request to a sleeping engine crashes it (vllm-project/vllm#15483: "CUDA error: an illegal memory
  access", the engine dead, the server process terminates): the request gets a 500 and the server then stops
  listening (connection refused), as the container would exit;
* ``/sleep`` while requests are decoding crashes the engine the same way (vllm-project/vllm#45520: the sleep call
  answers 200, every in-flight request ends aborted, the container shuts down): the in-flight requests get a 500,
  the server stops. So the swap drains first (``vllm:num_requests_running`` == 0).

``engine_dead`` holds the reason once the emulated engine died.

Image input (``vision``): a chat request's ``image_url`` parts are checked as vLLM checks them before the engine
sees them, with its words and a 400 ``BadRequestError`` (vllm/multimodal/registry.py ``create_processor``: a
text-only model answers "<model> is not a multimodal model"; vllm/multimodal/processing.py ``validate_num_items``:
more images than ``--limit-mm-per-prompt`` allows answer "At most N image(s) may be provided in one prompt.";
a ``data:`` URI that is not base64 fails to load). ``chat_bodies`` keeps each accepted chat request's JSON body
as it arrived, so a test can compare what reached vLLM with what the client sent.

What is EMULATED: GPU memory. No GPU here; ``gpu_memory_mib`` is the figure nvidia-smi would show for the vLLM
process: ``weights_mib + kv_cache_mib + context_mib`` awake, ``context_mib`` (the CUDA context, which a sleeping
vLLM keeps: about 0.8-1.2 GiB) after a sleep in sleep mode, unchanged after a sleep without sleep mode.
``host_memory_mib`` grows by ``weights_mib`` during a level-1 sleep (the weights are backed up in host RAM).
``/sleep`` and ``/wake_up`` take ``sleep_seconds`` / ``wake_seconds`` (vLLM's blog measured 0.26-0.82 s for a
level-1 wake on an A100); ``fail_wake`` makes ``/wake_up`` answer 500 (vllm-project/vllm#36753: "POST /wake_up
causes vLLM process to crash. 500 Internal Server Error").
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from urllib.parse import parse_qs

from tests.support.openai_backend import OpenAIBackend, _Handler

INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class VLLMBackend(OpenAIBackend):
    """A vLLM server stand-in. ``dev_mode``: env ``VLLM_SERVER_DEV_MODE=1``; ``sleep_mode``: ``--enable-sleep-mode``."""

    def __init__(self, name: str = "vllm", dev_mode: bool = True, sleep_mode: bool = True, weights_mib: int = 5200,
                 kv_cache_mib: int = 14000, context_mib: int = 1000, sleep_seconds: float = 0.05,
                 wake_seconds: float = 0.3, vision: bool = False, limit_mm_per_prompt: dict | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.handler_class = _VLLMHandler
        self.vision = vision                                  # a multimodal model is served
        self.limit_mm_per_prompt = dict(limit_mm_per_prompt or {})  # --limit-mm-per-prompt (vLLM's default: 999)
        self.chat_bodies: list[dict] = []
        self.dev_mode = dev_mode
        self.sleep_mode = sleep_mode
        self.weights_mib = weights_mib
        self.kv_cache_mib = kv_cache_mib
        self.context_mib = context_mib
        self.sleep_seconds = sleep_seconds
        self.wake_seconds = wake_seconds
        self.fail_wake = False
        self.sleep_level = 0          # 0 awake, 1 weights offloaded, 2 discarded
        self.freed_mib = 0            # what the last sleep freed (0 without sleep mode)
        self.in_flight = 0
        self.engine_dead: str | None = None
        self.calls: list[tuple[float, str, int]] = []  # (time, "sleep"|"wake_up"|"is_sleeping", running then)
        self._state = threading.Lock()

    @property
    def model_name(self) -> str:
        return (self.served_models or ["test-model"])[0]

    @property
    def gpu_memory_mib(self) -> int:
        """EMULATED: what nvidia-smi would show for this vLLM process."""
        return self.weights_mib + self.kv_cache_mib + self.context_mib - self.freed_mib

    @property
    def host_memory_mib(self) -> int:
        """EMULATED: the host RAM the level-1 sleep holds (the weights' backup)."""
        return self.weights_mib if self.sleep_level == 1 and self.freed_mib else 0

    def die(self, reason: str) -> None:
        """The engine died: the server process terminates (connection refused from now on)."""
        with self._state:
            if self.engine_dead:
                return
            self.engine_dead = reason
        # the answer being written goes out first; then the process is gone
        threading.Timer(0.2, self.stop).start()

    def metrics_text(self) -> str:
        labels = f'engine="0",model_name="{self.model_name}"'
        states = {"awake": int(self.sleep_level == 0), "weights_offloaded": int(self.sleep_level == 1),
                  "discard_all": int(self.sleep_level == 2)}
        lines = ["# HELP vllm:num_requests_running Number of requests in model execution batches.",
                 "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{labels}}} {float(self.in_flight)}",
                 "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                 "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{labels}}} 0.0",
                 "# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping; awake = 1 "
                 "means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
                 "# TYPE vllm:engine_sleep_state gauge"]
        lines += [f'vllm:engine_sleep_state{{{labels},sleep_state="{s}"}} {float(v)}' for s, v in states.items()]
        return "\n".join(lines) + "\n"


def _is_base64(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(data)


class _VLLMHandler(_Handler):
    backend: VLLMBackend

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self) -> None:
        self.send_json(404, {"detail": "Not Found"})  # FastAPI's answer for a route that is not registered

    def do_GET(self):  # noqa: N802 - http.server naming
        backend = self.backend
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            data = backend.metrics_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path == "/is_sleeping":
            if not backend.dev_mode:
                self._not_found()
                return
            backend.calls.append((time.monotonic(), "is_sleeping", backend.in_flight))
            self.send_json(200, {"is_sleeping": backend.sleep_level > 0})
        else:
            super().do_GET()

    def do_POST(self):  # noqa: N802 - http.server naming
        backend = self.backend
        path, _sep, query = self.path.partition("?")
        if path in ("/sleep", "/wake_up"):
            if not backend.dev_mode:
                self._not_found()
                return
            self._sleep(parse_qs(query)) if path == "/sleep" else self._wake_up()
            return
        if path not in INFERENCE_PATHS:
            super().do_POST()
            return
        with backend._state:
            backend.in_flight += 1
            asleep = backend.sleep_level > 0
        try:
            if asleep:
                self._body()
                backend.die("an inference request reached the sleeping engine (vllm-project/vllm#15483)")
                self.send_json(500, {"object": "error", "type": "InternalServerError", "code": 500,
                                     "message": "EngineCore encountered an issue (CUDA error: an illegal memory access "
                                                "was encountered); the engine is dead"})
                return
            super().do_POST()
        finally:
            with backend._state:
                backend.in_flight -= 1

    def _gate(self, model, path, stream=False):
        proceed = super()._gate(model, path, stream)
        if proceed and self.backend.engine_dead:  # slept while this request was decoding
            self.send_json(500, {"object": "error", "type": "InternalServerError", "code": 500,
                                 "message": "request aborted: %s" % self.backend.engine_dead})
            return False
        return proceed

    def _bad_request(self, message: str, param: str | None = None) -> None:
        self.send_json(400, {"error": {"message": message, "type": "BadRequestError", "param": param, "code": 400}})

    def _chat(self, model, body):
        images = [part for message in body.get("messages") or [] if isinstance(message, dict)
                  and isinstance(message.get("content"), list)
                  for part in message["content"] if isinstance(part, dict) and part.get("type") == "image_url"]
        backend = self.backend
        if images:
            if not backend.vision:
                self._bad_request("%s is not a multimodal model" % model)
                return
            limit = backend.limit_mm_per_prompt.get("image", 999)
            limit = limit.get("count", 999) if isinstance(limit, dict) else limit
            if len(images) > limit:
                self._bad_request("At most %d image(s) may be provided in one prompt. Set `--limit-mm-per-prompt` "
                                  "to increase this limit." % limit, "image")
                return
            for part in images:
                url = (part.get("image_url") or {}).get("url") or ""
                head, _sep, data = url.partition(",")
                if url.startswith("data:") and (";base64" not in head or not _is_base64(data)):
                    self._bad_request("Failed to load image: the data URL is not base64-encoded image data")
                    return
        with backend._lock:
            backend.chat_bodies.append(body)
        super()._chat(model, body)

    def _sleep(self, query) -> None:
        backend = self.backend
        self._body()
        try:
            level = int((query.get("level") or ["1"])[0])
        except ValueError:
            self._send_empty(500)  # int(level) raises: an unhandled error in the route
            return
        backend.calls.append((time.monotonic(), "sleep", backend.in_flight))
        if backend.in_flight:
            backend.die("slept with %d request(s) decoding (vllm-project/vllm#45520)" % backend.in_flight)
            self._send_empty(200)  # the misleading 200 of the report
            return
        if backend.sleep_level == 0:
            time.sleep(backend.sleep_seconds)
            with backend._state:
                backend.sleep_level = level
                backend.freed_mib = (backend.weights_mib + backend.kv_cache_mib) if backend.sleep_mode else 0
        self._send_empty(200)

    def _wake_up(self) -> None:
        backend = self.backend
        self._body()
        backend.calls.append((time.monotonic(), "wake_up", backend.in_flight))
        if backend.fail_wake:
            self.send_json(500, {"detail": "Internal Server Error"})
            return
        if backend.sleep_level:
            time.sleep(backend.wake_seconds)
            with backend._state:
                backend.sleep_level = 0
                backend.freed_mib = 0
        self._send_empty(200)
