# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's filter plugins share: their input errors become AnsibleFilterError."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def filter_map(funcs, errors):
    """``{name: filter}`` for FilterModule.filters(): each of ``funcs`` with ``errors`` (exception
    classes carrying an operator-facing message) raised as AnsibleFilterError with that message."""
    def wrap(func):
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except errors as exc:
                raise AnsibleFilterError(str(exc))
        wrapper.__name__ = func.__name__
        wrapper.__doc__ = func.__doc__
        return wrapper
    return dict((f.__name__, wrap(f)) for f in funcs)
