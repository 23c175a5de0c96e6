# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ailab.gpu_lab.litellm_config: without ``dest`` the module only computes (render and validate
the config, no file, no host state), so that runs in the controller's process with the module's own code
(module_utils/litellm_config.build) and argument spec (plugin_utils/litellm_render, shared with the filter
ailab.gpu_lab.litellm_config_render that the litellm role uses), instead of starting a module process. With ``dest``
(a file to write on the target) the module runs as usual.
"""
from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.ailab.gpu_lab.plugins.plugin_utils import litellm_render as _render

MODULE = "ailab.gpu_lab.litellm_config"
_FILE_ARGS = ("mode", "owner", "group", "seuser", "serole", "selevel", "setype", "attributes", "unsafe_writes")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = _render.plain(self._task.args)
        if args.get("dest") or any(k in args for k in _FILE_ARGS):
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        try:
            result.update(_render.render(args))
        except _render.RenderError as exc:
            result.update(failed=True, msg=str(exc), errors=exc.errors)
        return result
