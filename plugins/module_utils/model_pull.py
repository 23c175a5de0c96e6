# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of ``ailab.gpu_lab.model_pull``: argument spec, validation, dispatch, progress file.

The module file only declares docs and calls :func:`run_module`. Backends live in
``model_pull_ollama`` (Ollama HTTP API), ``model_pull_hf`` (huggingface_hub snapshots) and
``model_pull_verify`` (model-signing).
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_ollama as ollama
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_hf as hf
from ansible_collections.ailab.gpu_lab.plugins.module_utils import model_pull_verify as verify_mod

BACKENDS = ("ollama", "huggingface", "vllm")
HOSTED_HINT = ("hosted providers (openai, anthropic, gemini, mistral, groq, ...) need no download; "
               "the ailab.gpu_lab.model_pulls filter leaves them out of the pull list")

ARGUMENT_SPEC = dict(
    backend=dict(type="str", required=True),
    source=dict(type="str", aliases=["name", "model", "repo_id"]),
    state=dict(type="str", default="present", choices=["present", "absent", "latest", "unloaded"]),
    ollama_url=dict(type="str", default="http://127.0.0.1:11434"),
    timeout=dict(type="int", default=300),
    max_duration=dict(type="int", default=21600),
    retries=dict(type="int", default=3),
    retry_delay=dict(type="float", default=2.0),
    unload_wait=dict(type="int", default=60),
    revision=dict(type="str"),
    allow_patterns=dict(type="list", elements="str"),
    ignore_patterns=dict(type="list", elements="str"),
    cache_dir=dict(type="path"),
    hf_endpoint=dict(type="str"),
    hf_token=dict(type="str", no_log=True),
    verify=dict(type="dict", options=dict(
        method=dict(type="str", default="key", choices=["key", "certificate"]),
        signature=dict(type="str", default="model.sig"),
        public_key=dict(type="path"),
        certificate_chain=dict(type="list", elements="path", default=[]),
        hash_algorithm=dict(type="str", default="sha256", choices=["sha256", "blake2"]),
    )),
    progress=dict(type="bool", default=True),
    progress_interval=dict(type="int", default=10),
    progress_file=dict(type="path"),
)


def _lines(items):
    items = sorted(items or [])
    return "\n".join(items) + "\n" if items else ""


class ProgressFile(object):
    """Writes the current progress as JSON (atomically, at most twice a second) for the action plugin."""

    def __init__(self, path, backend, source, min_interval=0.5, clock=time.monotonic):
        self.path = path
        self.base = {"backend": backend, "source": source, "started": time.time()}
        self.min_interval = min_interval
        self.clock = clock
        self._last = None
        self._first_bytes = None

    def __call__(self, progress, force=False):
        if not self.path:
            return
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.min_interval:
            return
        self._last = now
        data = dict(self.base)
        data.update(progress)
        data["updated"] = time.time()
        done = progress.get("completed") or 0
        if self._first_bytes is None:
            self._first_bytes = (now, done)
        elapsed = now - self._first_bytes[0]
        data["rate"] = int((done - self._first_bytes[1]) / elapsed) if elapsed > 0 else None
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".progress-")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is best effort; never fail a pull because of it

    def remove(self):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def normalize_backend(backend):
    """``vllm`` (the catalog's name) downloads from Hugging Face. Returns (backend, error)."""
    b = (backend or "").strip().lower()
    if b == "vllm":
        return "huggingface", None
    if b in ("ollama", "huggingface"):
        return b, None
    return None, ("unknown backend %r: model_pull downloads for 'ollama' (an Ollama tag) and 'huggingface' / 'vllm' "
                  "(a Hugging Face repo snapshot); %s" % (backend, HOSTED_HINT))


