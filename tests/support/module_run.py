"""Run a module's main() in-process through Ansible's own module-args patching
(ansible.module_utils.testing.patch_module_args): the argument spec, defaults, check mode and no_log filtering are
those a playbook run gets."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run_module(module, capsys, **args):
    """The module's JSON result for ``args``, with its exit code as ``_rc``."""
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = info.value.code
    return out
