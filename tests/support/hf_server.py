"""A local Hugging-Face-Hub-compatible endpoint serving tiny generated model repos, for tests.

``huggingface_hub.snapshot_download(repo, revision=..., endpoint=srv.url)`` (or ``HF_ENDPOINT``)
works against it. What is emulated -- exactly the calls huggingface_hub 2.4.0 makes for a
snapshot download (read in its source: ``HfApi.model_info``, ``HfApi.list_repo_tree``,
``get_hf_file_metadata``, ``http_get``):

- ``GET /api/models/<repo>`` and ``/api/models/<repo>/revision/<rev>``: ``id``, ``sha`` (the
  resolved 40-hex commit), ``private``, ``gated``, ``siblings``, ``lastModified``.
- ``GET /api/models/<repo>/tree/<rev>[/<path>]?recursive=..``: entries
  ``{"type": "file"|"directory", "oid", "size", "path"}``, ``lfs: {oid, size, pointerSize}``
  for large files (no pagination: repos here are tiny).
- ``HEAD|GET /<repo>/resolve/<rev>/<file>``: small files answered directly with
  ``ETag`` (git blob sha1), ``X-Repo-Commit``, ``Content-Length``; LFS files answered with a
  ``302`` to a "CDN" URL on another host name (``localhost`` instead of ``127.0.0.1``, the same
  server) carrying ``X-Linked-Etag`` (sha256), ``X-Linked-Size``, ``X-Repo-Commit``, as the Hub
  does; the CDN serves the bytes with ``Range`` support (206 + ``Content-Range``), so
  huggingface_hub's resume-after-drop path is exercised.
- Errors with the Hub's headers: missing repo -> 404 ``X-Error-Code: RepoNotFound``; unknown
  revision -> 404 ``RevisionNotFound``; missing file -> 404 ``EntryNotFound`` (with
  ``X-Repo-Commit``); private repo without token -> 401 ``RepoNotFound``; a wrong token on
  any request -> 401 ``X-Error-Message: Invalid credentials in Authorization header``.

Not emulated: Xet storage (no ``X-Xet-*`` headers: clients fall back to plain HTTP), uploads,
pagination, datasets/spaces, gated-access requests, rate limits.

Switches: ``drop_after`` (bytes of the next LFS download after which the connection is cut),
``hide`` (files the listing shows but the server answers 404 for, e.g. a broken mirror).
``requests`` logs every request (method, path): a test can prove a run sent nothing;
``range_starts`` logs the first byte asked for by each blob GET (0 without ``Range``).

Use in-process: ``srv = HFServer(); srv.start(); srv.url; srv.stop()``; or as a CLI:
``python -m tests.support.hf_server --port 8999 [--private REPO --token-file PATH]`` (or ``--token=T``, never
``--token T``: a token starting with ``-`` would be taken for an option).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from tests.support.serve import BackgroundHTTPServer, add_secret_option, run_in_foreground, secret_value

LFS_THRESHOLD = 10 * 1024  # files larger than this are "LFS" (real Hub: 10 MB)


def _det_bytes(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def tiny_model_files(variant: int = 0, weights_size: int = 256 * 1024) -> dict[str, bytes]:
    """A tiny model repo's files (deterministic)."""
    return {
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"# tiny test model\n",
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                   "num_hidden_layers": 2 + variant, "vocab_size": 256}).encode(),
        "tokenizer_config.json": b'{"model_max_length": 2048}',
        "model.safetensors": _det_bytes(f"weights-{variant}", weights_size),
        "original/params.json": b'{"dim": 64}',
    }


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()  # nosec - git object id


class Repo:
    def __init__(self, repo_id: str, commits: list[dict[str, bytes]], private: bool = False,
                 branches: dict[str, int] | None = None):
        self.repo_id = repo_id
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}
        self.order: list[str] = []
        parent = ""
        for files in commits:
            h = hashlib.sha1(parent.encode())  # nosec - a commit id, not security
            for name in sorted(files):
                h.update(name.encode() + b"\x00" + hashlib.sha256(files[name]).digest())
            sha = h.hexdigest()
            self.commits[sha] = dict(files)
            self.order.append(sha)
            parent = sha
        self.refs = {"main": self.order[-1]}
        for name, idx in (branches or {}).items():
            self.refs[name] = self.order[idx]

    def resolve(self, rev: str) -> str | None:
        rev = urllib.parse.unquote(rev)
        if rev in self.refs:
            return self.refs[rev]
        if rev in self.commits:
            return rev
        return None


class HFServer(BackgroundHTTPServer):
    handler_base = None  # set below, once _Handler is defined
    thread_name = "hf-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.host = host
        self.port = port
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.drop_after: int | None = None
        self.range_starts: list[int] = []
        self.hide: set[str] = set()
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        # a default tiny repo with two commits: the second changes config.json and the weights
        self.add_repo("ailab-test/tiny-model", [tiny_model_files(0), tiny_model_files(1)])


    def add_repo(self, repo_id: str, commits: list[dict[str, bytes]], private: bool = False, **kw) -> Repo:
        repo = Repo(repo_id, commits, private=private, **kw)
        self.repos[repo_id] = repo
        return repo



