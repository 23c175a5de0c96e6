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
      - When neither O(kubeconfig) nor O(host) is given, the pod's ServiceAccount is used if the module runs in a pod
        (C(/var/run/secrets/kubernetes.io/serviceaccount) and E(KUBERNETES_SERVICE_HOST)), else C($KUBECONFIG) or
        C(~/.kube/config).
      - A kubeconfig with a server, a CA and a client certificate or token (what k3s writes) is spoken without the
        kubernetes Python library; any other (exec plugins, auth providers) or the O(host), O(api_key), O(ca_cert) and
        O(validate_certs) overrides need it.
      - Set all of these once per play with C(module_defaults) for C(group/ailab.gpu_lab.kubernetes).
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
  api_retry_timeout:
    description:
      - Seconds a transient API error (connection refused, 5xx, 429, as while an API server restarts) is retried before the
        module fails; any other error (401, 403, 404, 409, 422) fails at once.
    type: int
    default: 30
requirements:
  - kubernetes (Python library) >= 24.2.0, only for kubeconfigs beyond certificates and tokens or the O(host),
    O(api_key), O(ca_cert) and O(validate_certs) options
"""
