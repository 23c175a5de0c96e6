# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model catalog (``gpu_lab_models`` / ``gpu_lab_routes``): schema, validation, derivations.

ONE catalog in the inventory describes every model of the lab; everything else (the LiteLLM
model_list and fallbacks, Ollama pulls, vLLM arguments, Hugging Face downloads, gpu_swap
targets, the env var names the Secrets must provide) is derived from it here, so that a name
is never typed twice. The schema is documented in docs/catalog.md.

Plain Python (stdlib only): importable by modules, filters, roles' tests and unit tests.
Every error names the entry (index and name), the field, and how to fix it; validation
collects ALL problems of a catalog and raises one ``CatalogError`` listing them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json
import re

from ansible_collections.ailab.gpu_lab.plugins.module_utils import components as _components

# -- schema ----------------------------------------------------------------------------------

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
OLLAMA_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*(:[A-Za-z0-9][A-Za-z0-9._-]*)?$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SNAKE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
NODE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
URL_RE = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")

SELF_HOSTED_BACKENDS = ("vllm", "ollama")

# Hosted providers a catalog entry may name as `backend` (LiteLLM provider prefixes that
# authenticate with one API key from an env var). Others (bedrock, vertex_ai, azure, ...)
# need more than a key: write their model_list entry in the litellm_config module directly.
HOSTED_BACKENDS = (
    "anthropic", "cerebras", "cohere", "deepinfra", "deepseek", "fireworks_ai", "gemini",
    "groq", "mistral", "openai", "openrouter", "perplexity", "together_ai", "voyage", "xai",
)
BACKENDS = SELF_HOSTED_BACKENDS + HOSTED_BACKENDS
MODES = ("chat", "embedding")

FIELDS = ("name", "backend", "source", "revision", "mode", "vllm_args", "api_key_env", "api_base",
          "litellm", "node", "cooldown_time", "dimensions", "on_demand", "vision")

# Seconds LiteLLM keeps a self-hosted deployment out of rotation after it failed (model_info.cooldown_time,
# which wins over router_settings.cooldown_time). vLLM and Ollama are only down during a planned GPU swap,
# and the swap's gateway check waits for the target to be routed again: short. Hosted providers keep the
# router's cooldown (rate limits and outages last longer).
SELF_HOSTED_COOLDOWN_TIME = 5
REQUIRED = ("name", "backend", "source")

# vllm_args the role derives from other fields: setting them would make the names drift.
VLLM_DERIVED_ARGS = {
    "model": "source", "served_model_name": "name", "revision": "revision", "tokenizer_revision": "revision",
    "host": "(the role)", "port": "(the role: Service vllm port 8000)", "download_dir": "(the role)",
}

# vllm_args that vLLM checks only when it starts (minutes later, in a crash-looping pod): refused here.
# Each backend pod gets exactly one GPU (limits nvidia.com/gpu: 1), so nothing may spread a model over more.
VLLM_ONE_GPU_ARGS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")

# vllm_args of vLLM's multimodal config (vllm/config/multimodal.py, MultiModalConfig; the engine argument of its
# limit_per_prompt is limit_mm_per_prompt): they only mean something for a model that takes images, so an entry
# using them must say vision: true (a text-only entry may only switch image input off: limit_mm_per_prompt 0).
VLLM_MULTIMODAL_ARGS = (
    "limit_mm_per_prompt", "mm_processor_kwargs", "mm_processor_cache_gb", "mm_processor_cache_type",
    "media_io_kwargs", "mm_shm_cache_max_object_size_mb", "mm_encoder_tp_mode", "interleave_mm_strings",
    "skip_mm_profiling", "enable_mm_embeds", "video_pruning_rate",
)
# limit_mm_per_prompt per modality: a count, or a mapping of the options vLLM's dummy-data classes accept
# (ImageDummyOptions, VideoDummyOptions, AudioDummyOptions forbid other keys; other modalities take count only).
VLLM_MM_LIMIT_OPTIONS = {"image": ("count", "width", "height"), "video": ("count", "num_frames", "width", "height"),
                         "audio": ("count", "length")}
