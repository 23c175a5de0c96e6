# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup ailab.gpu_lab.manifest: a role's Kubernetes template rendered and parsed into its objects."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: manifest
short_description: Render a role's Kubernetes manifest template into the list of its objects
description:
  - Renders each template (found like M(ansible.builtin.template) finds it, in the role's C(templates/)) with the
    play's variables and parses the result as YAML documents, as
    C(lookup('ansible.builtin.template', term) | ansible.builtin.from_yaml_all | list) would; empty documents are
    kept as C(None), as that filter keeps them.
  - Unlike the C(ansible.builtin.template) lookup it does not deep-copy every variable of the play for each
    template (ansible-core does, and with a dozen roles' variables and facts that copy is most of a deploy
    re-run's templating time, docs/deploy.md "Benchmark"); the template reads the variables through a shallow
    copy, which is enough because a template only reads them.
  - The component roles declare their objects for deploy's one apply with it (C(tasks/manifest.yml)).
options:
  _terms:
    description: Template file names, relative to the role's C(templates/) directory.
    required: true
    type: list
    elements: str
author: ailab maintainers (@ailab)
"""

EXAMPLES = r"""
- name: Declare the objects of Qdrant
  ansible.builtin.set_fact:
    qdrant_manifest:
      name: qdrant
      files:
        qdrant.yaml: "{{ query('ailab.gpu_lab.manifest', 'qdrant.yaml.j2') }}"
"""

RETURN = r"""
_raw:
  description: The objects (YAML documents) of every template, in order.
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.filter.core import from_yaml_all
from ansible.plugins.lookup import LookupBase

try:  # ansible-core 2.19+: text read from a file is rendered only once marked as a trusted template
    from ansible.template import trust_as_template
except ImportError:  # ansible-core 2.17/2.18: every string is a template
    def trust_as_template(text):
        """Pre-2.19: nothing to mark."""
        return text


class LookupModule(LookupBase):
    """Each template rendered with the play's variables, parsed into its YAML documents."""

    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        objects = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "templates", term)
            if not path:
                raise AnsibleLookupError("template %s not found in the role's templates/ (ailab.gpu_lab.manifest)" % term)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            # Jinja's include/import search path, as ansible.builtin.template's lookup sets it.
            searchpath = [os.path.dirname(path)]
            for base in variables.get("ansible_search_path", []):
                searchpath += [os.path.join(base, "templates"), base]
            # A shallow copy (ansible-core's template lookup deep-copies here): the template reads, never writes.
            available = dict(variables)
            available.update(template_path=term, template_fullpath=path)
            templar = self._templar.copy_with_new_env(available_variables=available, searchpath=searchpath)
            rendered = templar.template(trust_as_template(text), preserve_trailing_newlines=True, escape_backslashes=False)
            objects.extend(from_yaml_all(rendered))
        return objects
