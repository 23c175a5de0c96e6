# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the gpu_swap role. Each is documented in the YAML file of the same name beside this plugin;
the logic lives in module_utils/gpu_swap.py, next to the requests the swap makes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as _gpu_swap
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


def gpu_swap_rbac(namespace, account="gpu-swap", ollama_deployment="ollama", vllm_deployment="vllm",
                  gateway_secret="litellm-env"):
    """The least-privilege RBAC objects of an account that runs the GPU swap."""
    return _gpu_swap.rbac_objects(namespace, account, {"ollama": ollama_deployment, "vllm": vllm_deployment},
                                  gateway_secret)


def gpu_swap_owned_fields(namespace):
    """The GPU backends' fields the swap owns, as lab_apply's owned_fields."""
    return _gpu_swap.swap_owned_fields(namespace)


class FilterModule(object):
    """gpu_swap filters."""

    def filters(self):
        return filter_map((gpu_swap_rbac, gpu_swap_owned_fields), (_gpu_swap.SwapError, ValueError))