VLLM_MM_CACHE_TYPES = ("shm", "lru")

# litellm_params the catalog derives; other keys are passed through as extra litellm_params.
LITELLM_DERIVED_PARAMS = {"model": "backend + source/name", "api_base": "api_base", "api_key": "api_key_env"}
LITELLM_EXTRA_PARAMS = (
    "rpm", "tpm", "timeout", "stream_timeout", "max_retries", "num_retries", "max_parallel_requests",
    "weight", "order", "organization", "api_version", "drop_params", "merge_reasoning_content_in_choices",
    "input_cost_per_token", "output_cost_per_token", "input_cost_per_second", "output_cost_per_second",
    "extra_headers", "headers", "max_tokens", "temperature", "top_p", "seed", "stop", "tags",
    "use_in_pass_through", "cache_control_injection_points", "region_name", "reasoning_effort",
)

# Heuristic for the rule "embedding models need mode: embedding" (checked only when `mode`
# is absent; an explicit `mode: chat` overrides it).
EMBEDDING_HINT_RE = re.compile(
    r"(embed|(^|[/_:.-])(bge|e5|gte|minilm|mpnet|nomic-embed|arctic-embed|mxbai-embed|jina-embeddings)"
    r"([_:.-]|$)|sentence-transformers/|voyage-(?!.*rerank))", re.IGNORECASE)

RESERVED_NAMES = ("default",)  # `gpu_lab_routes.default` means "fallbacks for every alias"


class CatalogError(ValueError):
    """A catalog that cannot be used. ``errors`` lists every problem found (one sentence each)."""

    def __init__(self, errors, what="gpu_lab_models"):
        self.errors = list(errors)
        self.what = what
        lines = "\n".join("  - " + e for e in self.errors)
        super(CatalogError, self).__init__(
            "%s: %d problem%s found:\n%s" % (what, len(self.errors), "" if len(self.errors) == 1 else "s", lines))


def did_you_mean(word, choices):
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return " (did you mean '%s'?)" % close[0] if close else ""


def looks_like_embedding(*texts):
    return any(isinstance(t, str) and EMBEDDING_HINT_RE.search(t) for t in texts)


def _where(index, entry):
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, str) and name:
        return "gpu_lab_models[%d] (name '%s')" % (index, name)
    return "gpu_lab_models[%d]" % index


# -- validation --------------------------------------------------------------------------------

