# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ailab.gpu_lab.litellm_config_render (documented in litellm_config_render.yml beside this plugin): the
litellm_config module's result without ``dest``, computed in the controller's process (plugin_utils/litellm_render)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ailab.gpu_lab.plugins.plugin_utils import litellm_render as _render
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


def litellm_config_render(args):
    """The LiteLLM config rendered and validated from the litellm_config module's arguments (no dest)."""
    return _render.render(args)


class FilterModule(object):
    """The LiteLLM config as a filter."""

    def filters(self):
        return filter_map([litellm_config_render], _render.RenderError)
