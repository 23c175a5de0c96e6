# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LiteLLM proxy config: assemble (structured config + catalog-derived parts), validate, render.

LiteLLM's own config loading is forgiving in dangerous ways (misspelled keys ignored, a model
without a provider prefix dropped, unset ``os.environ/`` variables noticed only per request,
duplicate names silently load-balanced). ``build()`` catches all of that before deploy and
returns the canonical YAML and its checksum; ``run_module()`` is the litellm_config module.

The lists of known keys were taken from litellm[proxy]==1.106.2 (the pinned version).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import os
import re
import tempfile
import traceback

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog

# -- what LiteLLM 1.106.2 knows --------------------------------------------------------------------

TOP_LEVEL_KEYS = (
    "model_list", "litellm_settings", "router_settings", "general_settings", "environment_variables",
    "credential_list", "callback_settings", "guardrails", "prompts", "mcp_servers", "mcp_tools", "agents",
    "agent_list", "vector_store_registry", "search_tools", "assistant_settings", "files_settings",
    "finetune_settings", "default_vertex_config", "sandbox_tools", "include",
)

ROUTER_SETTINGS_KEYS = (
    "alerting_config", "allowed_fails", "allowed_fails_policy", "assistants_config", "auto_router_capability_limit",
    "background_health_check_model_groups", "cache_kwargs", "cache_responses", "caching_groups", "client_ttl",
    "content_policy_fallbacks", "context_window_fallbacks", "cooldown_time", "debug_level", "default_fallbacks",
    "default_litellm_params", "default_max_parallel_requests", "default_priority", "deployment_affinity_ttl_seconds",
    "disable_cooldowns", "enable_health_check_routing", "enable_pre_call_checks", "enable_tag_filtering",
    "enable_weighted_failover", "fallback_access_check", "fallback_budget_check", "fallbacks", "guardrail_list",
    "health_check_ignore_transient_errors", "health_check_staleness_threshold", "ignore_invalid_deployments",
    "max_fallbacks", "model_group_affinity_config", "model_group_alias", "model_group_retry_policy",
    "num_retries", "optional_pre_call_checks", "polling_interval", "provider_budget_config", "redis_db",
    "redis_host", "redis_password", "redis_port", "redis_url", "retry_after", "retry_policy",
    "router_general_settings", "routing_groups", "routing_strategy", "routing_strategy_args", "search_tools",
    "set_verbose", "stream_timeout", "tag_filtering_match_any", "tag_routing_prefix", "timeout", "weights",
)

GENERAL_SETTINGS_KEYS = (
    "admin_only_routes", "admission_queue_timeout_seconds", "alert_to_webhook_url", "alert_type_config",
    "alert_types", "alerting", "alerting_args", "alerting_threshold", "allow_client_side_credentials",
    "allow_public_health_readiness_details", "allow_requests_on_db_unavailable", "allow_user_auth", "allowed_ips",
    "allowed_routes", "always_include_stream_usage", "apply_user_budget_to_team_keys", "background_health_checks",
    "background_health_check_model_groups", "cancel_on_disconnect", "completion_model", "custom_auth",
    "custom_auth_run_common_checks", "custom_key_generate", "custom_sso", "database_args", "database_connect_timeout",
    "database_connection_pool_limit", "database_connection_pool_timeout", "database_connection_timeout",
    "database_type", "database_url", "default_team_disabled", "disable_master_key_return",
    "disable_model_info_refresh", "disable_prisma_schema_update", "disable_reset_budget",
    "disable_retry_on_max_parallel_request_limit_error", "disable_spend_logs", "disable_spend_updates",
    "disable_error_logs", "enable_jwt_auth", "enforce_rbac", "enforce_user_param", "enforced_params",
    "expose_fallback_errors_to_caller", "forward_client_headers_to_llm_api", "global_max_parallel_requests",
    "health_check_concurrency", "health_check_details", "health_check_interval", "infer_model_from_keys",
    "key_management_settings", "key_management_system", "litellm_jwtauth", "litellm_key_header_name",
    "master_key", "max_file_size_mb", "max_in_flight_requests_per_worker", "max_parallel_requests",
    "max_queued_requests_per_worker", "max_request_size_mb", "max_response_size_mb",
    "maximum_spend_logs_retention_period", "maximum_spend_logs_retention_interval", "model_list_healthy_only",
    "otel", "pass_through_endpoints", "pass_through_request_timeout", "proxy_batch_write_at", "public_routes",
    "role_permissions", "store_model_in_db", "store_prompts_in_spend_logs", "supported_db_objects", "ui_access_mode",
    "use_redis_transaction_buffer", "use_shared_health_check", "use_x_forwarded_for", "user_api_key_cache_ttl",
    "user_header_name",
)

