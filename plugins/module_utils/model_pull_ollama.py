# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama HTTP API client used by ``ailab.gpu_lab.model_pull`` (and by gpu_swap for unloading).

Plain Python (stdlib only), unit-tested against tests/support/ollama_server.py.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error

from ansible.module_utils.urls import open_url

# name[:tag], optionally host[:port]/ and namespace/ in front (Ollama's own naming rules,
# simplified: lowercase namespaces, model part of letters/digits/._-, tag up to 128 chars)
_NAME_RE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]{1,5})?/)?"      # optional registry host
    r"(?:[a-z0-9][a-z0-9._-]*/)?"                  # optional namespace
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"            # model
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$"    # optional tag
)


class OllamaError(Exception):
    """An error with a message meant for the user (names the server and what to do)."""


class OllamaPullTimeout(OllamaError):
    pass


class _StreamCut(Exception):
    """The connection dropped (or the stream ended) before ``success``: retryable."""


def validate_name(name):
    """Return None if ``name`` is a valid Ollama model name, else a message saying why not."""
    if not isinstance(name, str) or not name.strip():
        return "an Ollama model name is required (e.g. llama3.1:8b)"
    if not _NAME_RE.match(name) or ".." in name or name.endswith(":"):
        return ("%r is not a valid Ollama model name: expected name[:tag] such as 'llama3.1:8b' or "
                "'namespace/name:tag' (letters, digits, '.', '_' and '-'; one ':' before the tag)" % name)
    return None


