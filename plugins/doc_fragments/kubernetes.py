# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Kubernetes connection options shared by the modules of ailab.gpu_lab."""

    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to the kubeconfig file. The provision playbook writes it to C(~/.kube/gpu_lab/<inventory_hostname>.yaml).
      - When neither O(kubeconfig) nor O(host) is given, C($KUBECONFIG) or C(~/.kube/config) is used.
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable, as for kubernetes.core.
    type: path
  context:
    description:
      - Context of the kubeconfig to use; the current context when omitted.
      - Can also be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server; overrides the server of the kubeconfig.
      - Can also be set with E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token for the API server; overrides the kubeconfig's credentials.
      - Can also be set with E(K8S_AUTH_API_KEY).
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate; the kubeconfig's setting when omitted.
      - Can also be set with E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - CA bundle to verify the API server with.
      - Can also be set with E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
requirements:
  - kubernetes (Python library) >= 24.2.0
"""