# Curated: every public attribute of the litellm module is accepted by LiteLLM here, most are
# internal. Anything else can be let through with allow_unknown_keys: [litellm_settings.<key>].
LITELLM_SETTINGS_KEYS = (
    "allowed_fails", "budget_duration", "cache", "cache_params", "callbacks", "content_policy_fallbacks",
    "context_window_fallbacks", "default_fallbacks", "default_internal_user_params", "default_key_generate_params",
    "enable_end_user_cost_tracking_prometheus_only", "enable_post_custom_auth_checks",
    "default_team_settings", "disable_end_user_cost_tracking", "disable_streaming_logging",
    "disable_token_counter", "drop_params", "enable_preview_features", "failure_callback", "fallbacks",
    "force_ipv4", "json_logs", "key_generation_settings", "log_raw_request_response", "max_budget",
    "max_end_user_budget", "max_fallbacks", "max_internal_user_budget", "modify_params", "num_retries",
    "prometheus_initialize_budget_metrics", "prometheus_latency_buckets", "prometheus_metrics_config",
    "redact_messages_in_exceptions", "redact_user_api_key_info", "request_timeout",
    "require_auth_for_metrics_endpoint", "return_response_headers", "service_callback", "set_verbose",
    "ssl_verify", "success_callback", "suppress_debug_info", "turn_off_message_logging", "upperbound_key_generate_params",
    "use_aiohttp_transport", "disable_aiohttp_transport", "custom_prometheus_metadata_labels",
    "prometheus_emit_stream_label", "store_audit_logs", "prometheus_exclude_metrics", "prometheus_exclude_labels",
)

MODEL_ENTRY_KEYS = ("model_name", "litellm_params", "model_info")

SECTIONS = {
    "router_settings": ROUTER_SETTINGS_KEYS,
    "general_settings": GENERAL_SETTINGS_KEYS,
    "litellm_settings": LITELLM_SETTINGS_KEYS,
}

ROUTING_STRATEGIES = (
    "simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2", "usage-based-routing",
    "cost-based-routing", "provider-budget-routing", "lar1",
)

MODEL_MODES = (
    "chat", "completion", "embedding", "image_generation", "image_edit", "audio_transcription", "audio_speech",
    "rerank", "moderation", "responses", "batch", "realtime", "video_generation", "ocr", "search",
)

# LlmProviders of litellm 1.106.2 (minus `vllm`, handled with its own message below).
PROVIDERS = frozenset("""
a2a a2a_agent ai21 ai21_chat aiml aiohttp_openai amazon_nova anthropic anthropic_text apertis assemblyai auto_router
aws_polly aws_textract azure azure_ai azure_speech azure_text baseten bedrock bedrock_mantle black_forest_labs bytez
cerebras charity_engine chatgpt chutes clarifai cloudflare codestral cognition cohere cohere_chat cometapi
compactifai cortecs cursor custom custom_openai darkbloom dashscope databricks datarobot deepgram deepinfra deepseek
docker_model_runner dotprompt edenai elevenlabs empower fal_ai featherless_ai fireworks_ai friendliai galadriel gdc
gemini gigachat github github_copilot gradient_ai groq helicone heroku hosted_vllm huggingface humanloop hyperbolic
inception infinity jina_ai lambda_ai langflow langfuse langgraph lemonade libertai litellm_agent litellm_proxy llamafile
lm_studio manus maritalk meta meta_llama milvus minimax mistral modelscope mongodb moonshot morph nadir nano-gpt nebius
neosantara nlp_cloud novita nscale nvidia_nim nvidia_riva oci ollama ollama_chat oobabooga openai openai_like
openrouter ovhcloud parasail perplexity petals pg_vector pinstripes poe predibase prism publicai qwen_ai_platform
qwencloud ragflow recraft reducto reka replicate runwayml s3_vectors sagemaker sagemaker_chat sagemaker_nova sail
sambanova sap scaleway scx-ai snowflake soniox stability strands_decider synthetic tencent tensormesh
text-completion-codestral text-completion-inception text-completion-openai together_ai topaz transcribe triton
typesafe v0 valkey vercel_ai_gateway vertex_ai vertex_ai_beta volcengine voyage wandb watsonx watsonx_text xai
xiaomi_mimo xinference zai
""".split())

