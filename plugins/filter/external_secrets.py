# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``ailab.gpu_lab.external_secrets``: the lab's Secrets as ExternalSecrets (docs: external_secrets.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ailab.gpu_lab.plugins.module_utils import external_secrets as _es
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


class ExternalSecretsError(ValueError):
    pass


def external_secrets(store, key_prefix="", refresh_interval="1h", **layout):
    """ExternalSecret objects for the Secrets of ``secret_layout(**layout)``, read from ClusterSecretStore ``store``."""
    objects, errors = _es.external_secrets(store, key_prefix, refresh_interval, **layout)
    if errors:
        raise ExternalSecretsError("secrets_source external-secrets: %d problem(s):\n%s"
                                   % (len(errors), "\n".join("  - " + e for e in errors)))
    return objects


class FilterModule(object):
    """ailab.gpu_lab External Secrets filter."""

    def filters(self):
        return filter_map((external_secrets,), (ExternalSecretsError, TypeError))