class _Handler(BaseHTTPRequestHandler):
    srv: HFServer
    protocol_version = "HTTP/1.1"
    server_version = "hf-test-hub"

    def log_message(self, fmt, *args):
        pass

    # ---- responses -------------------------------------------------------------------------
    def _send(self, code: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
        if body is None:
            body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(code)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, error_code: str | None, message: str, extra: dict | None = None) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        headers.update(extra or {})
        self._send(code, {"error": message}, headers)

    def _auth(self, repo: Repo | None) -> bool:
        """Check the token like the Hub: a wrong token is always a 401; no token only matters if private."""
        header = self.headers.get("Authorization")
        if header:
            if not self.srv.token or header != f"Bearer {self.srv.token}":
                self._error(401, None, "Invalid credentials in Authorization header")
                return False
            return True
        if repo is not None and repo.private:
            self._error(401, "RepoNotFound", "Repository not found")
            return False
        return True

    # ---- routing ---------------------------------------------------------------------------
    def do_HEAD(self):
        self._route()

    def do_GET(self):
        self._route()

    def _route(self):
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        self.srv.requests.append((self.command, self.path))
        if path.startswith("/cdn-lfs/"):
            return self._cdn(path[len("/cdn-lfs/"):])
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/"):], urllib.parse.parse_qs(parsed.query))
        if "/resolve/" in path:
            return self._resolve(path.lstrip("/"))
        return self._error(404, None, "Not Found")

    def _find_repo(self, rest: str, marker: str | None):
        """Split '<owner>/<name>/<marker>/...' into (repo, remainder)."""
        for repo_id, repo in self.srv.repos.items():
            if marker is None and rest == repo_id:
                return repo, ""
            if marker is not None and rest.startswith(repo_id + "/" + marker + "/"):
                return repo, rest[len(repo_id) + len(marker) + 2:]
            if marker is not None and rest == repo_id + "/" + marker:
                return repo, ""
        return None, None

    def _api(self, rest: str, query: dict):
        repo, remainder = self._find_repo(rest, None)
        kind = "info"
        if repo is None:
            repo, remainder = self._find_repo(rest, "revision")
            kind = "revision"
        if repo is None:
            repo, remainder = self._find_repo(rest, "tree")
            kind = "tree"
        if not self._auth(repo):
            return None
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if kind == "info":
            rev, sub = "main", ""
        else:
            rev, _sep, sub = remainder.partition("/")
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[sha]
        if kind in ("info", "revision"):
            return self._send(200, {"_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],  # nosec
                                    "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                                    "sha": sha, "private": repo.private, "gated": False, "disabled": False,
                                    "lastModified": "2026-11-01T00:00:00.000Z", "tags": ["safetensors"],
                                    "siblings": [{"rfilename": f} for f in sorted(files)]})
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("true", "1")
        return self._send(200, self._tree(files, sub, recursive))

    @staticmethod
    def _tree(files: dict[str, bytes], sub: str, recursive: bool) -> list[dict]:
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries, dirs = [], set()
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": git_blob_sha1(d.encode()), "size": 0, "path": d})
            if len(parts) > 1 and not recursive:
                continue
            data = files[name]
            entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
            if len(data) > LFS_THRESHOLD:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return entries

    def _resolve(self, rest: str):
        repo = None
        for repo_id, candidate in self.srv.repos.items():
            if rest.startswith(repo_id + "/resolve/"):
                repo, remainder = candidate, rest[len(repo_id) + len("/resolve/"):]
                break
        if not self._auth(repo):
            return None
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        rev, _sep, filename = remainder.partition("/")
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        data = repo.commits[sha].get(filename)
        if data is None or filename in self.srv.hide:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{rev}\"",
                               {"X-Repo-Commit": sha})
        if len(data) > LFS_THRESHOLD:
            digest = hashlib.sha256(data).hexdigest()
            cdn = f"http://localhost:{self.srv.port}/cdn-lfs/{digest}?repo={urllib.parse.quote(repo.repo_id)}&sha={sha}"
            return self._send(302, None, {"Location": cdn, "X-Repo-Commit": sha, "X-Linked-Etag": f'"{digest}"',
                                          "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha1(data)}"'})
        return self._send(200, None, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"',
                                      "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}, body=data)

    def _cdn(self, rest: str):
        digest = rest.split("?")[0]
        for repo in self.srv.repos.values():
            for files in repo.commits.values():
                for data in files.values():
                    if len(data) > LFS_THRESHOLD and hashlib.sha256(data).hexdigest() == digest:
                        return self._serve_blob(data)
        return self._error(404, None, "NoSuchKey")

    def _serve_blob(self, data: bytes):
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        part = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.command == "HEAD":
            return None
        with self.srv.lock:
            self.srv.range_starts.append(start)
            drop, self.srv.drop_after = self.srv.drop_after, None
        if drop is not None and drop < len(part):
            self.wfile.write(part[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        self.wfile.write(part)
        return None


HFServer.handler_base = _Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Local Hugging Face Hub test endpoint (see module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    add_secret_option(parser, "token", what="the only token accepted (a wrong one gets HTTP 401)")
    parser.add_argument("--private", action="append", default=[], metavar="REPO",
                        help="also serve this private copy of the tiny repo (needs a token)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)
    srv = HFServer(args.host, args.port, token=secret_value(args, "token"))
    for repo_id in args.private:
        srv.add_repo(repo_id, [tiny_model_files(0)], private=True)
    srv.start()
    return run_in_foreground(srv, f"hf test hub on {srv.url}", args.port_file)


if __name__ == "__main__":
    raise SystemExit(main())
