# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared Kubernetes connection options, client construction and API error wording.

Modules extend ``KUBE_ARG_SPEC`` and document it with the ``ailab.gpu_lab.kubernetes``
doc fragment. The option names and ``K8S_AUTH_*`` environment fallbacks are those of
kubernetes.core, so one inventory drives both.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.module_utils.basic import env_fallback

# The kubernetes library is imported on first use (PEP 562 ``__getattr__`` below): loading it
# costs seconds on a busy small machine, and a module run that needs no API (gpu_capacity with
# sources=[nvidia-smi] on the GPU host, gpu_swap's own light transport) should not pay for it.
_LAZY = ("k8s_client", "k8s_config", "ApiException", "ConfigException", "Urllib3HTTPError",
         "HAS_KUBERNETES", "KUBERNETES_IMPORT_ERROR")


class _MissingApiException(Exception):
    """Stand-in when the kubernetes library is missing, so except clauses stay valid."""


class _MissingConfigException(Exception):
    """Stand-in when the kubernetes library is missing."""


class _MissingUrllib3HTTPError(Exception):
    """Stand-in when urllib3 is missing."""


class _Library(object):
    """The kubernetes library's names this module uses (or stand-ins when it is missing)."""

    def __init__(self):
        try:
            from kubernetes import client as k8s_client
            from kubernetes import config as k8s_config
            from kubernetes.client.rest import ApiException
            from kubernetes.config.config_exception import ConfigException
            from urllib3.exceptions import HTTPError as Urllib3HTTPError
        except ImportError as exc:  # pragma: no cover - exercised only without the library
            self.k8s_client = self.k8s_config = None
            self.ApiException, self.ConfigException = _MissingApiException, _MissingConfigException
            self.Urllib3HTTPError = _MissingUrllib3HTTPError
            self.KUBERNETES_IMPORT_ERROR, self.HAS_KUBERNETES = exc, False
            return
        self.k8s_client, self.k8s_config = k8s_client, k8s_config
        self.ApiException, self.ConfigException, self.Urllib3HTTPError = ApiException, ConfigException, Urllib3HTTPError
        self.KUBERNETES_IMPORT_ERROR, self.HAS_KUBERNETES = None, True


_LIBRARY = []


def _load():
    """Import the kubernetes library once; return its names."""
    if not _LIBRARY:
        _LIBRARY.append(_Library())
    return _LIBRARY[0]


def __getattr__(name):
    if name in _LAZY:
        return getattr(_load(), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


KUBE_ARG_SPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
)


class KubeError(Exception):
    """A Kubernetes problem worded for the operator (what, where, how to fix)."""


def api_client(params):
    """Build a ``kubernetes.client.ApiClient`` from module params (kubeconfig, context, host, ...)."""
    lib = _load()
    configuration = lib.k8s_client.Configuration()
    kubeconfig = params.get("kubeconfig")
    if kubeconfig or not params.get("host"):
        path = os.path.expanduser(kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
        if not os.path.exists(path):
            raise KubeError(
                "kubeconfig %s does not exist. Pass kubeconfig= (or K8S_AUTH_KUBECONFIG) pointing at the file that "
                "the provision playbook fetched (default ~/.kube/gpu_lab/<host>.yaml)." % path)
        try:
            lib.k8s_config.load_kube_config(config_file=path, context=params.get("context"), client_configuration=configuration)
        except (lib.ConfigException, ValueError, TypeError) as exc:
            raise KubeError("cannot load kubeconfig %s%s: %s" % (
                path, " (context %s)" % params["context"] if params.get("context") else "", exc))
    if params.get("host"):
        configuration.host = params["host"]
    if params.get("api_key"):
        configuration.api_key = {"authorization": "Bearer %s" % params["api_key"]}
    if params.get("validate_certs") is not None:
        configuration.verify_ssl = params["validate_certs"]
    if params.get("ca_cert"):
        configuration.ssl_ca_cert = params["ca_cert"]
    configuration.retries = 1
    return lib.k8s_client.ApiClient(configuration)


def describe_status(status, reason, body, host, action):
    """The sentence for an HTTP error answer of the API (``body``: its JSON Status, if any)."""
    detail = ""
    try:
        detail = json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        detail = (reason or "").strip()
    if status == 401:
        return ("Kubernetes API at %s rejected the credentials (401 Unauthorized) while trying to %s: the token or "
                "client certificate in the kubeconfig is wrong or expired; re-run the provision playbook to fetch a "
                "fresh kubeconfig." % (host, action))
    if status == 403:
        return ("Kubernetes API at %s refused to %s (403 Forbidden): %s. The kubeconfig user needs permission for "
                "this; the k3s admin kubeconfig has it." % (host, action, detail))
    if status == 404:
        return "Kubernetes API at %s has no such object or API while trying to %s: %s" % (host, action, detail)
    return "Kubernetes API at %s answered %s while trying to %s: %s" % (host, status, action, detail)


def describe_api_error(exc, host, action):
    """Turn a client exception into a sentence an operator can act on."""
    lib = _load()
    if isinstance(exc, lib.ApiException):
        return describe_status(getattr(exc, "status", None), exc.reason, exc.body, host, action)
    if isinstance(exc, (lib.Urllib3HTTPError, OSError)):
        return ("Kubernetes API at %s is unreachable while trying to %s (%s). Is the cluster up, and is the "
                "kubeconfig's server reachable from here (over the tailnet)?" % (host, action, exc.__class__.__name__))
    return "Kubernetes API at %s: %s while trying to %s" % (host, exc, action)


def call_json(client, api, method, action, **kwargs):
    """Call a typed API method (e.g. ``"CoreV1Api", "list_node"``) and return the raw JSON as dicts.

    Raw JSON keeps the API's own field names (camelCase), as kubectl and kubernetes.core show them.
    """
    lib = _load()
    try:
        response = getattr(getattr(lib.k8s_client, api)(client), method)(_preload_content=False, _request_timeout=30, **kwargs)
        return json.loads(response.data)
    except (lib.ApiException, lib.Urllib3HTTPError, OSError) as exc:
        raise KubeError(describe_api_error(exc, client.configuration.host, action))
