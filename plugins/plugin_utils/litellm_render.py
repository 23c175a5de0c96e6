# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LiteLLM config computed in the controller's process, with the litellm_config module's own argument spec and
code (module_utils/litellm_config.build): what the module's action plugin runs without ``dest`` and what the filter
ailab.gpu_lab.litellm_config_render returns (the litellm role's task: no module or action start, docs/deploy.md
"Benchmark")."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as _litellm


class RenderError(Exception):
    """An argument or config problem; ``errors`` lists each one (the module's ``errors`` return)."""

    def __init__(self, msg, errors=None):
        super(RenderError, self).__init__(msg)
        self.errors = errors or [msg]


def plain(args):
    """Plain JSON types: ansible-core 2.19 hands tagged str/dict subclasses, which the YAML dump of build() refuses."""
    return json.loads(json.dumps(dict(args)))


def render(args):
    """The module's result without ``dest`` ({changed, config, content, checksum, env, models, dest}) for the module
    arguments ``args``; RenderError naming the argument or the config key otherwise."""
    validated = ArgumentSpecValidator(_litellm.ARGUMENT_SPEC).validate(plain(args))
    if validated.error_messages:
        raise RenderError("litellm_config: " + "; ".join(validated.error_messages), list(validated.error_messages))
    p = validated.validated_parameters
    if p.get("dest"):
        raise RenderError("litellm_config: dest writes a file on the target, which only the module does")
    if not p["config"] and p["models"] is None:
        raise RenderError("nothing to render: give models (the gpu_lab_models catalog) and/or config "
                          "(a structured LiteLLM config)")
    try:
        built = _litellm.build(config=p["config"], models=p["models"], routes=p["routes"], namespace=p["namespace"],
                               vllm_api_base=p["vllm_api_base"], ollama_api_base=p["ollama_api_base"],
                               ollama_embed_api_base=p["ollama_embed_api_base"],
                               provided_env=p["provided_env"], allow_duplicate_aliases=p["allow_duplicate_aliases"],
                               allow_literal_secrets=p["allow_literal_secrets"],
                               allow_unknown_keys=p["allow_unknown_keys"])
    except _litellm.ConfigError as exc:
        raise RenderError(str(exc), exc.errors) from exc
    return dict(changed=False, config=built["config"], content=built["content"], checksum=built["checksum"],
                env=built["env"], models=built["models"], dest=None)
