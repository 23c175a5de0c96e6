# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ailab.gpu_lab.validate_role_specs: the argument specs of several of this collection's roles
checked against the play's variables in one task. Documentation: plugins/modules/validate_role_specs.py."""
from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.plugins.action.validate_argument_spec import ActionModule as ValidateArgumentSpec

import yaml   # PyYAML: a dependency of ansible-core

ROLES_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles"))
ARGUMENT_SPEC = {
    "roles": {"type": "list", "elements": "str", "required": True},
    "entry_point": {"type": "str", "default": "main"},
}


class SpecMissing(Exception):
    """A role's argument spec file cannot be read or has no such entry point (the message names the file)."""


def role_options(role, entry_point="main", roles_dir=ROLES_DIR):
    """The options of ``entry_point`` in ``roles_dir/<role>/meta/argument_specs.yml``; SpecMissing naming the file
    when it is missing or has no such entry point."""
    path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
    try:
        with open(path) as handle:
            # libyaml's parser where PyYAML has it (about 20 ms per spec file less than the pure-Python one)
            specs = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["argument_specs"]
        return specs[entry_point].get("options") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecMissing("cannot read %s: %s" % (path, getattr(exc, "strerror", None) or exc))
    except (KeyError, TypeError):
        raise SpecMissing("%s has no argument_specs.%s" % (path, entry_point))


class ActionModule(ValidateArgumentSpec):
    """ansible.builtin.validate_argument_spec for each role of ``roles``, reading the same variables the built-in
    reads (``get_args_from_task_vars``: each option's variable, templated) and validating them the same way."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = ActionBase.run(self, tmp, task_vars)   # the built-in's run() reads one argument_spec: not this
        _spec, args = self.validate_argument_spec(ARGUMENT_SPEC)
        results = []
        for name in args["roles"]:
            role = name.rsplit(".", 1)[-1]
            try:
                options = role_options(role, args["entry_point"])
                values = self.get_args_from_task_vars(options, task_vars)
                errors = list(ArgumentSpecValidator(options).validate(
                    values, validate_role_argument_spec=True).error_messages)
            except SpecMissing as exc:
                errors = [str(exc)]
            except AnsibleError as exc:   # a variable of the role that cannot be templated
                errors = ["its variables cannot be templated: %s" % exc]
            results.append({"item": role, "argument_errors": errors})
        failed = [r for r in results if r["argument_errors"]]
        result.update(changed=False, results=results, failed=bool(failed))
        result["msg"] = "; ".join("role ailab.gpu_lab.%s: %s" % (r["item"], ", ".join(r["argument_errors"]))
                                  for r in failed) or "the argument specs of %d roles passed" % len(results)
        return result
