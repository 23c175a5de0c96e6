# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``ailab.gpu_lab.dotenv_parse``: .env text -> dict, with python-dotenv's parser (docs: dotenv_parse.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.ailab.gpu_lab.plugins.module_utils.dotenv_secrets import (
    HAS_DOTENV,
    DotenvError,
    dotenv_parse as _dotenv_parse,
)


def dotenv_parse(text, source=".env", interpolate=True):
    """Parse .env text; raise AnsibleFilterError listing every problem as ``source:line: message``."""
    if not HAS_DOTENV:
        raise AnsibleFilterError("dotenv_parse needs the python-dotenv package on the controller: pip install python-dotenv")
    if text is None:
        text = ""
    if not isinstance(text, (str, bytes)):
        raise AnsibleFilterError("dotenv_parse expects the text of a .env file (a string), got %s" % type(text).__name__)
    if not isinstance(interpolate, bool):
        raise AnsibleFilterError("dotenv_parse: interpolate must be a boolean")
    try:
        return _dotenv_parse(text, source=to_text(source), interpolate=interpolate)
    except DotenvError as exc:
        raise AnsibleFilterError("%s: %d problem(s):\n%s" % (source, len(exc.problems), "\n".join(str(p) for p in exc.problems)))


class FilterModule(object):
    """ailab.gpu_lab .env filters."""

    def filters(self):
        return {"dotenv_parse": dotenv_parse}
