# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the gpu_demand role. Each is documented in the YAML file of the same name beside this plugin; the
logic lives in module_utils/gpu_demand.py, which the in-cluster service runs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_demand as _gpu_demand
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


def gpu_demand_config(models, routes=None, namespace="ai-lab", backends=None, swap=None, policy=None, host=None):
    """The on-demand swap service's config.json, from the catalog and the role's variables."""
    plain = json.loads(json.dumps({"models": models, "routes": routes, "backends": backends, "swap": swap,
                                   "policy": policy, "host": host}))   # 2.19's tagged types -> plain JSON
    return _gpu_demand.service_config(plain["models"], plain["routes"], namespace, plain["backends"],
                                      swap=plain["swap"], policy=plain["policy"], host=plain["host"])


def gpu_demand_gateway_settings(settings, enabled=True):
    """LiteLLM's litellm_settings with the gpu_demand hook's callback added when ``enabled``."""
    plain = json.loads(json.dumps(settings))
    return _gpu_demand.gateway_litellm_settings(plain) if enabled else plain


class FilterModule(object):
    """gpu_demand filters."""

    def filters(self):
        return filter_map((gpu_demand_config, gpu_demand_gateway_settings), (_gpu_demand.DemandError, _catalog.CatalogError, ValueError))