def validate(params):
    """Return a list of problems with the parameters (empty when fine)."""
    problems = []
    backend, err = normalize_backend(params["backend"])
    if err:
        return [err]
    state, source = params["state"], params.get("source")
    if backend == "ollama":
        if state != "unloaded" or source:
            msg = ollama.validate_name(source)
            if msg:
                problems.append("source: " + msg)
        if params.get("verify"):
            problems.append("verify applies to Hugging Face snapshots only (Ollama verifies each layer's sha256 itself)")
        if not (params.get("ollama_url") or "").startswith(("http://", "https://")):
            problems.append("ollama_url %r must be an http(s) URL such as http://127.0.0.1:11434" % params.get("ollama_url"))
    else:
        msg = hf.validate_repo_id(source)
        if msg:
            problems.append("source: " + msg)
        if state == "unloaded":
            problems.append("state=unloaded applies to Ollama only (vLLM frees the GPU when its pod stops)")
        rev = params.get("revision")
        if rev is not None and (not rev.strip() or any(c.isspace() for c in rev) or ".." in rev):
            problems.append("revision %r is not a valid git revision (pin a 40-hex commit sha)" % rev)
        v = params.get("verify")
        if v:
            if v["method"] == "key" and not v.get("public_key"):
                problems.append("verify.public_key is required with verify.method=key")
    for key in ("timeout", "max_duration"):
        if params.get(key) is not None and params[key] <= 0:
            problems.append("%s must be a positive number of seconds" % key)
    if params.get("retries") is not None and params["retries"] < 0:
        problems.append("retries must be 0 or more")
    return problems


def _ollama(module, params, report):
    client = ollama.OllamaClient(params["ollama_url"], timeout=min(params["timeout"], 60))
    state = params["state"]
    name = ollama.normalize(params["source"]) if params.get("source") else None
    check = module.check_mode
    result = {"changed": False, "backend": "ollama", "state": state, "source": name, "ollama_url": client.url}

    if state == "unloaded":
        loaded = client.ps()
        targets = [name] if name else sorted(loaded)
        targets = [t for t in targets if t in loaded]
        result.update(loaded_before=sorted(loaded), unloaded=targets, changed=bool(targets),
                      freed_vram=sum(int(loaded[t].get("size_vram") or 0) for t in targets))
        if module._diff:
            result["diff"] = {"before": _lines(loaded),
                              "after": _lines(set(loaded) - set(targets))}
        if targets and not check:
            for t in targets:
                client.unload(t)
            still = ollama.wait_unloaded(client, targets, params["unload_wait"])
            if still:
                module.fail_json(msg="Ollama at %s still holds %s in memory %s s after keep_alive=0; a request may be "
                                     "keeping it busy. Stop the clients (or the ollama pod) before handing over the GPU"
                                 % (client.url, ", ".join(still), params["unload_wait"]), **result)
        result["loaded_after"] = sorted(set(loaded) - set(targets)) if not check else sorted(loaded)
        return result

    before = client.tags()
    result["before"] = sorted(before)
    current = before.get(name)
    if current:
        result.update(digest=current.get("digest"), size=current.get("size"))

    def finish(after_models):
        result["after"] = sorted(after_models)
        if module._diff:
            result["diff"] = {"before": _lines(before), "after": _lines(after_models),
                              "before_header": "%s models" % client.url, "after_header": "%s models" % client.url}
        return result

    if state == "absent":
        if not current:
            return finish(before)
        result["changed"] = True
        if not check:
            client.delete(name)
        return finish(sorted(set(before) - {name}))

    if state == "present" and current:
        result["msg"] = "%s is already present" % name
        return finish(before)
    if check:
        if state == "latest" and current:
            result["msg"] = ("%s is present; whether the registry has a newer digest is only known by pulling "
                             "(check mode does not pull)" % name)
            return finish(before)
        result["changed"] = True
        result["msg"] = "would pull %s" % name
        return finish(sorted(set(before) | {name}))

    stats = ollama.pull(client, name, idle_timeout=params["timeout"], retries=params["retries"],
                        retry_delay=params["retry_delay"], max_duration=params["max_duration"], report=report)
    after = client.tags()
    new = after.get(name)
    if not new:
        module.fail_json(msg="Ollama at %s reported success pulling %s but does not list it in /api/tags" % (client.url, name),
                         **result)
    result.update(digest=new.get("digest"), size=new.get("size"), attempts=stats["attempts"],
                  dropped_connections=stats["drops"], transferred_total=stats.get("total"))
    result["previous_digest"] = current.get("digest") if current else None
    result["changed"] = (current is None) or (current.get("digest") != new.get("digest"))
    result["msg"] = ("pulled %s" % name) if result["changed"] else "%s is already the latest (digest unchanged)" % name
    return finish(after)


