# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hugging Face snapshot logic of ``ailab.gpu_lab.model_pull`` (the vLLM side).

Downloads with ``huggingface_hub.snapshot_download`` into a hub cache directory (the layout
vLLM reads with ``--download-dir`` / ``HF_HUB_CACHE``), so vLLM can then run with
``HF_HUB_OFFLINE=1``. A pinned snapshot that is already complete is detected from the cache
alone (the tree listing huggingface_hub keeps in ``<repo>/trees/<commit>.json``): no request
is sent at all.
"""
from __future__ import annotations

import fnmatch
import io
import os
import re
import socket
import traceback
import urllib.parse

HF_IMPORT_ERROR = None
try:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.utils import tqdm as hf_tqdm
except ImportError:  # pragma: no cover - exercised only where the library is missing
    huggingface_hub = None
    hf_tqdm = object
    HF_IMPORT_ERROR = traceback.format_exc()

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?"
REPO_ID_RE = re.compile(r"^(?:%s/)?%s$" % (_REPO_PART, _REPO_PART))
_GLOB_CHARS = set("*?[")


class HFError(Exception):
    """A failure with a message meant for the user."""


def validate_repo_id(repo_id):
    if not isinstance(repo_id, str) or not repo_id:
        return "a Hugging Face repo id is required (e.g. Qwen/Qwen2.5-7B-Instruct-AWQ)"
    if not REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        return ("%r is not a valid Hugging Face repo id: expected 'owner/name' (letters, digits, '.', '_' and '-', "
                "no '--' or '..'), e.g. 'Qwen/Qwen2.5-7B-Instruct-AWQ'" % repo_id)
    return None


def default_cache_dir():
    if huggingface_hub is None:
        return os.path.expanduser("~/.cache/huggingface/hub")
    return hf_constants.HF_HUB_CACHE


def storage_folder(cache_dir, repo_id):
    return os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))


def _matches(path, allow_patterns, ignore_patterns):
    def hit(patterns):
        for p in patterns:
            if p.endswith("/"):
                p += "*"
            if fnmatch.fnmatch(path, p):
                return True
        return False
    if allow_patterns and not hit(allow_patterns):
        return False
    if ignore_patterns and hit(ignore_patterns):
        return False
    return True


def _resolve_local_commit(cache_dir, repo_id, revision):
    if COMMIT_RE.match(revision):
        return revision
    ref = os.path.join(storage_folder(cache_dir, repo_id), "refs", revision)
    if os.path.isfile(ref):
        with open(ref) as fh:
            return fh.read().strip() or None
    return None


def local_state(cache_dir, repo_id, revision, allow_patterns=None, ignore_patterns=None):
    """What the cache holds for this revision, without any network call.

    Returns {"commit", "path", "present": [files], "expected": [files] or None, "complete": bool}.
    ``expected`` is known only when huggingface_hub cached the tree listing of that commit.
    """
    commit = _resolve_local_commit(cache_dir, repo_id, revision)
    out = {"commit": commit, "path": None, "present": [], "expected": None, "complete": False}
    if commit is None:
        return out
    snap = os.path.join(storage_folder(cache_dir, repo_id), "snapshots", commit)
    out["path"] = snap
    if os.path.isdir(snap):
        for root, _dirs, files in os.walk(snap):
            for f in files:
                full = os.path.join(root, f)
                if os.path.exists(full):  # a dangling symlink is not a file we have
                    out["present"].append(os.path.relpath(full, snap).replace(os.sep, "/"))
        out["present"].sort()
    if huggingface_hub is not None:
        try:
            tree = huggingface_hub.get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)
        except Exception:  # CachedRepoTreeNotFoundError, or a cache written by an older library
            tree = None
        if tree is not None:
            expected = sorted(f.path for f in tree if _matches(f.path, allow_patterns, ignore_patterns))
            out["expected"] = expected
            out["complete"] = bool(expected) and set(expected) <= set(out["present"])
    return out


class _Progress(hf_tqdm):
    """A silent tqdm that forwards byte counts to a callback (the module's progress file)."""

    callback = None

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = False
        kwargs["file"] = io.StringIO()
        kwargs.pop("name", None)
        super(_Progress, self).__init__(*args, **kwargs)

    def update(self, n=1):
        out = super(_Progress, self).update(n)
        if self.unit == "B" and _Progress.callback is not None:
            _Progress.callback(int(self.n), int(self.total or 0))
        return out


def _explain(exc, repo_id, revision, endpoint):
    """Map huggingface_hub errors to messages that say what to fix (never containing the token)."""
    if isinstance(exc, hf_errors.DryRunError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the dry run wraps the real HTTP / connection error
    where = "%s at %s (revision %s)" % (repo_id, endpoint or "https://huggingface.co", revision)
    resp = getattr(exc, "response", None)
    status = getattr(resp, "status_code", None)
    server_msg = ""
    if resp is not None:
        server_msg = resp.headers.get("X-Error-Message") or ""
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return "revision %r does not exist in %s: pin a commit sha that exists (see the repo's history)" % (revision, where)
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return "a file listed for %s is missing on the server (HTTP 404): %s" % (where, str(exc).splitlines()[-1])
    if isinstance(exc, hf_errors.GatedRepoError):
        return ("%s is gated: accept its licence on the Hub with the account of the token, then set hf_token "
                "(HF_TOKEN in .env / the hf-token Secret)" % where)
    if status == 401:
        if "Invalid credentials" in server_msg or "Invalid" in str(exc):
            return ("Hugging Face rejected the token for %s (HTTP 401 Unauthorized: invalid credentials). "
                    "Check hf_token (HF_TOKEN in .env / the hf-token Secret)" % where)
        return ("%s answered HTTP 401 Unauthorized: the repo is private or gated, or does not exist. Check the "
                "repo id and set a token that can read it (hf_token / HF_TOKEN)" % where)
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return "repository %s not found (HTTP %s): check the repo id, or the token if it is private" % (where, status)
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        return ("cannot reach the Hugging Face endpoint for %s and the files are not in the cache: %s. Check the "
                "network, hf_endpoint (HF_ENDPOINT) and proxy settings" % (where, str(exc).splitlines()[0]))
    if status is not None:
        return "the Hub answered HTTP %s for %s: %s" % (status, where, server_msg or str(exc).splitlines()[0])
    return "downloading %s failed: %s: %s" % (where, type(exc).__name__, exc)


def check_reachable(endpoint, timeout):
    """Fail fast (one TCP connect) when the endpoint is unreachable, instead of the library's ~25 s of retries."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HFError("hf_endpoint %r is not an http(s) URL (e.g. https://huggingface.co or a mirror)" % endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=min(float(timeout), 15.0)).close()
    except (OSError, ValueError) as exc:
        raise HFError("cannot reach the Hugging Face endpoint %s (%s:%s): %s. Check the network, DNS, proxy, or "
                      "hf_endpoint (HF_ENDPOINT) for a mirror" % (endpoint, parts.hostname, port, exc))


def _literal_misses(allow_patterns, files):
    """allow_patterns entries without wildcards that name no file: a missing file, not a filter."""
    misses = []
    for p in allow_patterns or []:
        if set(p) & _GLOB_CHARS or p.endswith("/"):
            continue
        if p not in files:
            misses.append(p)
    return misses


def ensure_present(repo_id, revision, cache_dir, allow_patterns=None, ignore_patterns=None, token=None,
                   endpoint=None, timeout=60, check_mode=False, report=None, max_workers=4):
    """Make sure the snapshot is complete in ``cache_dir``. Returns a result dict (changed, path, ...)."""
    if huggingface_hub is None:
        raise HFError("huggingface_hub is not installed on the target")
    revision = revision or "main"
    before = local_state(cache_dir, repo_id, revision, allow_patterns, ignore_patterns)
    result = {"changed": False, "revision": revision, "commit": before["commit"], "path": before["path"],
              "cache_dir": cache_dir, "files": before["present"], "downloaded_bytes": 0, "network": False,
              "before": before["present"], "after": before["present"]}
    if before["complete"] and COMMIT_RE.match(revision):
        # pinned and complete: nothing to ask the network
        result["size"] = _size(before["path"], before["present"])
        return result

    result["network"] = True
    check_reachable(endpoint or hf_constants.ENDPOINT, timeout)
    hf_constants.HF_HUB_DOWNLOAD_TIMEOUT = int(timeout)
    hf_constants.HF_HUB_ETAG_TIMEOUT = int(timeout)
    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=allow_patterns or None,
                  ignore_patterns=ignore_patterns or None, token=token or None, endpoint=endpoint or None,
                  etag_timeout=timeout)
    try:
        plan = huggingface_hub.snapshot_download(dry_run=True, tqdm_class=_Progress, **kwargs)
    except Exception as exc:  # all library errors are mapped to one clear message
        raise HFError(_explain(exc, repo_id, revision, endpoint))
    files = sorted(p.filename for p in plan)
    if not files:
        raise HFError("no file of %s at revision %s matches allow_patterns=%s ignore_patterns=%s"
                      % (repo_id, revision, allow_patterns, ignore_patterns))
    misses = _literal_misses(allow_patterns, files)
    if misses:
        raise HFError("file(s) %s not found in %s at revision %s (HTTP 404 for the listing): check allow_patterns"
                      % (", ".join(misses), repo_id, revision))
    commit = plan[0].commit_hash
    snap = os.path.join(storage_folder(cache_dir, repo_id), "snapshots", commit)
    have = local_state(cache_dir, repo_id, commit, allow_patterns, ignore_patterns)["present"]
    todo = [p for p in plan if p.will_download or p.filename not in have]
    result.update(commit=commit, path=snap, before=have)
    total = sum(int(p.file_size or 0) for p in todo)
    result["download_size"] = total
    if not todo:
        # (the dry run above already recorded refs/<branch> -> commit for a branch revision)
        result.update(files=files, after=files, size=_size(snap, files))
        return result
    result["changed"] = True
    result["would_download"] = sorted(p.filename for p in todo)
    if check_mode:
        result.update(files=files, after=files)
        return result
    _Progress.callback = (lambda done, tot: report({"status": "downloading %d file(s)" % len(todo),
                                                    "completed": done, "total": tot or total,
                                                    "percent": round(100.0 * done / tot, 1) if tot else None})
                          ) if report else None
    kwargs["revision"] = commit
    try:
        path = huggingface_hub.snapshot_download(tqdm_class=_Progress, max_workers=max_workers, **kwargs)
    except Exception as exc:
        raise HFError(_explain(exc, repo_id, revision, endpoint))
    finally:
        _Progress.callback = None
    after = local_state(cache_dir, repo_id, commit, allow_patterns, ignore_patterns)
    result.update(path=path, files=after["present"], after=after["present"], downloaded_bytes=total,
                  size=_size(path, after["present"]))
    return result


def ensure_absent(repo_id, revision, cache_dir, check_mode=False):
    """Delete cached revision(s) of ``repo_id`` (all of them when revision is None)."""
    if huggingface_hub is None:
        raise HFError("huggingface_hub is not installed on the target")
    result = {"changed": False, "cache_dir": cache_dir, "deleted": [], "before": [], "after": []}
    if not os.path.isdir(storage_folder(cache_dir, repo_id)):
        return result
    info = huggingface_hub.scan_cache_dir(cache_dir)
    repos = [r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"]
    commits = []
    for r in repos:
        for rev in r.revisions:
            result["before"].append(rev.commit_hash)
            if revision is None or rev.commit_hash == revision or revision in rev.refs:
                commits.append(rev.commit_hash)
    result["after"] = [c for c in result["before"] if c not in commits]
    if not commits:
        return result
    result["changed"] = True
    result["deleted"] = sorted(commits)
    if not check_mode:
        strategy = info.delete_revisions(*commits)
        result["freed_bytes"] = strategy.expected_freed_size
        strategy.execute()
    return result


def _size(path, files):
    total = 0
    for f in files or []:
        try:
            total += os.path.getsize(os.path.join(path, f))
        except OSError:
            pass
    return total