# Providers that are servers you run yourself: without api_base LiteLLM calls localhost
# (or a public default), which inside the LiteLLM pod is nobody.
SELF_HOSTED_PROVIDERS = frozenset((
    "hosted_vllm", "ollama", "ollama_chat", "lm_studio", "llamafile", "xinference", "triton", "openai_like",
    "custom_openai", "oobabooga", "lemonade", "docker_model_runner", "infinity", "petals",
))
OLLAMA_PROVIDERS = ("ollama", "ollama_chat")

FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")

SECRET_KEY_RE = re.compile(
    r"(^|_)(api_key|apikey|password|passwd|secret|secret_key|token|auth_token|master_key|salt_key|"
    r"secret_access_key|private_key|authorization|license)$", re.IGNORECASE)
SECRET_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)  # scheme://user:pass@
URL_KEYS = ("database_url", "redis_url")
ENV_PREFIX = "os.environ/"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_MASTER_KEY = ENV_PREFIX + "LITELLM_MASTER_KEY"


class ConfigError(ValueError):
    """An unusable LiteLLM config. ``errors`` lists every problem (one sentence each)."""

    def __init__(self, errors):
        self.errors = list(errors)
        lines = "\n".join("  - " + e for e in self.errors)
        super(ConfigError, self).__init__("LiteLLM config rejected, %d problem%s:\n%s"
                                          % (len(self.errors), "" if len(self.errors) == 1 else "s", lines))


def _entry_where(index, entry):
    name = entry.get("model_name") if isinstance(entry, dict) else None
    return "model_list[%d]%s" % (index, " (model_name '%s')" % name if isinstance(name, str) else "")


