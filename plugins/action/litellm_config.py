# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ailab.gpu_lab.litellm_config: without ``dest`` the module only computes (render and validate
the config, no file, no host state), so that runs in the controller's process with the module's own code
(module_utils/litellm_config.build) and argument spec, instead of starting a module process: one module start less
on every deploy (docs/deploy.md, Benchmark). With ``dest`` (a file to write on the target) the module runs as usual.
"""
from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as _litellm

MODULE = "ailab.gpu_lab.litellm_config"
_FILE_ARGS = ("mode", "owner", "group", "seuser", "serole", "selevel", "setype", "attributes", "unsafe_writes")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        # Plain JSON types: ansible-core 2.19 hands tagged str/dict subclasses, which the YAML dump of build() refuses.
        args = json.loads(json.dumps(dict(self._task.args)))
        if args.get("dest") or any(k in args for k in _FILE_ARGS):
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        validated = ArgumentSpecValidator(_litellm.ARGUMENT_SPEC).validate(args)
        if validated.error_messages:
            result.update(failed=True, msg="litellm_config: " + "; ".join(validated.error_messages))
            return result
        p = validated.validated_parameters
        if not p["config"] and p["models"] is None:
            result.update(failed=True, msg="nothing to render: give models (the gpu_lab_models catalog) and/or config "
                                           "(a structured LiteLLM config)")
            return result
        try:
            built = _litellm.build(config=p["config"], models=p["models"], routes=p["routes"], namespace=p["namespace"],
                                   vllm_api_base=p["vllm_api_base"], ollama_api_base=p["ollama_api_base"],
                                   ollama_embed_api_base=p["ollama_embed_api_base"],
                                   provided_env=p["provided_env"], allow_duplicate_aliases=p["allow_duplicate_aliases"],
                                   allow_literal_secrets=p["allow_literal_secrets"],
                                   allow_unknown_keys=p["allow_unknown_keys"])
        except _litellm.ConfigError as exc:
            result.update(failed=True, msg=str(exc), errors=exc.errors)
            return result
        result.update(changed=False, config=built["config"], content=built["content"], checksum=built["checksum"],
                      env=built["env"], models=built["models"], dest=None)
        return result
