"""Run a started test server in the foreground until SIGTERM/SIGINT (the CLI entry of each server)."""

from __future__ import annotations

import signal
import socket
import threading
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_foreground(server, banner, port_file=None):
    """Write the bound port to ``port_file`` (if given), print ``banner``, wait for a signal, stop ``server``."""
    if port_file:
        with open(port_file, "w", encoding="utf-8") as handle:
            handle.write(str(server.port))
    print(banner, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet request handler with ``send_json``: the base of the test servers that answer JSON."""

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def send_json(self, status, payload, content_type="application/json"):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class BackgroundHTTPServer:
    """A ThreadingHTTPServer in a daemon thread, for the in-process test servers.

    Subclasses set ``host``/``port`` in ``__init__`` and name their request handler base in
    ``handler_base``; each handler instance reaches the server object as ``self.srv``.
    """

    handler_base = None
    thread_name = "test-server"
    _httpd = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        server = self

        class Handler(self.handler_base):  # pylint: disable=too-few-public-methods
            srv = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
