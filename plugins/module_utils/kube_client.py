# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one client to the Kubernetes API: every module of the collection and the in-cluster swap service use it.

It imports nothing from Ansible (``kube.py`` adds the modules' argument spec on top), so code that
runs in a pod (the swap service of the on-demand hand-over) reuses it as it is.

* ``transport(params)`` picks how to reach the API server, from the kubernetes.core-style connection
  options (``kubeconfig``, ``context``, ``host``, ``api_key``, ``validate_certs``, ``ca_cert``):

  - ``InClusterTransport`` when no kubeconfig and no host is given and the pod's ServiceAccount is
    mounted (``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`` and
    ``KUBERNETES_SERVICE_HOST``/``_PORT``); the token file is re-read when the kubelet rotates it;
  - ``LightTransport`` for a plain kubeconfig (server, CA, client certificate or token: what k3s
    writes), spoken with the standard library: importing the kubernetes library costs seconds per
    process on a small machine, and a swap starts one process per step (docs/gpu_swap.md);
  - ``LibraryTransport`` (the kubernetes library's ``ApiClient``) for everything else: exec plugins,
    auth providers, or the ``host``/``api_key``/``ca_cert``/``validate_certs`` overrides.

* ``Client`` sends raw-path requests by route name (a caller's table ``name -> (verb, path)``; the
  swap's ``_ROUTES`` is the list of what it may call and its RBAC is derived from it), answers JSON
  as dicts (the API's own camelCase names, as kubectl shows them) and retries transient errors
  (connection refused, 5xx, 429: a restarting API server) until a deadline; anything else fails at
  once as ``KubeError`` worded by ``describe_status``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import ssl
import tempfile
import threading
import time

try:
    from http import client as http_client
    from urllib.parse import urlencode, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    http_client = None

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# HTTP statuses worth waiting out (0: the kubernetes library's word for a connection problem).
TRANSIENT = (0, 429, 500, 502, 503, 504)
DEFAULT_RETRY_TIMEOUT = 30
REQUEST_TIMEOUT = 15
# Query arguments the routes take, by their kubernetes-library names.
QUERY = {"label_selector": "labelSelector", "field_selector": "fieldSelector", "field_manager": "fieldManager"}
_HTTP_ERRORS = (OSError, http_client.HTTPException) if http_client else (OSError,)

# The kubernetes library is imported on first use (PEP 562 ``__getattr__`` below): loading it
# costs seconds on a busy small machine, and a run that needs no API (gpu_capacity with
# sources=[nvidia-smi] on the GPU host) or speaks a plain kubeconfig itself should not pay for it.
_LAZY = ("k8s_client", "k8s_config", "ApiException", "ConfigException", "Urllib3HTTPError",
         "HAS_KUBERNETES", "KUBERNETES_IMPORT_ERROR")


class KubeError(Exception):
    """A Kubernetes problem worded for the operator (what, where, how to fix); ``status``: the HTTP status, if any."""

    def __init__(self, message, status=None):
        super(KubeError, self).__init__(message)
        self.status = status


class ApiStatus(Exception):
    """An HTTP error answer of the API server (``status``, ``reason``, ``body``), like ApiException."""

    def __init__(self, status, reason, body):
        super(ApiStatus, self).__init__("(%s) %s" % (status, reason))
        self.status, self.reason, self.body = status, reason, body


class Unsupported(Exception):
    """A kubeconfig the light transport does not speak (exec plugin, auth provider, ...)."""


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


def load_library():
    """Import the kubernetes library once; return its names."""
    if not _LIBRARY:
        _LIBRARY.append(_Library())
    return _LIBRARY[0]


def library_loaded():
    """Whether this process has imported the kubernetes library through this module (tests of the light paths)."""
    return bool(_LIBRARY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(load_library(), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


# Where the provision playbook writes a host's kubeconfig on the controller, and where every role and module of the
# collection looks for it, unless gpu_lab_kubeconfig says otherwise (filter ailab.gpu_lab.lab_kubeconfig).
DEFAULT_KUBECONFIG = "~/.kube/gpu_lab/%s.yaml"


def lab_kubeconfig_path(host):
    """The kubeconfig path of inventory host ``host`` when gpu_lab_kubeconfig is not set."""
    return DEFAULT_KUBECONFIG % host


# ---------------------------------------------------------------- wording
def missing_kubeconfig(path):
    return ("kubeconfig %s does not exist. Pass kubeconfig= (or K8S_AUTH_KUBECONFIG) pointing at the file that "
            "the provision playbook fetched (default %s)." % (path, lab_kubeconfig_path("<host>")))


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


def describe_unreachable(host, action, exc, retried=None):
    return ("Kubernetes API at %s is unreachable while trying to %s (%s%s). Is the cluster up, and is the "
            "kubeconfig's server reachable from here (over the tailnet)?"
            % (host, action, exc.__class__.__name__, ", retried for %ss" % retried if retried is not None else ""))


def describe_api_error(exc, host, action):
    """Turn a kubernetes-library exception into a sentence an operator can act on."""
    lib = load_library()
    if isinstance(exc, lib.ApiException):
        return describe_status(getattr(exc, "status", None), exc.reason, exc.body, host, action)
    if isinstance(exc, (lib.Urllib3HTTPError, OSError)):
        return describe_unreachable(host, action, exc)
    return "Kubernetes API at %s: %s while trying to %s" % (host, exc, action)


# ---------------------------------------------------------------- transports
class LightTransport(object):
    """HTTP(S) to the API server with what a k3s kubeconfig holds: server, CA, client certificate or token.

    Standard library only (``http.client`` + ``ssl``), one kept-alive connection per thread (the in-cluster swap
    service asks from several threads at once; an ``http.client`` connection serves one request at a time).
    """

    kind = "kubeconfig"

    def __init__(self, path, context=None, timeout=REQUEST_TIMEOUT):
        if yaml is None or http_client is None:
            raise Unsupported("PyYAML missing")
        with open(path) as handle:
            config = yaml.safe_load(handle) or {}

        def named(kind, name):
            for item in config.get(kind) or []:
                if item.get("name") == name:
                    return item.get(kind[:-1]) or {}
            raise Unsupported("%s %r not in the kubeconfig" % (kind[:-1], name))
        ctx = named("contexts", context or config.get("current-context"))
        cluster, user = named("clusters", ctx.get("cluster")), named("users", ctx.get("user"))
        if set(user) - set(["client-certificate-data", "client-key-data", "client-certificate", "client-key", "token"]) \
                or set(cluster) - set(["server", "certificate-authority-data", "certificate-authority",
                                       "insecure-skip-tls-verify"]):
            raise Unsupported("kubeconfig options beyond certificates and tokens")
        self.namespace = ctx.get("namespace")
        self._token = user.get("token")
        self._open(cluster["server"], timeout, self._ssl(cluster, user) if cluster["server"].startswith("https") else None)

    def _open(self, server, timeout, context):
        url = urlsplit(server)
        self.host = server
        self.scheme, self.netloc = url.scheme, url.netloc
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self.context = context
        self._local = threading.local()

    def token(self):
        return self._token

    @staticmethod
    def _ssl(cluster, user):
        # The kubeconfig's CA only, as client-go trusts it (not the system's store as well; loading that store costs
        # ~20 ms per client); the system's store only when the kubeconfig names no CA.
        if cluster.get("insecure-skip-tls-verify"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            context = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode("ascii"))
        elif cluster.get("certificate-authority"):
            context = ssl.create_default_context(cafile=os.path.expanduser(cluster["certificate-authority"]))
        else:
            context = ssl.create_default_context()
        if user.get("client-certificate-data") and user.get("client-key-data"):
            directory = tempfile.mkdtemp(prefix="gpu_lab-")  # mode 0700: the key never leaves it readable
            cert, key = os.path.join(directory, "cert"), os.path.join(directory, "key")
            try:
                for name, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
                    with os.fdopen(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                        handle.write(base64.b64decode(user[field]))
                context.load_cert_chain(cert, key)
            finally:
                for name in (cert, key):
                    if os.path.exists(name):
                        os.unlink(name)
                os.rmdir(directory)
        elif user.get("client-certificate") and user.get("client-key"):
            context.load_cert_chain(os.path.expanduser(user["client-certificate"]), os.path.expanduser(user["client-key"]))
        return context

    def request(self, verb, path, query, headers, body):
        """Return (status, reason, bytes); connection problems raise OSError / HTTPException."""
        target = self.prefix + path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else None
        hdrs = {}
        token = self.token()
        if token:
            hdrs["Authorization"] = "Bearer %s" % token
        hdrs.update(headers)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http_client.HTTPSConnection(self.netloc, timeout=self.timeout, context=self.context)
            else:
                conn = http_client.HTTPConnection(self.netloc, timeout=self.timeout)
            self._local.conn = conn
        try:
            conn.request(verb, target, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.read()
        except Exception:
            conn.close()
            self._local.conn = None
            raise


def in_cluster_available(environ=None, sa_dir=SA_DIR):
    """Whether this process runs in a pod with a ServiceAccount token mounted (what client-go's InClusterConfig asks)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT")
                and os.path.isfile(os.path.join(sa_dir, "token")))


class InClusterTransport(LightTransport):
    """The pod's own ServiceAccount: ``KUBERNETES_SERVICE_HOST``/``_PORT``, the mounted CA and token.

    The kubelet rotates a projected token (it writes a new file through the ``..data`` symlink well
    before the old one expires); the file is re-read whenever it changed, as client-go does.
    """

    kind = "in-cluster"

    def __init__(self, environ=None, sa_dir=SA_DIR, timeout=REQUEST_TIMEOUT):  # pylint: disable=super-init-not-called
        if http_client is None:
            raise Unsupported("http.client missing")
        environ = os.environ if environ is None else environ
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubeError("not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        self.token_path = os.path.join(sa_dir, "token")
        self._stamp = None
        self._token = None
        if not os.path.isfile(self.token_path):
            raise KubeError("in-cluster: no ServiceAccount token at %s (automountServiceAccountToken off?)"
                            % self.token_path)
        self.token()
        ca = os.path.join(sa_dir, "ca.crt")
        context = ssl.create_default_context(cafile=ca if os.path.isfile(ca) else None)   # the cluster's CA only
        self.namespace = None
        ns_path = os.path.join(sa_dir, "namespace")
        if os.path.isfile(ns_path):
            with open(ns_path) as handle:
                self.namespace = handle.read().strip() or None
        if ":" in host and not host.startswith("["):
            host = "[%s]" % host  # IPv6
        self._open("https://%s:%s" % (host, port), timeout, context)

    def token(self):
        try:
            info = os.stat(self.token_path)
        except OSError:
            return self._token  # mid-rotation: keep the last one
        stamp = (info.st_ino, info.st_mtime, info.st_size)
        if stamp != self._stamp:
            with open(self.token_path) as handle:
                self._token = handle.read().strip()
            self._stamp = stamp
        return self._token


def api_client(params):
    """A ``kubernetes.client.ApiClient`` from the connection options (kubeconfig, context, host, ...)."""
    lib = load_library()
    if not lib.HAS_KUBERNETES:
        raise KubeError("the kubernetes Python library is needed for this kubeconfig (pip install kubernetes): %s"
                        % lib.KUBERNETES_IMPORT_ERROR)
    configuration = lib.k8s_client.Configuration()
    kubeconfig = params.get("kubeconfig")
    if kubeconfig or not params.get("host"):
        path = default_kubeconfig(kubeconfig)
        if not os.path.exists(path):
            raise KubeError(missing_kubeconfig(path))
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


class LibraryTransport(object):
    """The same requests through the kubernetes library's ApiClient (every kubeconfig it supports)."""

    kind = "library"
    namespace = None

    def __init__(self, params):
        self.client = api_client(params)
        self.host = self.client.configuration.host

    def request(self, verb, path, query, headers, body):
        lib = load_library()
        try:
            request = self.client.param_serialize(method=verb, resource_path=path, query_params=query,
                                                  header_params=headers, body=body, auth_settings=["BearerToken"])
            resp = self.client.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            return resp.status, resp.reason, resp.read()
        except lib.ApiException as exc:  # status 0: the library's word for a connection problem
            if not getattr(exc, "status", 0):
                raise ConnectionError(str(exc))
            raise ApiStatus(exc.status, exc.reason, exc.body)
        except lib.Urllib3HTTPError as exc:
            raise ConnectionError(str(exc))


def default_kubeconfig(kubeconfig=None, environ=None):
    """The kubeconfig path: the option, else the first of ``$KUBECONFIG``, else ``~/.kube/config``."""
    environ = os.environ if environ is None else environ
    return os.path.expanduser(kubeconfig or environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])


def transport(params, environ=None, sa_dir=SA_DIR):
    """How to reach the API server for these connection options (see the module's docstring for the order)."""
    overrides = any(params.get(k) for k in ("host", "api_key", "ca_cert")) or params.get("validate_certs") is not None
    if not params.get("kubeconfig") and not params.get("host") and in_cluster_available(environ, sa_dir):
        return InClusterTransport(environ, sa_dir)
    if not overrides:
        path = default_kubeconfig(params.get("kubeconfig"), environ)
        if not os.path.exists(path):
            raise KubeError(missing_kubeconfig(path))
        try:
            return LightTransport(path, params.get("context"))
        except (Unsupported, KeyError, TypeError, ValueError, AttributeError):
            pass
    return LibraryTransport(params)


# ---------------------------------------------------------------- the client
def build_request(routes, route, default_namespace=None, **kwargs):
    """``(verb, path, query, body)`` of a route by name: ``{namespace}``/``{name}`` filled, known query arguments named.

    ``kwargs``: ``name``, ``body``, ``label_selector``, ``field_selector`` (the kubernetes library's names).
    """
    verb, path = routes[route]
    path = path.format(namespace=kwargs.pop("namespace", None) or default_namespace, name=kwargs.pop("name", ""))
    body = kwargs.pop("body", None)
    unknown = sorted(k for k in kwargs if k not in QUERY)
    if unknown:
        raise TypeError("route %s: unknown argument(s) %s" % (route, ", ".join(unknown)))
    query = [(QUERY[k], v) for k, v in sorted(kwargs.items()) if v is not None]
    return verb, path, query, body


class Client(object):
    """Requests to the API server by route name, transient errors retried for ``retry_timeout`` seconds.

    A restarted or briefly unreachable API server (connection refused, 5xx, 429) is waited for, with
    a back-off from 0.2 s doubling to 2 s; anything else (401, 403, 404, 409, 422: credentials, an
    admission policy, a missing object, a conflict) raises ``KubeError`` at once, naming the action.
    """

    def __init__(self, http, routes, namespace=None, retry_timeout=DEFAULT_RETRY_TIMEOUT, clock=time.monotonic,
                 sleep=time.sleep):
        self.http = http
        self.host = http.host
        self.routes = routes
        self.namespace = namespace or getattr(http, "namespace", None)
        self.retry_timeout = retry_timeout
        self.clock = clock
        self.sleep = sleep
        self.api_retries = 0

    def call(self, route, action, missing_ok=False, conflict_ok=False, content_type=None, **kwargs):
        """One request by route name; the JSON answer as dicts (``None`` for a 404 with ``missing_ok``,
        ``"conflict"`` for a 409 with ``conflict_ok``)."""
        verb, path, query, body = build_request(self.routes, route, self.namespace, **kwargs)
        return self.request(verb, path, action, query=query, body=body, content_type=content_type,
                            missing_ok=missing_ok, conflict_ok=conflict_ok)

    def kube_list(self, api, method, action, **kwargs):  # pylint: disable=unused-argument
        """gpu_capacity's listing callback (``api``: the typed class the route belongs to in the kubernetes library)."""
        return self.call(method, action, **kwargs)

    def request(self, verb, path, action, query=None, body=None, content_type=None, missing_ok=False, conflict_ok=False,
                transient=TRANSIENT):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        deadline = self.clock() + self.retry_timeout
        delay = 0.2
        while True:
            try:
                status, reason, raw = self.http.request(verb, path, query or [], headers, body)
                if status < 400:
                    return json.loads(raw or b"{}")
                raise ApiStatus(status, reason, raw.decode("utf-8", "replace"))
            except ApiStatus as exc:
                if exc.status == 404 and missing_ok:
                    return None
                if exc.status == 409 and conflict_ok:
                    return "conflict"
                if exc.status not in transient or self.clock() >= deadline:
                    raise KubeError(describe_status(exc.status, exc.reason, exc.body, self.host, action), exc.status)
            except _HTTP_ERRORS as exc:
                if isinstance(exc, ssl.CertificateError):  # a wrong CA or server name does not heal by waiting
                    raise KubeError("Kubernetes API at %s failed TLS verification while trying to %s (%s): the CA in "
                                    "the kubeconfig (or ca_cert) does not match the server's certificate."
                                    % (self.host, action, exc))
                if self.clock() >= deadline:
                    raise KubeError(describe_unreachable(self.host, action, exc, self.retry_timeout))
            self.api_retries += 1
            self.sleep(delay)
            delay = min(delay * 2, 2.0)


def connect(params, routes, namespace=None, retry_timeout=None, environ=None, sa_dir=SA_DIR, **kwargs):
    """``Client(transport(params), ...)``; ``retry_timeout`` defaults to ``params["api_retry_timeout"]`` or 30 s."""
    if retry_timeout is None:
        retry_timeout = params.get("api_retry_timeout")
    if retry_timeout is None:
        retry_timeout = DEFAULT_RETRY_TIMEOUT
    return Client(transport(params, environ, sa_dir), routes, namespace=namespace, retry_timeout=retry_timeout, **kwargs)
