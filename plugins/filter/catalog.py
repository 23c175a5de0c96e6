# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters deriving configuration from the model catalog (gpu_lab_models / gpu_lab_routes).

Each filter is documented in the YAML file of the same name beside this plugin, and the
catalog schema in docs/catalog.md. The logic lives in module_utils/catalog.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


def catalog_validate(models, routes=None):
    """Validated, normalized catalog (every entry has mode and litellm; vllm entries vllm_args)."""
    return _catalog.validate_catalog(models, routes)


def catalog_litellm_model_list(models, namespace="ai-lab", vllm_api_base=None, ollama_api_base=None,
                               ollama_embed_api_base=None):
    """LiteLLM model_list derived from the catalog."""
    return _catalog.litellm_model_list(models, namespace=namespace, vllm_api_base=vllm_api_base,
                                       ollama_api_base=ollama_api_base, ollama_embed_api_base=ollama_embed_api_base)


def catalog_litellm_fallbacks(routes, models=None):
    """router_settings.fallbacks derived from gpu_lab_routes (validated against models when given)."""
    return _catalog.litellm_fallbacks(routes, models)


def catalog_env_names(models):
    """Sorted env var names the catalog's hosted models need."""
    return _catalog.env_names(models)


def catalog_env_refs(models):
    """Mapping env var name -> os.environ/NAME for every key the catalog needs."""
    return _catalog.env_refs(models)


def catalog_served_name(models, name):
    """vLLM --served-model-name of a catalog alias (the alias itself)."""
    return _catalog.served_name(models, name)


def catalog_vllm_args(models, name):
    """vLLM server arguments (list of strings) for a catalog alias."""
    return _catalog.vllm_args(models, name)


def catalog_backend_models(models, backend):
    """Normalized catalog entries of one backend (vllm, ollama, or a hosted provider)."""
    return _catalog.models_by_backend(models, backend)


class FilterModule(object):
    """Model catalog filters."""

    def filters(self):
        return filter_map((
            catalog_validate, catalog_litellm_model_list, catalog_litellm_fallbacks, catalog_env_names,
            catalog_env_refs, catalog_served_name, catalog_vllm_args, catalog_backend_models), _catalog.CatalogError)