def _check_entry(index, entry):
    """Return (errors, normalized entry) for one catalog entry."""
    if not isinstance(entry, dict):
        return (["gpu_lab_models[%d]: each entry must be a mapping with at least name, backend and source, "
                 "got %s" % (index, type(entry).__name__)], None)
    where = _where(index, entry)
    errors = []

    def err(field, msg):
        errors.append("%s: field '%s': %s" % (where, field, msg))

    for key in entry:
        if key not in FIELDS:
            err(key, "unknown field%s; allowed fields: %s" % (did_you_mean(key, FIELDS), ", ".join(FIELDS)))
    for key in REQUIRED:
        if entry.get(key) in (None, ""):
            err(key, "is required (%s)" % {
                "name": "the alias clients send, e.g. 'qwen2.5-7b'",
                "backend": "one of: %s" % ", ".join(BACKENDS),
                "source": "HF repo id for vllm, Ollama tag for ollama, provider model id for hosted backends",
            }[key])

    name = entry.get("name")
    if name not in (None, ""):
        if not isinstance(name, str) or not NAME_RE.match(name):
            err("name", "%r is not a valid alias: use 1-63 characters of lowercase letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit (it is also vLLM's --served-model-name), e.g. 'qwen2.5-7b'"
                % (name,))
        elif name in RESERVED_NAMES:
            err("name", "'%s' is reserved (gpu_lab_routes.default holds the fallbacks for every alias); "
                        "pick another alias" % name)

    backend = entry.get("backend")
    if backend not in (None, ""):
        if backend == "hosted_vllm":
            err("backend", "'hosted_vllm' is the LiteLLM provider the catalog derives for you; write backend: vllm")
        elif backend in ("ollama_chat",):
            err("backend", "'ollama_chat' is the LiteLLM provider the catalog derives for you; write backend: ollama")
        elif backend not in BACKENDS:
            err("backend", "%r is not a known backend%s; use vllm, ollama or a hosted provider (%s). Providers that "
                           "need more than one API key (bedrock, vertex_ai, azure) go in litellm_config's "
                           "config.model_list instead" % (backend, did_you_mean(backend, BACKENDS),
                                                          ", ".join(HOSTED_BACKENDS)))
    source = entry.get("source")
    if source not in (None, "") and not isinstance(source, str):
        err("source", "must be a string, got %s" % type(source).__name__)
        source = None

    mode = entry.get("mode")
    if mode is not None and mode not in MODES:
        err("mode", "%r is not a mode%s; use 'chat' (default) or 'embedding'" % (mode, did_you_mean(mode, MODES)))

    revision = entry.get("revision")
    if backend == "vllm":
        if isinstance(source, str) and source and not HF_REPO_RE.match(source):
            err("source", "%r is not a Hugging Face repo id; vllm models need '<org>/<repo>', "
                          "e.g. 'Qwen/Qwen2.5-7B-Instruct-AWQ'" % source)
        if revision in (None, ""):
            err("revision", "is required for vllm models: pin the 40-hex commit sha of %s "
                            "(see the 'Commits' tab of the model page on huggingface.co)" % (source or "the repo"))
        elif not isinstance(revision, str) or not REVISION_RE.match(revision):
            err("revision", "%r is not a 40-character lowercase hex commit sha; branch names like 'main' are not "
                            "pinned, copy the full commit sha" % (revision,))
    else:
        if revision not in (None, ""):
            err("revision", "only vllm models are pinned by revision; remove it (Ollama tags and hosted model ids "
                            "carry their version in 'source')")
        if entry.get("vllm_args") not in (None, {}):
            err("vllm_args", "only applies to backend: vllm; remove it")
    if backend == "ollama" and isinstance(source, str) and source and not OLLAMA_TAG_RE.match(source):
        err("source", "%r is not an Ollama tag; use '<model>[:<tag>]', e.g. 'llama3.1:8b'" % source)

    vllm_args = entry.get("vllm_args")
    if backend == "vllm" and vllm_args is not None:
        if not isinstance(vllm_args, dict):
            err("vllm_args", "must be a mapping of snake_case vLLM options, e.g. {max_model_len: 8192}")
        else:
            for key in vllm_args:
                if not isinstance(key, str) or not SNAKE_RE.match(key):
                    err("vllm_args", "key %r must be snake_case (max_model_len, not --max-model-len); it becomes "
                                     "--%s" % (key, str(key).lstrip("-").replace("_", "-")))
                elif key in VLLM_DERIVED_ARGS:
                    err("vllm_args", "'%s' is derived from %s; remove it so the served name and the gateway's "
                                     "name cannot drift" % (key, VLLM_DERIVED_ARGS[key]))
            for problem in _vllm_arg_values(vllm_args):
                err("vllm_args", problem)

    api_key_env = entry.get("api_key_env")
    if api_key_env not in (None, ""):
        if not isinstance(api_key_env, str) or not ENV_NAME_RE.match(api_key_env):
            hint = ""
            if isinstance(api_key_env, str) and api_key_env.startswith("os.environ/"):
                hint = "; write just the name ('%s'), the os.environ/ reference is derived" % api_key_env[11:]
            elif isinstance(api_key_env, str) and re.match(r"^(sk-|gsk_|AIza)", api_key_env):
                hint = "; this looks like the key itself: put the key in .env and name its variable here"
            err("api_key_env", "%r is not an environment variable name (UPPER_SNAKE_CASE)%s" % (api_key_env, hint))
    elif backend in HOSTED_BACKENDS:
        err("api_key_env", "is required for hosted backend '%s': name the .env variable holding the key, e.g. "
                           "%s_API_KEY (the secrets playbook puts it in the litellm-env Secret)"
            % (backend, backend.upper()))

    api_base = entry.get("api_base")
    if api_base not in (None, ""):
        if not isinstance(api_base, str) or not URL_RE.match(api_base):
            err("api_base", "%r is not an http(s) URL" % (api_base,))
        elif backend == "ollama" and api_base.rstrip("/").endswith("/v1"):
            err("api_base", "%r ends in /v1, but LiteLLM's ollama provider calls the native API (/api/chat); "
                            "use %r" % (api_base, api_base.rstrip("/")[:-3]))
        elif backend == "vllm" and not api_base.rstrip("/").endswith("/v1"):
            err("api_base", "%r lacks /v1: vLLM serves the OpenAI API under /v1; use %r"
                % (api_base, api_base.rstrip("/") + "/v1"))

    litellm = entry.get("litellm")
    if litellm is not None:
        if not isinstance(litellm, dict):
            err("litellm", "must be a mapping of extra litellm_params, e.g. {rpm: 60, timeout: 120}")
        else:
            for key in litellm:
                if key in LITELLM_DERIVED_PARAMS:
                    err("litellm", "'%s' is derived from %s; set that field instead"
                        % (key, LITELLM_DERIVED_PARAMS[key]))
                elif key not in LITELLM_EXTRA_PARAMS:
                    err("litellm", "unknown litellm_params key %r%s; known: %s"
                        % (key, did_you_mean(key, LITELLM_EXTRA_PARAMS), ", ".join(LITELLM_EXTRA_PARAMS)))
    cooldown = entry.get("cooldown_time")
    if cooldown is not None and (isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown < 0):
        err("cooldown_time", "%r is not a number of seconds >= 0 (how long LiteLLM keeps this model out of rotation "
                             "after a failure)" % (cooldown,))
    node = entry.get("node")
    if node not in (None, ""):
        if backend not in SELF_HOSTED_BACKENDS:
            err("node", "only self-hosted models (vllm, ollama) run on a node; remove it")
        elif not isinstance(node, str) or not NODE_RE.match(node) or len(node) > 253:
            err("node", "%r is not a Kubernetes node name (lowercase DNS name)" % (node,))

    on_demand = entry.get("on_demand")
    if on_demand is not None:
        if not isinstance(on_demand, bool):
            err("on_demand", "%r is not true or false (whether a request for this alias may hand the GPU to its "
                             "backend: docs/gpu_demand.md)" % (on_demand,))
        elif on_demand and (backend not in SELF_HOSTED_BACKENDS or mode == "embedding"):
            err("on_demand", "only a chat model of a GPU backend (vllm, ollama) can take the GPU on demand; an "
                             "embedding request never swaps and a hosted model needs no GPU: remove it")

    vision = entry.get("vision")
    if vision is not None:
        if not isinstance(vision, bool):
            err("vision", "%r is not true or false (whether the model takes images: the gateway's model_info "
                          "supports_vision)" % (vision,))
        elif vision and mode == "embedding":
            err("vision", "an embedding model (mode: embedding) returns vectors of text; it takes no image input. "
                          "Remove vision, or drop mode: embedding if this is a chat model that reads images")
    if backend == "vllm" and isinstance(vllm_args, dict):
        for problem in _vllm_multimodal_args(vllm_args, vision is True):
            err("vllm_args", problem)

    dimensions = entry.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            err("dimensions", "%r is not a positive whole number: it is the length of the vectors the embedding "
                              "model returns, e.g. 768 for nomic-embed-text" % (dimensions,))
        elif mode != "embedding":
            err("dimensions", "only embedding models (mode: embedding) return vectors of a dimension; remove it, or "
                              "add mode: embedding if this is an embedding model")

    if mode is None and backend is not None and looks_like_embedding(name, source):
        err("mode", "'%s' looks like an embedding model but has no mode; add mode: embedding (LiteLLM's health "
                    "check reports it unhealthy otherwise), or mode: chat if it really is a chat model"
            % (source or name))

    if errors:
        return errors, None
    normalized = dict(entry)
    normalized["mode"] = mode or "chat"
    if backend == "vllm":
        normalized["vllm_args"] = dict(vllm_args or {})
    normalized["litellm"] = dict(litellm or {})
    return errors, normalized


