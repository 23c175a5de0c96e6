# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' Kubernetes connection options (the Ansible side of ``kube_client``).

Modules extend ``KUBE_ARG_SPEC``, document it with the ``ailab.gpu_lab.kubernetes`` doc fragment,
are members of the ``ailab.gpu_lab.kubernetes`` action group (meta/runtime.yml, so a play sets the
connection once in ``module_defaults``) and reach the API through ``kube_client.connect(params, ...)``.
The option names and ``K8S_AUTH_*`` environment fallbacks are those of kubernetes.core, so one
inventory drives both. The client itself (kube_client.py) imports nothing from Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback

from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client
from ansible_collections.ailab.gpu_lab.plugins.module_utils.kube_client import (  # noqa: F401 pylint: disable=unused-import
    KubeError,
    api_client,
    describe_api_error,
    describe_status,
)


def __getattr__(name):
    # The kubernetes library's names (HAS_KUBERNETES, ApiException, ...), imported on first use by kube_client.
    return getattr(kube_client, name)


KUBE_ARG_SPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
    api_retry_timeout=dict(type="int", default=kube_client.DEFAULT_RETRY_TIMEOUT),
)