def _walk(node, path):
    """Yield (path, key, value) for every mapping item in a nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = "%s.%s" % (path, key) if path else str(key)
            yield sub, key, value
            yield from _walk(value, sub)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, "%s[%d]" % (path, index))


def env_references(config):
    """Sorted unique env var names referenced as ``os.environ/NAME`` anywhere in the config."""
    names = set()
    for _path, _key, value in _walk(config, ""):
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            names.add(value[len(ENV_PREFIX):])
    return sorted(names)


def _human_path(path, config):
    """model_list[2].litellm_params.api_key -> model_list[2] (model_name 'x').litellm_params.api_key"""
    match = re.match(r"^model_list\[(\d+)\](.*)$", path)
    if match and isinstance(config.get("model_list"), list):
        index = int(match.group(1))
        if index < len(config["model_list"]):
            return _entry_where(index, config["model_list"][index]) + match.group(2)
    return path


# -- validation rules -------------------------------------------------------------------------------

def _check_keys(config, allow_unknown, errors):
    for key in config:
        if key not in TOP_LEVEL_KEYS and key not in allow_unknown:
            errors.append("top-level key '%s' is unknown to LiteLLM, which would silently ignore it%s; known: %s"
                          % (key, _catalog.did_you_mean(key, TOP_LEVEL_KEYS), ", ".join(TOP_LEVEL_KEYS)))
    for section, known in SECTIONS.items():
        value = config.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            errors.append("%s: must be a mapping, got %s" % (section, type(value).__name__))
            continue
        for key in value:
            dotted = "%s.%s" % (section, key)
            if key not in known and dotted not in allow_unknown:
                errors.append("%s: key '%s' is unknown to LiteLLM, which would silently ignore it%s; fix the "
                              "spelling, or if it is a real setting of a newer LiteLLM, add '%s' to "
                              "allow_unknown_keys" % (section, key, _catalog.did_you_mean(key, known), dotted))


def _check_model(index, entry, errors):
    where = _entry_where(index, entry)
    if not isinstance(entry, dict):
        errors.append("%s: must be a mapping with model_name and litellm_params" % where)
        return
    for key in entry:
        if key not in MODEL_ENTRY_KEYS:
            errors.append("%s: key '%s' is unknown%s; an entry has model_name, litellm_params and model_info"
                          % (where, key, _catalog.did_you_mean(key, MODEL_ENTRY_KEYS)))
    name = entry.get("model_name")
    if not isinstance(name, str) or not name:
        errors.append("%s: model_name (the alias clients send) is required" % where)
    params = entry.get("litellm_params")
    if not isinstance(params, dict) or not params.get("model"):
        errors.append("%s: litellm_params.model is required (e.g. hosted_vllm/<served-name>); LiteLLM refuses to "
                      "start without it" % where)
        return
    model = params["model"]
    if not isinstance(model, str):
        errors.append("%s: litellm_params.model must be a string" % where)
        return
    provider = model.split("/", 1)[0] if "/" in model else None
    if provider == "vllm":
        errors.append("%s: litellm_params.model '%s' uses 'vllm/', LiteLLM's in-process vLLM library (not installed "
                      "in the proxy); to call the vLLM server write 'hosted_vllm/%s' with api_base "
                      "http://vllm.<namespace>.svc.cluster.local:8000/v1" % (where, model, model.split("/", 1)[1]))
        return
    if provider not in PROVIDERS:
        if provider is None:
            errors.append("%s: litellm_params.model '%s' has no provider prefix; LiteLLM drops such a model at start "
                          "(it never shows in /v1/models). Write '<provider>/%s', e.g. 'hosted_vllm/%s', "
                          "'ollama_chat/%s' or 'openai/%s'" % (where, model, model, model, model, model))
        else:
            errors.append("%s: litellm_params.model '%s': '%s' is not a LiteLLM provider%s; LiteLLM drops such a "
                          "model at start" % (where, model, provider, _catalog.did_you_mean(provider, PROVIDERS)))
        return
    base = params.get("api_base")
    literal_base = isinstance(base, str) and not base.startswith(ENV_PREFIX)
    if provider in SELF_HOSTED_PROVIDERS and not base:
        errors.append("%s: provider '%s' is a server you run, but litellm_params.api_base is missing (LiteLLM "
                      "would call localhost inside its own pod); set api_base, e.g. %s" % (
                          where, provider, "http://ollama.<namespace>.svc.cluster.local:11434"
                          if provider in OLLAMA_PROVIDERS else "http://vllm.<namespace>.svc.cluster.local:8000/v1"))
    elif literal_base and provider in OLLAMA_PROVIDERS and base.rstrip("/").endswith("/v1"):
        errors.append("%s: api_base '%s' ends in /v1, but LiteLLM's %s provider calls Ollama's native API "
                      "(<base>/api/chat) and would get 404; use '%s'" % (where, base, provider, base.rstrip("/")[:-3]))
    elif literal_base and provider == "hosted_vllm" and not base.rstrip("/").endswith("/v1"):
        errors.append("%s: api_base '%s' lacks /v1; vLLM serves the OpenAI API under /v1 (LiteLLM would get 404); "
                      "use '%s'" % (where, base, base.rstrip("/") + "/v1"))
    info = entry.get("model_info")
    if info is not None and not isinstance(info, dict):
        errors.append("%s: model_info must be a mapping" % where)
        info = {}
    mode = (info or {}).get("mode")
    if mode is not None and mode not in MODEL_MODES:
        errors.append("%s: model_info.mode '%s' is not a LiteLLM mode%s"
                      % (where, mode, _catalog.did_you_mean(mode, MODEL_MODES)))
    vision = (info or {}).get("supports_vision")
    if vision is not None and not isinstance(vision, bool):
        errors.append("%s: model_info.supports_vision %r is not true or false (whether the model takes image input)"
                      % (where, vision))
    elif vision and mode == "embedding":
        errors.append("%s: model_info.supports_vision is true on an embedding model (mode: embedding), which takes "
                      "no image input; remove supports_vision" % where)
    if mode is None and _catalog.looks_like_embedding(name, model.split("/", 1)[1]):
        errors.append("%s: '%s' looks like an embedding model but model_info.mode is not set; add model_info: "
                      "{mode: embedding} (LiteLLM health-checks it as a chat model and reports it unhealthy), or "
                      "mode: chat if it really is one" % (where, model))


def _check_duplicates(models, allow_duplicates, errors):
    first = {}
    for index, entry in enumerate(models):
        name = entry.get("model_name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in first and not allow_duplicates:
            errors.append("%s: duplicate of model_list[%d]: LiteLLM silently load-balances entries sharing a "
                          "model_name; rename one, or set allow_duplicate_aliases: true if load-balancing is "
                          "intended" % (_entry_where(index, entry), first[name]))
        first.setdefault(name, index)


def _check_router(config, names, errors):
    router = config.get("router_settings") or {}
    litellm_settings = config.get("litellm_settings") or {}
    if not isinstance(router, dict) or not isinstance(litellm_settings, dict):
        return
    strategy = router.get("routing_strategy")
    if strategy is not None and strategy not in ROUTING_STRATEGIES:
        errors.append("router_settings.routing_strategy '%s' is not valid%s (LiteLLM refuses to start); use one of: "
                      "%s" % (strategy, _catalog.did_you_mean(strategy, ROUTING_STRATEGIES),
                              ", ".join(ROUTING_STRATEGIES)))
    aliases = router.get("model_group_alias") or {}
    known = set(names) | (set(aliases) if isinstance(aliases, dict) else set())
    sorted_names = sorted(known)

    def unknown(where, alias):
        errors.append("%s: '%s' is not a model_name of model_list%s; a fallback to an unknown alias fails only "
                      "when the primary is already down. Fix the name or add the model"
                      % (where, alias, _catalog.did_you_mean(alias, sorted_names)))

    for section_name, section in (("router_settings", router), ("litellm_settings", litellm_settings)):
        for key in FALLBACK_KEYS:
            value = section.get(key)
            if value is None:
                continue
            where = "%s.%s" % (section_name, key)
            if not isinstance(value, list):
                errors.append("%s: must be a list of one-key mappings, e.g. [{qwen2.5-7b: [llama3.1-8b]}]" % where)
                continue
            for pos, item in enumerate(value):
                if not isinstance(item, dict) or len(item) != 1:
                    errors.append("%s[%d]: must be a one-key mapping {alias: [fallback, ...]}" % (where, pos))
                    continue
                for alias, targets in item.items():
                    if alias not in known and alias != "*":
                        unknown("%s[%d] key" % (where, pos), alias)
                    if not isinstance(targets, list):
                        errors.append("%s[%d]: fallbacks of '%s' must be a list of aliases" % (where, pos, alias))
                        continue
                    for target in targets:
                        if target not in known:
                            unknown("%s[%d]['%s']" % (where, pos, alias), target)
        default = section.get("default_fallbacks")
        if default is not None:
            for target in default if isinstance(default, list) else [default]:
                if target not in known:
                    unknown("%s.default_fallbacks" % section_name, target)


def _check_secrets(config, allow_literal, errors):
    if allow_literal:
        return
    for path, key, value in _walk(config, ""):
        if not isinstance(value, str) or not value or value.startswith(ENV_PREFIX):
            continue
        key = str(key)
        if SECRET_KEY_RE.search(key) or (key in URL_KEYS and SECRET_URL_RE.match(value)):
            name = key.upper() if ENV_NAME_RE.match(key) else "A_NAME"
            errors.append("%s: a literal secret; the rendered config is stored in a ConfigMap and in git. Put the "
                          "value in .env (the secrets playbook copies it into the litellm-env Secret) and write "
                          "'os.environ/%s', or set allow_literal_secrets: true for a throw-away lab"
                          % (_human_path(path, config), name))


def _check_master_key(config, errors):
    general = config.get("general_settings") or {}
    key = general.get("master_key") if isinstance(general, dict) else None
    if not key:
        errors.append("general_settings.master_key is missing: LiteLLM refuses to start without a master key "
                      "(unless LITELLM_MASTER_KEY happens to be in its environment), and without one every request "
                      "would be unauthenticated; add master_key: %s (generated into the litellm-env Secret by the "
                      "secrets playbook)" % DEFAULT_MASTER_KEY)


def _check_env(config, provided_env, errors):
    for path, _key, value in _walk(config, ""):
        if not (isinstance(value, str) and value.startswith(ENV_PREFIX)):
            continue
        name = value[len(ENV_PREFIX):]
        where = _human_path(path, config)
        if not ENV_NAME_RE.match(name):
            errors.append("%s: '%s' is not a valid os.environ/ reference; write os.environ/<VARIABLE_NAME>"
                          % (where, value))
        elif provided_env is not None and name not in provided_env:
            errors.append("%s: references %s, which the litellm-env Secret does not provide (it has: %s); LiteLLM "
                          "would answer 500 on every request to this model. Add %s to .env and re-run the secrets "
                          "playbook, or fix the name%s" % (
                              where, name, ", ".join(sorted(provided_env)) or "nothing", name,
                              _catalog.did_you_mean(name, sorted(provided_env))))


def validate(config, provided_env=None, allow_duplicate_aliases=False, allow_literal_secrets=False,
             allow_unknown_keys=None):
    """Return the list of problems of a LiteLLM config (empty when it is fine)."""
    if not isinstance(config, dict):
        return ["the config must be a mapping (model_list, router_settings, general_settings, ...)"]
    errors = []
    allow_unknown = set(allow_unknown_keys or [])
    _check_keys(config, allow_unknown, errors)
    models = config.get("model_list")
    if models is None or models == []:
        errors.append("model_list is empty: the gateway would serve no model; give a catalog (models) or "
                      "config.model_list")
        models = []
    elif not isinstance(models, list):
        errors.append("model_list must be a list of entries")
        models = []
    for index, entry in enumerate(models):
        _check_model(index, entry, errors)
    _check_duplicates(models, allow_duplicate_aliases, errors)
    names = [e.get("model_name") for e in models if isinstance(e, dict) and isinstance(e.get("model_name"), str)]
    _check_router(config, names, errors)
    _check_secrets(config, allow_literal_secrets, errors)
    _check_master_key(config, errors)
    _check_env(config, provided_env, errors)
    return errors


# -- assembly and rendering -------------------------------------------------------------------------

def assemble(config=None, models=None, routes=None, namespace="ai-lab", vllm_api_base=None, ollama_api_base=None,
             ollama_embed_api_base=None):
    """Merge a structured config with the parts derived from the catalog.

    Catalog models are appended to ``config.model_list``; routes are appended to
    ``router_settings.fallbacks`` (``routes.default`` becomes ``router_settings.default_fallbacks``).
    Catalog errors raise ``ConfigError`` (with the catalog's messages).
    """
    result = copy.deepcopy(config) if config else {}
    if models is not None or routes:
        try:
            normalized = _catalog.validate_catalog(models or [], routes)
        except _catalog.CatalogError as exc:
            raise ConfigError(exc.errors)
        derived = _catalog.litellm_model_list(normalized, namespace=namespace, vllm_api_base=vllm_api_base,
                                              ollama_api_base=ollama_api_base, validate=False,
                                              ollama_embed_api_base=ollama_embed_api_base)
        if derived:
            existing = result.get("model_list") or []
            result["model_list"] = list(existing) + derived
        fallbacks = _catalog.litellm_fallbacks(routes)
        default = _catalog.litellm_default_fallbacks(routes)
        if fallbacks or default:
            router = result.setdefault("router_settings", {}) or {}
            result["router_settings"] = router
            if isinstance(router, dict):
                if fallbacks:
                    router["fallbacks"] = list(router.get("fallbacks") or []) + fallbacks
                if default and "default_fallbacks" not in router:
                    router["default_fallbacks"] = default
    return result


def render(config):
    """Canonical YAML of a config: sorted keys, block style. Same input -> same bytes."""
    header = "# Generated by ailab.gpu_lab.litellm_config -- do not edit; change the inventory instead.\n"
    return header + yaml.safe_dump(config, default_flow_style=False, sort_keys=True, allow_unicode=True, width=1000)


def checksum(content):
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def build(config=None, models=None, routes=None, namespace="ai-lab", vllm_api_base=None, ollama_api_base=None,
          provided_env=None, allow_duplicate_aliases=False, allow_literal_secrets=False, allow_unknown_keys=None,
          ollama_embed_api_base=None):
    """Assemble, validate and render. Return dict(config, content, checksum, env, models).

    Raises ``ConfigError`` listing every problem.
    """
    merged = assemble(config, models, routes, namespace, vllm_api_base, ollama_api_base, ollama_embed_api_base)
    errors = validate(merged, provided_env=provided_env, allow_duplicate_aliases=allow_duplicate_aliases,
                      allow_literal_secrets=allow_literal_secrets, allow_unknown_keys=allow_unknown_keys)
    if errors:
        raise ConfigError(errors)
    content = render(merged)
    names = []
    for entry in merged.get("model_list") or []:
        if entry["model_name"] not in names:
            names.append(entry["model_name"])
    return {"config": merged, "content": content, "checksum": checksum(content), "env": env_references(merged),
            "models": names}


# -- the module ----------------------------------------------------------------------------------------

ARGUMENT_SPEC = dict(
    config=dict(type="dict"),
    models=dict(type="list", elements="dict"),
    routes=dict(type="dict"),
    namespace=dict(type="str", default="ai-lab"),
    vllm_api_base=dict(type="str"),
    ollama_api_base=dict(type="str"),
    ollama_embed_api_base=dict(type="str"),
    provided_env=dict(type="list", elements="str"),
    allow_duplicate_aliases=dict(type="bool", default=False),
    allow_literal_secrets=dict(type="bool", default=False),
    allow_unknown_keys=dict(type="list", elements="str", default=[], no_log=False),
    dest=dict(type="path"),
)


def _read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except IOError:
        return None


def _write_atomic(module, dest, content):
    directory = os.path.dirname(dest) or "."
    if not os.path.isdir(directory):
        module.fail_json(msg="dest %s: directory %s does not exist; create it first (ansible.builtin.file "
                             "state=directory)" % (dest, directory))
    fd, tmp = tempfile.mkstemp(prefix=".litellm-config-", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    module.atomic_move(tmp, dest)


def run_module(module):
    """Body of the litellm_config module (module is an AnsibleModule built with ARGUMENT_SPEC)."""
    if not HAS_YAML:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    p = module.params
    if not p["config"] and p["models"] is None:
        module.fail_json(msg="nothing to render: give models (the gpu_lab_models catalog) and/or config "
                             "(a structured LiteLLM config)")
    try:
        result = build(config=p["config"], models=p["models"], routes=p["routes"], namespace=p["namespace"],
                       vllm_api_base=p["vllm_api_base"], ollama_api_base=p["ollama_api_base"],
                       ollama_embed_api_base=p["ollama_embed_api_base"],
                       provided_env=p["provided_env"], allow_duplicate_aliases=p["allow_duplicate_aliases"],
                       allow_literal_secrets=p["allow_literal_secrets"], allow_unknown_keys=p["allow_unknown_keys"])
    except ConfigError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)

    changed = False
    diff = None
    dest = p["dest"]
    if dest:
        before = _read(dest)
        changed = before != result["content"]
        diff = {"before": before or "", "after": result["content"], "before_header": dest, "after_header": dest}
        if changed and not module.check_mode:
            _write_atomic(module, dest, result["content"])
        file_args = module.load_file_common_arguments(p)
        if os.path.exists(dest):
            changed = module.set_fs_attributes_if_different(file_args, changed)
    out = dict(changed=changed, config=result["config"], content=result["content"], checksum=result["checksum"],
               env=result["env"], models=result["models"], dest=dest)
    if module._diff and diff is not None:
        out["diff"] = diff
    module.exit_json(**out)
