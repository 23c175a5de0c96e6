# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``lab_kubeconfig``: where a lab host's kubeconfig is on the controller. Documented in lab_kubeconfig.yml."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as _kube_client


def lab_kubeconfig(host, configured=None):
    """``configured`` (gpu_lab_kubeconfig) when set and not empty, else the default path of inventory host ``host``."""
    if configured:
        return str(configured)
    if not host or not isinstance(host, str):
        raise AnsibleFilterError("lab_kubeconfig: expects an inventory host name, got %r" % (host,))
    return _kube_client.lab_kubeconfig_path(host)


class FilterModule(object):
    """The lab's connection settings."""

    def filters(self):
        return {"lab_kubeconfig": lab_kubeconfig}
