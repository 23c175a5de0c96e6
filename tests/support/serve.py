"""Run a started test server in the foreground until SIGTERM/SIGINT (the CLI entry of each server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def json_request(method: str, url: str, payload=None, headers: dict | None = None, timeout: float = 30.0):
    """One HTTP request with a JSON body (no proxy): ``(status, parsed JSON body or text)``; never raises on an HTTP
    error; ``(None, None)`` when the server cannot be reached."""
    import urllib.error  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel
    hdrs = dict(headers or {})
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None, None
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_secret_option(parser, name, env=None, what="the secret"):
    """Add ``--<name>`` and ``--<name>-file`` to an argparse ``parser``, for a secret the server checks.

    A generated secret may start with ``-`` (``secrets.token_urlsafe`` does one time in 64): given as
    ``--<name> VALUE`` argparse would take it for an option and fail. So callers pass it as
    ``--<name>=VALUE``, in a file (``--<name>-file PATH``, first line) or, when ``env`` is given, in that
    environment variable (as the real server reads it). :func:`secret_value` returns the one given.
    """
    parser.add_argument(f"--{name}", metavar="VALUE",
                        help=f"{what}; write --{name}=VALUE (a value starting with '-' is otherwise taken for an option)")
    parser.add_argument(f"--{name}-file", metavar="PATH", help=f"read {what} from the first line of this file")
    if env:
        parser.epilog = ((parser.epilog + " ") if parser.epilog else "") + f"Without --{name}[-file]: ${env}."


def secret_value(args, name, env=None, default=None):
    """The secret added by :func:`add_secret_option`: ``--<name>=VALUE``, else the file, else ``$<env>``, else ``default``."""
    attr = name.replace("-", "_")
    value = getattr(args, attr)
    path = getattr(args, attr + "_file")
    if value is None and path:
        with open(path, encoding="utf-8") as handle:
            value = handle.readline().rstrip("\r\n")
    if value is None and env:
        value = os.environ.get(env)
    return default if value is None else value


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


def stop_process_group(proc, sig=signal.SIGTERM, grace=10.0):
    """Send ``sig`` to the process group of ``proc`` (started with ``start_new_session=True``), wait up to ``grace``
    seconds, then SIGKILL it; a group already gone is fine."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