def _huggingface(module, params, report):
    cache_dir = params.get("cache_dir") or hf.default_cache_dir()
    repo, state = params["source"], params["state"]
    result = {"backend": "huggingface", "state": state, "source": repo, "cache_dir": cache_dir,
              "hf_endpoint": params.get("hf_endpoint") or None}
    if state == "absent":
        out = hf.ensure_absent(repo, params.get("revision"), cache_dir, check_mode=module.check_mode)
        result.update(out)
    else:
        allow = list(params.get("allow_patterns") or [])
        v = params.get("verify")
        if v and allow and not os.path.isabs(v["signature"]) and v["signature"] not in allow:
            allow.append(v["signature"])  # the signature travels with the model
        out = hf.ensure_present(repo, params.get("revision"), cache_dir, allow_patterns=allow or None,
                                ignore_patterns=params.get("ignore_patterns"), token=params.get("hf_token"),
                                endpoint=params.get("hf_endpoint"), timeout=params["timeout"],
                                check_mode=module.check_mode, report=report)
        # not "path": AnsibleModule.exit_json would add (and overwrite size/state with) that path's stat
        out["snapshot_path"] = out.pop("path")
        result.update(out)
        if v and not module.check_mode:
            result["verification"] = verify_mod.verify(
                out["snapshot_path"], signature=v["signature"], method=v["method"], public_key=v.get("public_key"),
                certificate_chain=v.get("certificate_chain"), hash_algorithm=v["hash_algorithm"])
            result["verified"] = True
    if module._diff:
        result["diff"] = {"before": _lines(result.get("before")),
                          "after": _lines(result.get("after")),
                          "before_header": "%s in %s" % (repo, cache_dir), "after_header": "%s in %s" % (repo, cache_dir)}
    return result


def run_module(module):
    """Entry point used by plugins/modules/model_pull.py."""
    params = module.params
    problems = validate(params)
    if problems:
        module.fail_json(msg="model_pull: invalid arguments for %r: %s" % (params.get("source"), "; ".join(problems)))
    backend = normalize_backend(params["backend"])[0]
    if params.get("hf_token"):
        module.no_log_values.add(params["hf_token"])
    if backend == "huggingface":
        if hf.huggingface_hub is None:
            from ansible.module_utils.basic import missing_required_lib
            module.fail_json(msg=missing_required_lib("huggingface_hub"), exception=hf.HF_IMPORT_ERROR)
        if params.get("verify") and verify_mod.ms_verifying is None:
            from ansible.module_utils.basic import missing_required_lib
            module.fail_json(msg=missing_required_lib("model-signing"), exception=verify_mod.MS_IMPORT_ERROR)
    if backend == "huggingface" and params["state"] != "absent" and not hf.COMMIT_RE.match(params.get("revision") or ""):
        module.warn("revision %r of %s is not a pinned commit sha: the snapshot can change under vLLM; pin the "
                    "40-hex commit in the catalog" % (params.get("revision") or "main", params.get("source")))
    progress = ProgressFile(params.get("progress_file"), backend, params.get("source"))
    try:
        if backend == "ollama":
            result = _ollama(module, params, progress)
        else:
            result = _huggingface(module, params, progress)
    except (ollama.OllamaError, hf.HFError, verify_mod.VerifyError) as exc:
        module.fail_json(msg=str(exc), backend=backend, source=params.get("source"))
    finally:
        progress.remove()
    module.exit_json(**result)
