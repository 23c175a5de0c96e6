# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup ailab.gpu_lab.lab_components: the component registry resolved with the play's port variables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: lab_components
short_description: The component registry of the deploy playbook, resolved with the inventory's port overrides
description:
  - Returns the resolved view of the component registry (plugins/module_utils/components.py, docs/deploy.md
    "The component registry") with, for every component, its Services, their ports (each inventory override
    such as C(vllm_port) applied), in-cluster URLs, routes, network flows, scrape endpoints and backup-tier variables.
  - The lab role publishes this view as C(lab.registry) after its early check; a component role reads C(lab.registry)
    and uses this lookup only when it runs on its own (without the lab role).
  - Reads the registry's port variables (C(vllm_port), C(ollama_port), ...), C(gpu_lab_namespace) and
    C(gpu_lab_monitoring_namespace) from the play's variables.
options:
  enabled:
    description: The enabled components; default the registry's on/off defaults.
    type: list
    elements: str
  strict:
    description: Fail on a port override that is not a port number; the lab role's early check passes C(false) and
      reports every problem of the registry at once instead.
    type: bool
    default: true
author: ailab maintainers (@ailab)
"""

EXAMPLES = r"""
- name: Show where the gateway reaches vLLM
  ansible.builtin.debug:
    msg: "{{ lookup('ailab.gpu_lab.lab_components').components.vllm.services.vllm.urls.http }}"
"""

RETURN = r"""
_raw:
  description: The resolved view (one element).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.ailab.gpu_lab.plugins.module_utils import components as _components


class LookupModule(LookupBase):
    """The resolved component registry."""

    def _var(self, variables, name, default=None):
        if name not in variables:
            return default
        return self._templar.template(variables[name])

    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("lab_components takes no terms, got %r; pass enabled=[...] or strict=false" % (terms,))
        variables = variables or {}
        overrides = dict((var, self._var(variables, var)) for var in _components.port_variables())
        try:
            return [_components.resolve(overrides, enabled=kwargs.get("enabled"), strict=kwargs.get("strict", True),
                                        namespace=self._var(variables, "gpu_lab_namespace", "ai-lab"),
                                        monitoring_namespace=self._var(variables, "gpu_lab_monitoring_namespace",
                                                                       "monitoring"))]
        except ValueError as exc:
            raise AnsibleLookupError(str(exc)) from exc