def _number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _vllm_arg_values(vllm_args):
    """Problems of the vllm_args values vLLM would refuse only at start (keys are snake_case, as written).

    A value null or false omits the flag (see vllm_args()), so it is not checked.
    """
    given = dict((k, v) for k, v in vllm_args.items() if v is not None and v is not False)
    problems = []
    if "gpu_memory_utilization" in given:
        value = given["gpu_memory_utilization"]
        if not _number(value) or not 0 < value <= 1:
            problems.append("gpu_memory_utilization %r is not a fraction in (0, 1]: it is the share of the GPU's "
                            "memory vLLM may take, e.g. 0.90 (vLLM refuses other values when it starts)" % (value,))
    if "max_model_len" in given:
        value = given["max_model_len"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append("max_model_len %r is not a whole number of tokens >= 1, e.g. 8192 (leave it out for the "
                            "model's own context length)" % (value,))
    for key in VLLM_ONE_GPU_ARGS:
        if key in given and (given[key] != 1 or isinstance(given[key], bool)):
            problems.append("%s %r: each vLLM pod gets exactly one GPU (limits nvidia.com/gpu: 1), so only 1 works "
                            "(vLLM fails at start when it finds fewer GPUs); remove it or pick a model that fits one GPU"
                            % (key, given[key]))
    return problems


def _mm_count(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _mm_limit_problems(limits):
    """Problems of limit_mm_per_prompt, as vLLM's MultiModalConfig refuses them at start."""
    if not isinstance(limits, dict):
        return ["limit_mm_per_prompt %r is not a mapping modality -> count, e.g. {image: 1}" % (limits,)]
    problems = []
    for modality, value in limits.items():
        options = VLLM_MM_LIMIT_OPTIONS.get(modality, ("count",))
        if isinstance(value, dict):
            unknown = sorted(k for k in value if k not in options)
            if unknown:
                problems.append("limit_mm_per_prompt.%s: unknown option(s) %s; vLLM accepts %s"
                                % (modality, ", ".join(map(str, unknown)), ", ".join(options)))
            bad = sorted(k for k, v in value.items()
                         if k in options and (not _mm_count(v) or (k != "count" and v == 0)))
            if bad:
                problems.append("limit_mm_per_prompt.%s: %s must be whole numbers (count >= 0, the others >= 1)"
                                % (modality, ", ".join(bad)))
        elif not _mm_count(value):
            problems.append("limit_mm_per_prompt.%s %r is not a count >= 0 (how many %s items one prompt may carry)"
                            % (modality, value, modality))
    return problems


def _mm_image_limit(limits):
    """The image count limit_mm_per_prompt allows (vLLM's default for an unset modality is 999)."""
    value = limits.get("image", 999) if isinstance(limits, dict) else 999
    return value.get("count", 999) if isinstance(value, dict) else value


def _vllm_multimodal_args(vllm_args, vision):
    """Problems of the multimodal vllm_args (VLLM_MULTIMODAL_ARGS) of an entry with or without vision: true."""
    given = dict((k, v) for k, v in vllm_args.items() if k in VLLM_MULTIMODAL_ARGS and v is not None and v is not False)
    problems = []
    limits = given.get("limit_mm_per_prompt")
    if limits is not None:
        problems.extend(_mm_limit_problems(limits))
    if problems:
        return problems
    image_off = limits is not None and _mm_image_limit(limits) == 0
    if vision and image_off:
        problems.append("limit_mm_per_prompt allows 0 images but the entry says vision: true; allow at least one "
                        "(e.g. {image: 1}) or remove vision")
    if not vision:
        mm_only = sorted(k for k in given if k != "limit_mm_per_prompt" or not image_off)
        if mm_only:
            problems.append("%s: multimodal option(s) of vLLM, for a model that takes images; add vision: true to "
                            "the entry (the gateway then marks it supports_vision), or remove them"
                            % ", ".join(mm_only))
    for key in ("mm_processor_kwargs", "media_io_kwargs"):
        if key in given and not isinstance(given[key], dict):
            problems.append("%s %r is not a mapping (vLLM parses it as a JSON object), e.g. {}"
                            % (key, given[key]))
    if "mm_processor_cache_gb" in given and (not _number(given["mm_processor_cache_gb"])
                                             or given["mm_processor_cache_gb"] < 0):
        problems.append("mm_processor_cache_gb %r is not a number of GiB >= 0 (0 turns the cache off)"
                        % (given["mm_processor_cache_gb"],))
    if "mm_processor_cache_type" in given and given["mm_processor_cache_type"] not in VLLM_MM_CACHE_TYPES:
        problems.append("mm_processor_cache_type %r is not one of %s"
                        % (given["mm_processor_cache_type"], ", ".join(VLLM_MM_CACHE_TYPES)))
    return problems


def validate_routes(routes, models):
    """Return a list of errors for ``gpu_lab_routes`` against the (normalized) catalog."""
    if routes in (None, {}):
        return []
    if not isinstance(routes, dict):
        return ["gpu_lab_routes: must be a mapping alias -> ordered list of fallback aliases, got %s"
                % type(routes).__name__]
    by_name = dict((m["name"], m) for m in models if isinstance(m, dict) and "name" in m)
    names = sorted(by_name)
    errors = []
    for alias, targets in routes.items():
        where = "gpu_lab_routes['%s']" % alias
        if alias not in by_name and alias not in RESERVED_NAMES:
            errors.append("%s: '%s' is not an alias of gpu_lab_models%s; route keys are catalog names (or "
                          "'default' for every alias)" % (where, alias, did_you_mean(alias, names)))
        if not isinstance(targets, list) or not targets:
            errors.append("%s: must be a non-empty list of fallback aliases in order, e.g. [llama3.1-8b]" % where)
            continue
        seen = set()
        for pos, target in enumerate(targets):
            if target not in by_name:
                errors.append("%s[%d]: fallback '%s' is not an alias of gpu_lab_models%s; add it to the catalog "
                              "or remove it from the route" % (where, pos, target, did_you_mean(target, names)))
                continue
            if target == alias:
                errors.append("%s[%d]: '%s' falls back to itself; remove it" % (where, pos, target))
            if target in seen:
                errors.append("%s[%d]: '%s' is listed twice; keep the first" % (where, pos, target))
            seen.add(target)
            src = by_name.get(alias)
            if src is not None and src.get("mode", "chat") != by_name[target].get("mode", "chat"):
                errors.append("%s[%d]: '%s' is a %s model but '%s' is a %s model; a fallback must serve the same "
                              "kind of request" % (where, pos, alias, src.get("mode", "chat"), target,
                                                   by_name[target].get("mode", "chat")))
            elif src is not None and src.get("vision") and not by_name[target].get("vision"):
                errors.append("%s[%d]: '%s' takes images (vision: true) but its fallback '%s' does not; when '%s' "
                              "fails the gateway would hand the image to a model that cannot read it: fall back to "
                              "vision models only" % (where, pos, alias, target, alias))
    default = routes.get("default")
    if isinstance(default, list):
        for entry in models:
            if not entry.get("vision") or entry.get("name") in routes:
                continue
            text_only = [t for t in default if t in by_name and not by_name[t].get("vision")]
            if text_only:
                errors.append("gpu_lab_routes['default']: %s do(es) not take images, but '%s' (vision: true) has no "
                              "route of its own and would fall back to them; give '%s' its own route of vision "
                              "models" % (", ".join("'%s'" % t for t in text_only), entry["name"], entry["name"]))
    return errors


def validate_catalog(models, routes=None):
    """Validate the catalog (and routes, if given). Return the normalized list of entries.

    Normalized entries always carry ``mode`` and ``litellm`` (and ``vllm_args`` for vllm).
    Raises ``CatalogError`` listing every problem found.
    """
    if models is None:
        models = []
    if not isinstance(models, list):
        raise CatalogError(["gpu_lab_models: must be a list of model entries (see docs/catalog.md), got %s"
                            % type(models).__name__])
    errors = []
    normalized = []
    first_index = {}
    for index, entry in enumerate(models):
        entry_errors, norm = _check_entry(index, entry)
        errors.extend(entry_errors)
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in first_index:
                errors.append("%s: duplicate name: gpu_lab_models[%d] already uses '%s'; every alias must be unique "
                              "(it is also vLLM's served name and a gpu_swap target). To spread load over several "
                              "servers, pass config.model_list entries with allow_duplicate_aliases to "
                              "litellm_config" % (_where(index, entry), first_index[name], name))
            else:
                first_index[name] = index
        if norm is not None:
            normalized.append(norm)
    if not errors:
        errors.extend(validate_routes(routes, normalized))
    if errors:
        raise CatalogError(errors)
    return normalized


# -- derivations (used by the filters and the litellm_config module) --------------------------

def litellm_provider(entry):
    """The LiteLLM provider prefix for a catalog entry."""
    backend = entry["backend"]
    if backend == "vllm":
        return "hosted_vllm"
    if backend == "ollama":
        return "ollama" if entry.get("mode") == "embedding" else "ollama_chat"
    return backend


# The Service of the ollama component that serves an Ollama entry, by mode (docs/deploy.md "Embeddings on CPU"):
# embedding models run on the CPU Ollama, which no swap touches, so an embedding request never needs the GPU
# and RAG keeps working whoever owns it; chat models run on the GPU Ollama. The pulls (filter model_pulls) and the
# gateway's api_base (litellm_model_list) both read it here.
OLLAMA_SERVICES = {"chat": "ollama", "embedding": "ollama-embed"}


def ollama_service(entry):
    """``ollama`` (the GPU backend) or ``ollama-embed`` (CPU) for an Ollama catalog entry, else None."""
    if entry.get("backend") != "ollama":
        return None
    return OLLAMA_SERVICES[entry.get("mode") or "chat"]


def litellm_model(entry):
    """``litellm_params.model`` for an entry. vLLM is addressed by its served name == ``name``."""
    if entry["backend"] == "vllm":
        return "hosted_vllm/" + entry["name"]
    return litellm_provider(entry) + "/" + entry["source"]


def env_ref(name):
    return "os.environ/" + name


def litellm_model_list(models, namespace="ai-lab", vllm_api_base=None, ollama_api_base=None, validate=True,
                       ollama_embed_api_base=None):
    """Derive LiteLLM's ``model_list`` from the catalog.

    ``vllm_api_base`` / ``ollama_api_base`` / ``ollama_embed_api_base`` are the gateway's URLs of vLLM, the GPU
    Ollama (chat models) and the CPU Ollama (embedding models, ``ollama_service()``): the deploy playbook passes
    them from the component registry (resolved ports); without them, the registry's default ports in
    ``namespace`` (module_utils/components.py). A catalog entry's own ``api_base`` wins over all.
    """
    if validate:
        models = validate_catalog(models)
    bases = _components.gateway_api_bases(_components.resolve(namespace=namespace))
    given = {"vllm_api_base": vllm_api_base, "ollama_api_base": ollama_api_base,
             "ollama_embed_api_base": ollama_embed_api_base}
    bases.update((key, value) for key, value in given.items() if value)
    by_server = {"vllm": bases["vllm_api_base"], "ollama": bases["ollama_api_base"],
                 "ollama-embed": bases["ollama_embed_api_base"]}
    result = []
    for entry in models:
        params = {"model": litellm_model(entry)}
        base = entry.get("api_base")
        if not base and entry["backend"] in SELF_HOSTED_BACKENDS:
            base = by_server[ollama_service(entry) or entry["backend"]]
        if base:
            params["api_base"] = base
        if entry.get("api_key_env"):
            params["api_key"] = env_ref(entry["api_key_env"])
        for key in sorted(entry.get("litellm") or {}):
            params[key] = entry["litellm"][key]
        item = {"model_name": entry["name"], "litellm_params": params}
        info = {"mode": entry.get("mode", "chat")}
        cooldown = entry.get("cooldown_time")
        if cooldown is None and entry["backend"] in SELF_HOSTED_BACKENDS:
            cooldown = SELF_HOSTED_COOLDOWN_TIME
        if cooldown is not None:
            info["cooldown_time"] = cooldown
        if entry.get("vision"):
            info["supports_vision"] = True
        item["model_info"] = info
        result.append(item)
    return result


def litellm_fallbacks(routes, models=None):
    """Derive ``router_settings.fallbacks`` (list of one-key mappings, in route order).

    The reserved key ``default`` is NOT part of it: see ``litellm_default_fallbacks``.
    """
    if models is not None:
        validate_catalog(models, routes)
    return [{alias: list(targets)} for alias, targets in (routes or {}).items() if alias not in RESERVED_NAMES]


def litellm_default_fallbacks(routes):
    """``router_settings.default_fallbacks`` from ``gpu_lab_routes.default`` (or None)."""
    targets = (routes or {}).get("default")
    return list(targets) if targets else None


def env_names(models, validate=True):
    """Sorted env var names the catalog's models need (what litellm-env must carry besides
    LITELLM_MASTER_KEY / LITELLM_SALT_KEY)."""
    if validate:
        models = validate_catalog(models)
    return sorted(set(m["api_key_env"] for m in models if m.get("api_key_env")))


def env_refs(models, validate=True):
    """Mapping env var name -> ``os.environ/NAME`` reference, for every name the catalog needs."""
    return dict((n, env_ref(n)) for n in env_names(models, validate))


def find_model(models, name):
    for entry in models:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    names = [m.get("name") for m in models if isinstance(m, dict)]
    raise CatalogError(["'%s' is not an alias of gpu_lab_models%s; known: %s"
                        % (name, did_you_mean(name, [n for n in names if isinstance(n, str)]),
                           ", ".join(str(n) for n in names))])


def served_name(models, name):
    """vLLM's ``--served-model-name`` for catalog alias ``name``: the alias itself, by design."""
    entry = find_model(validate_catalog(models), name)
    if entry["backend"] != "vllm":
        raise CatalogError(["gpu_lab_models: '%s' has backend '%s'; only vllm models have a served name"
                            % (name, entry["backend"])])
    return entry["name"]


def _arg_value(value):
    if isinstance(value, (dict, list)) and not (isinstance(value, list) and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value)):
        return [json.dumps(value, sort_keys=True, separators=(",", ":"))]
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def vllm_args(models, name):
    """vLLM server arguments for catalog alias ``name`` (a list of strings, for a container's args).

    ``--model <source> --revision <sha> --served-model-name <name>`` first, then every
    ``vllm_args`` key as ``--kebab-case`` in sorted order. ``true`` gives a bare flag, ``false``
    and ``null`` omit it, a list of scalars gives several values, a mapping/nested list is JSON.
    """
    entry = find_model(validate_catalog(models), name)
    if entry["backend"] != "vllm":
        raise CatalogError(["gpu_lab_models: '%s' has backend '%s'; vllm_args only exist for vllm models"
                            % (name, entry["backend"])])
    args = ["--model", entry["source"], "--revision", entry["revision"], "--served-model-name", entry["name"]]
    for key in sorted(entry.get("vllm_args") or {}):
        value = entry["vllm_args"][key]
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args.append(flag)
            args.extend(_arg_value(value))
    return args


def models_by_backend(models, backend):
    """Catalog entries of one backend (``vllm`` → gpu_swap targets / HF downloads, ``ollama`` → pulls)."""
    return [m for m in validate_catalog(models) if m["backend"] == backend]