def normalize(name):
    """Ollama's canonical form: ``llama3.1`` -> ``llama3.1:latest``; drops the default registry prefix."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def _error_text(body):
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    except ValueError:
        pass
    return body.strip()[:300] or "(empty body)"


class OllamaClient(object):
    """Minimal client of the Ollama API (``/api/tags``, ``/api/pull``, ``/api/delete``, ``/api/ps``, ...)."""

    def __init__(self, url, timeout=30.0):
        self.url = url.rstrip("/")
        self.timeout = float(timeout)

    # ---- plumbing --------------------------------------------------------------------------
    def _request(self, method, path, body=None, timeout=None):
        data = json.dumps(body).encode() if body is not None else None
        try:
            return open_url(self.url + path, data=data, method=method, timeout=timeout or self.timeout,
                            headers={"Content-Type": "application/json", "Accept": "application/json"},
                            follow_redirects="safe", use_proxy=True)
        except urllib.error.HTTPError as exc:
            raise exc
        except (urllib.error.URLError, ConnectionError, socket.timeout, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise OllamaError(
                "cannot reach Ollama at %s (%s %s): %s. Check that the Ollama service is running and that "
                "ollama_url points at it (in the cluster: http://ollama.<namespace>.svc.cluster.local:11434; "
                "from the GPU host: a port-forward or the node port)" % (self.url, method, path, reason))

    def _json(self, method, path, body=None, ok_404=False):
        try:
            resp = self._request(method, path, body)
        except urllib.error.HTTPError as exc:
            text = _error_text(exc.read().decode("utf-8", "replace"))
            if ok_404 and exc.code == 404:
                return None
            raise OllamaError("Ollama at %s answered HTTP %s to %s %s: %s" % (self.url, exc.code, method, path, text))
        with resp:
            raw = resp.read().decode("utf-8", "replace")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise OllamaError("Ollama at %s sent a non-JSON answer to %s %s: %r; is ollama_url really an Ollama "
                              "server?" % (self.url, method, path, raw[:200]))

    # ---- read ------------------------------------------------------------------------------
    def ping(self):
        resp = self._request("GET", "/")
        with resp:
            return resp.read().decode("utf-8", "replace").strip()

    def _models(self, path, fields):
        """``{normalised name: {field: value}}`` from a model listing (/api/tags, /api/ps)."""
        data = self._json("GET", path) or {}
        out = {}
        for m in data.get("models") or []:
            name = m.get("name") or m.get("model")
            if name:
                out[normalize(name)] = dict((f, m.get(f)) for f in fields)
        return out

    def tags(self):
        """Local models: ``{name: {"digest": ..., "size": ...}}`` (names normalised)."""
        return self._models("/api/tags", ("digest", "size", "modified_at"))

    def show(self, name):
        return self._json("POST", "/api/show", {"model": name}, ok_404=True)

    def ps(self):
        """Loaded models: ``{name: {"size_vram": ..., "size": ..., "expires_at": ...}}``."""
        return self._models("/api/ps", ("size_vram", "size", "expires_at"))

    # ---- write -----------------------------------------------------------------------------
    def delete(self, name):
        try:
            resp = self._request("DELETE", "/api/delete", {"model": name})
        except urllib.error.HTTPError as exc:
            text = _error_text(exc.read().decode("utf-8", "replace"))
            if exc.code == 404:
                return False
            raise OllamaError("Ollama at %s refused to delete %s (HTTP %s): %s" % (self.url, name, exc.code, text))
        resp.close()
        return True

    def unload(self, name):
        """Ask Ollama to unload ``name`` from (V)RAM now: ``/api/generate`` with ``keep_alive: 0``."""
        self._json("POST", "/api/generate", {"model": name, "keep_alive": 0, "stream": False})

    def pull_once(self, name, on_line, idle_timeout, deadline):
        """One ``/api/pull`` stream. Returns on ``success``; raises _StreamCut when the stream breaks."""
        try:
            resp = self._request("POST", "/api/pull", {"model": name, "stream": True}, timeout=idle_timeout)
        except urllib.error.HTTPError as exc:
            text = _error_text(exc.read().decode("utf-8", "replace"))
            raise OllamaError("Ollama at %s refused to pull %s (HTTP %s): %s" % (self.url, name, exc.code, text))
        except OllamaError as exc:
            if "timed out" in str(exc):
                raise OllamaPullTimeout(str(exc))
            raise _StreamCut(str(exc))
        try:
            with resp:
                while True:
                    try:
                        raw = resp.readline()
                    except (socket.timeout, TimeoutError):
                        raise OllamaPullTimeout(
                            "Ollama at %s sent nothing for %s s while pulling %s; the server or its registry "
                            "connection looks hung. Raise timeout if your link is that slow"
                            % (self.url, idle_timeout, name))
                    except (ConnectionError, http.client.HTTPException, OSError) as exc:
                        raise _StreamCut("connection lost: %s" % exc)
                    if not raw:
                        raise _StreamCut("the stream ended before 'success'")
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        raise _StreamCut("garbled stream line %r" % line[:120])
                    if obj.get("error"):
                        raise OllamaError("Ollama at %s failed to pull %s: %s" % (self.url, name, obj["error"]))
                    on_line(obj)
                    if obj.get("status") == "success":
                        return
                    if deadline is not None and time.monotonic() > deadline:
                        raise OllamaPullTimeout(
                            "pulling %s from Ollama at %s did not finish within max_duration; it resumes where it "
                            "stopped when run again" % (name, self.url))
        except (socket.timeout, TimeoutError):
            raise OllamaPullTimeout("Ollama at %s timed out while pulling %s" % (self.url, name))


class PullProgress(object):
    """Aggregates ``/api/pull`` lines into bytes done/total over all layers."""

    def __init__(self, report=None):
        self.layers = {}
        self.status = "starting"
        self.report = report or (lambda progress: None)

    def __call__(self, obj):
        self.status = obj.get("status") or self.status
        digest = obj.get("digest")
        if digest and obj.get("total") is not None:
            self.layers[digest] = (int(obj.get("completed") or 0), int(obj["total"]))
        self.report(self.snapshot())

    def snapshot(self):
        done = sum(layer[0] for layer in self.layers.values())
        total = sum(layer[1] for layer in self.layers.values())
        return {"status": self.status, "completed": done, "total": total,
                "percent": round(100.0 * done / total, 1) if total else None}


def pull(client, name, idle_timeout=300, retries=3, retry_delay=2.0, max_duration=None, report=None, sleep=time.sleep):
    """Pull ``name``; retry a dropped connection (Ollama resumes partial layers).

    ``retries`` counts drops in a row that made no progress. Returns a dict with attempts,
    drops and the last progress snapshot. Raises OllamaError (incl. OllamaPullTimeout).
    """
    progress = PullProgress(report)
    deadline = time.monotonic() + max_duration if max_duration else None
    attempts, drops, stuck = 0, [], 0
    while True:
        attempts += 1
        before = progress.snapshot()["completed"]
        try:
            client.pull_once(name, progress, idle_timeout, deadline)
            result = progress.snapshot()
            result.update(attempts=attempts, drops=drops)
            return result
        except _StreamCut as exc:
            drops.append(str(exc))
            stuck = 0 if progress.snapshot()["completed"] > before else stuck + 1
            if stuck > retries:
                raise OllamaError(
                    "pulling %s from Ollama at %s failed: the connection dropped %d time(s) in a row without "
                    "progress (last: %s). Check the network between this host and Ollama, then re-run: the pull "
                    "resumes where it stopped" % (name, client.url, stuck, exc))
            if deadline is not None and time.monotonic() > deadline:
                raise OllamaPullTimeout("pulling %s did not finish within max_duration" % name)
            progress.status = "connection dropped, resuming (attempt %d)" % (attempts + 1)
            progress.report(progress.snapshot())
            sleep(retry_delay)


def wait_unloaded(client, names, timeout, interval=0.5, sleep=time.sleep):
    """Wait until none of ``names`` is listed by ``/api/ps``; return those still loaded at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        still = sorted(set(names) & set(client.ps()))
        if not still or time.monotonic() >= deadline:
            return still
        sleep(interval)
