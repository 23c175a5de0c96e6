#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# The work is done by the action plugin of the same name (plugins/action/validate_role_specs.py, on the
# controller); this file holds its documentation for ansible-doc.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: validate_role_specs
short_description: Check the argument specs of several of this collection's roles against the play's variables
version_added: 0.2.0
description:
  - What M(ansible.builtin.validate_argument_spec) does for one role when it starts, for every role of O(roles) in
    one task, before any of them runs. Each role's C(meta/argument_specs.yml) is read from the collection; each of
    its options is read from the variable of the same name (templated), as ansible-core does at a role's start.
  - The deploy playbook's lab role runs it first, so a bad input of any component role is reported before anything is
    rendered or applied (docs/deploy.md, "Early validation"); one task instead of a loop of
    M(ansible.builtin.validate_argument_spec), one per role (about 0.25 s less per deploy run).
  - Fails when any role's options do not pass, naming each role and its problems; C(results) holds them per role
    either way.
  - Runs on the controller (an action plugin; no module is started, nothing is copied to a host).
author:
  - ailab maintainers (@ailab)
extends_documentation_fragment:
  - ailab.gpu_lab.read_only
options:
  roles:
    description: Names of roles of this collection, short (C(vllm)) or fully qualified (C(ailab.gpu_lab.vllm)).
    type: list
    elements: str
    required: true
  entry_point:
    description: The entry point of each role's C(meta/argument_specs.yml) to check.
    type: str
    default: main
"""

EXAMPLES = r"""
- name: Check the argument specs of the component roles before any of them runs
  ailab.gpu_lab.validate_role_specs:
    roles: [vllm, ollama, litellm]
"""

RETURN = r"""
results:
  description: One entry per role of O(roles), in order.
  returned: always
  type: list
  elements: dict
  contains:
    item:
      description: The role's short name.
      type: str
    argument_errors:
      description: What the role's argument spec found (empty when it passed).
      type: list
      elements: str
  sample: [{item: vllm, argument_errors: ["argument 'vllm_port' is of type str and we were unable to convert to int"]}]
"""
