"""Helpers of the test servers: JSON requests, free ports, the in-process HTTP servers' base, running one in the
foreground until SIGTERM/SIGINT (the CLI entry of each server), and ``ServerProcess``, the base of the real servers
the tests run as subprocesses."""

from __future__ import annotations

import abc
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


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
        self.send_body(status, json.dumps(payload).encode(), content_type)

    def send_body(self, status, data: bytes, content_type):
        """One whole answer: status, Content-Type and Content-Length, then ``data``."""
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


class ServerProcess(abc.ABC):
    """One real server run as a subprocess of the tests on 127.0.0.1 (in its own session, so ``stop`` ends every
    process it forks), its stdout and stderr in one log file; the plumbing LiteLLMProxy, LlamaStack and OpenWebUI share.

    A subclass names the server (``name``, for messages; ``log_name``, the log file's prefix), gives ``command()``
    and the working directory (``workdir``) and, where the defaults do not fit: the caller's environment variables to
    drop (``drop_env``: name prefixes, so none of the caller's settings leaks in), what it sets itself (``server_env``;
    None removes a variable), the health check (``health_path`` answering 200, or its own ``ready()``), how often to
    poll it (``poll_interval``), the error raised (``start_error``), how long ``wait_exited`` and a stop wait
    (``exit_timeout``, ``stop_grace``). ``env`` given to ``__init__`` goes on top of all that; the log is
    ``log_path``, by default a new temporary file.
    """

    name = "server"
    log_name = "server"
    drop_env: tuple[str, ...] = ()
    server_env: dict[str, str | None] = {}
    health_path = "/health"
    poll_interval = 0.25
    start_error: type[Exception] = RuntimeError
    exit_timeout = 60.0
    stop_grace = 10.0
    workdir = None

    def __init__(self, env: dict | None = None, port: int | None = None, startup_timeout: float = 60.0,
                 log_path: str | Path | None = None):
        self.env_extra = dict(env or {})
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(log_path or tempfile.mkstemp(prefix=self.log_name + "-", suffix=".log")[1])

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line (argv); each server says its own."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict:
        """The headers that authenticate a request (``request(auth=True)``); none unless the subclass has a key."""
        return {}

    def log(self) -> str:
        """The server's combined stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.drop_env)}
        env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        for key, value in self.server_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env.update(self.env_extra)
        return env

    def start(self, wait: bool = True):
        """Start the process; with ``wait``, return once it is ready (``wait_ready``)."""
        cmd, cwd = self.command(), None if self.workdir is None else str(self.workdir)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                cmd, env=self._env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        """The health check: ``health_path`` answers 200."""
        return self.get(self.health_path, timeout=2)[0] == 200

    def wait_ready(self) -> None:
        """Poll ``ready()`` until ``startup_timeout``; raise ``start_error`` with the log's tail when the process
        exits first or the time is up (then the process is stopped)."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.start_error(f"{self.name} exited with {self.proc.returncode} before {self.health_path} "
                                       "was ready:\n" + self.log()[-4000:])
            if self.ready():
                return
            time.sleep(self.poll_interval)
        self.stop()
        raise self.start_error(f"{self.name} not ready on {self.health_path} after {self.startup_timeout}s:\n"
                               + self.log()[-4000:])

    def wait_exited(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit by itself (a configuration it refuses): its exit code, None if still running."""
        try:
            return self.proc.wait(timeout=self.exit_timeout if timeout is None else timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            stop_process_group(proc, grace=self.stop_grace)

    def request(self, method: str, path: str, payload=None, headers: dict | None = None, timeout: float = 30.0,
                auth: bool = True):
        """``(status, parsed JSON body or text)`` of one request (``json_request``), with ``auth`` unless told not."""
        hdrs = dict(self.auth) if auth else {}
        hdrs.update(headers or {})
        return json_request(method, self.url + path, payload, hdrs, timeout)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, payload, **kw):
        return self.request("POST", path, payload, **kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
