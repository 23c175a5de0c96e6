# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``model_pulls``: the model catalog -> the downloads ailab.gpu_lab.model_pull must do.

Documented in model_pulls.yml beside this file. The catalog is validated by
module_utils/catalog.py first, so a bad entry fails here with the catalog's own message.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog

_PULL_BACKENDS = {"vllm": "huggingface", "ollama": "ollama"}


def model_pulls(models, backend=None, service=None):
    """List of ``{name, names, backend, source, revision, service}`` for the self-hosted catalog entries.

    vLLM entries become ``backend: huggingface`` (with their pinned ``revision``), Ollama entries
    ``backend: ollama`` (``revision: null``) with ``service``, the Ollama that serves them (``ollama``, the GPU
    backend, for chat models; ``ollama-embed``, on CPU, for embedding models: catalog.ollama_service()).
    Hosted providers need no download and are left out. Several aliases of the same source/revision (and
    Ollama) give one pull. ``backend`` keeps only ``ollama`` or ``huggingface`` (``vllm`` accepted) entries,
    ``service`` only the pulls of that Ollama.
    """
    if backend is not None and backend not in ("ollama", "huggingface", "vllm"):
        raise AnsibleFilterError("model_pulls: backend must be 'ollama', 'huggingface' or 'vllm', got %r" % (backend,))
    services = sorted(set(_catalog.OLLAMA_SERVICES.values()))
    if service is not None and service not in services:
        raise AnsibleFilterError("model_pulls: service must be one of the Ollama Services %s, got %r"
                                 % (", ".join(services), service))
    want = _PULL_BACKENDS.get(backend, backend)
    try:
        entries = _catalog.validate_catalog(models)
    except _catalog.CatalogError as exc:
        raise AnsibleFilterError("model_pulls: %s" % exc)
    pulls, seen = [], {}
    for entry in entries:
        kind = _PULL_BACKENDS.get(entry["backend"])
        target = _catalog.ollama_service(entry)
        if kind is None or (want and kind != want) or (service and target != service):
            continue
        key = (kind, target, entry["source"], entry.get("revision"))
        if key in seen:
            seen[key]["names"].append(entry["name"])
            continue
        item = {"name": entry["name"], "names": [entry["name"]], "backend": kind, "source": entry["source"],
                "revision": entry.get("revision") if kind == "huggingface" else None, "service": target}
        seen[key] = item
        pulls.append(item)
    return pulls


class FilterModule(object):
    """model_pull filters."""

    def filters(self):
        return {"model_pulls": model_pulls}
