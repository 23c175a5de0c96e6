"""kube_client without a cluster: route building, the retry policy on a fake clock, transport selection
and in-cluster discovery from a temp directory standing in for the pod's ServiceAccount mount.

Real: kube_client itself, the standard library's ssl (CA loading). Stand-ins: a scripted transport
answering (status, body) or raising, a fake clock; the API server is in tests/functional/test_kube_client.py.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc
from ansible_collections.ailab.gpu_lab.plugins.module_utils import lab_secrets as ls
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_capacity as gc

ROUTES = {"read_namespaced_config_map": ("GET", "/api/v1/namespaces/{namespace}/configmaps/{name}"),
          "list_node": ("GET", "/api/v1/nodes"),
          "create_namespaced_lease": ("POST", "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases")}


class Script:
    """A transport that answers from a list: (status, body) tuples or exceptions to raise."""

    host = "https://api.test:6443"
    namespace = None

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def request(self, verb, path, query, headers, body):
        self.sent.append((verb, path, query, headers, body))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, payload = answer
        return status, "Reason", json.dumps(payload).encode()


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def client(answers, retry_timeout=5.0):
    clock = Clock()
    return kc.Client(Script(answers), ROUTES, namespace="lab", retry_timeout=retry_timeout, clock=clock,
                     sleep=clock.sleep), clock


# ---------------------------------------------------------------- routes
def test_route_fills_namespace_and_name_and_names_the_query():
    verb, path, query, body = kc.build_request(ROUTES, "read_namespaced_config_map", "lab", name="gpu-lab-state")
    assert (verb, path, query, body) == ("GET", "/api/v1/namespaces/lab/configmaps/gpu-lab-state", [], None)
    _, path, query, _ = kc.build_request(ROUTES, "list_node", None, label_selector="a=b", field_selector=None)
    assert path == "/api/v1/nodes" and query == [("labelSelector", "a=b")]
    _, path, _, body = kc.build_request(ROUTES, "create_namespaced_lease", "lab", namespace="other", body={"x": 1})
    assert path.endswith("/namespaces/other/leases") and body == {"x": 1}


def test_unknown_route_or_argument_is_a_programming_error():
    with pytest.raises(KeyError):
        kc.build_request(ROUTES, "delete_namespace", "lab")
    with pytest.raises(TypeError, match="labelselector"):
        kc.build_request(ROUTES, "list_node", None, labelselector="a=b")


def test_module_route_tables_are_raw_paths_and_the_swap_holds_capacitys():
    for table in (gs._ROUTES, ls.ROUTES, gc.ROUTES):  # pylint: disable=protected-access
        for verb, path in table.values():
            assert verb in ("GET", "POST", "PATCH", "PUT", "DELETE") and path.startswith(("/api/v1", "/apis/"))
    # the swap's pre-flight runs gpu_capacity's listing through the swap's client: its routes are the swap's too
    assert set(gc.ROUTES.items()) <= set(gs._ROUTES.items())  # pylint: disable=protected-access


def test_request_sends_json_and_content_type():
    c, _ = client([(200, {"ok": True})])
    assert c.call("create_namespaced_lease", "take Lease", content_type="application/merge-patch+json",
                  body={"spec": {}}) == {"ok": True}
    verb, path, _, headers, body = c.http.sent[0]
    assert verb == "POST" and headers["Content-Type"] == "application/merge-patch+json" and body == {"spec": {}}
    assert headers["Accept"] == "application/json"


# ---------------------------------------------------------------- retries
@pytest.mark.parametrize("transient", [ConnectionRefusedError(111, "refused"), (503, {}), (429, {}), (500, {}),
                                       (502, {}), (504, {}), kc.http_client.RemoteDisconnected("closed")])
def test_transient_errors_are_retried_with_back_off(transient):
    c, clock = client([transient, transient, transient, (200, {"items": []})])
    assert c.call("list_node", "list nodes") == {"items": []}
    assert clock.slept == [0.2, 0.4, 0.8] and c.api_retries == 3


def test_back_off_caps_at_two_seconds_and_stops_at_the_deadline():
    refused = ConnectionRefusedError(111, "refused")
    c, clock = client([refused] * 50, retry_timeout=10)
    with pytest.raises(kc.KubeError) as err:
        c.call("list_node", "list nodes")
    assert clock.slept[:5] == [0.2, 0.4, 0.8, 1.6, 2.0] and max(clock.slept) == 2.0
    assert 10 <= clock.now - 100 < 12
    assert str(err.value) == ("Kubernetes API at https://api.test:6443 is unreachable while trying to list nodes "
                              "(ConnectionRefusedError, retried for 10s). Is the cluster up, and is the kubeconfig's "
                              "server reachable from here (over the tailnet)?")


def test_server_error_past_the_deadline_is_worded_by_describe_status():
    c, _ = client([(503, {"message": "etcd leader changed"})] * 50, retry_timeout=1)
    with pytest.raises(kc.KubeError) as err:
        c.call("list_node", "list nodes")
    assert err.value.status == 503
    assert str(err.value) == kc.describe_status(503, "Reason", json.dumps({"message": "etcd leader changed"}),
                                                "https://api.test:6443", "list nodes")


@pytest.mark.parametrize("status,fragment", [(401, "401 Unauthorized"), (403, "(403 Forbidden): denied"),
                                             (404, "no such object"), (409, "answered 409"), (422, "answered 422")])
def test_other_errors_fail_at_once(status, fragment):
    c, clock = client([(status, {"message": "denied"})])
    with pytest.raises(kc.KubeError) as err:
        c.call("read_namespaced_config_map", "read ConfigMap lab/x", name="x")
    assert fragment in str(err.value) and "read ConfigMap lab/x" in str(err.value) and err.value.status == status
    assert clock.slept == [] and c.api_retries == 0


def test_a_certificate_that_does_not_verify_fails_at_once():
    c, clock = client([ssl.SSLCertVerificationError(1, "certificate verify failed")])
    with pytest.raises(kc.KubeError, match="failed TLS verification while trying to list nodes"):
        c.call("list_node", "list nodes")
    assert clock.slept == []


def test_missing_and_conflict_when_asked_for():
    c, _ = client([(404, {}), (409, {})])
    assert c.call("read_namespaced_config_map", "read", missing_ok=True, name="x") is None
    assert c.call("create_namespaced_lease", "take", conflict_ok=True, body={}) == "conflict"


# ---------------------------------------------------------------- transport selection and in-cluster discovery
@pytest.fixture(name="pod")
def pod_fixture(tmp_path):
    """A ServiceAccount mount (token, ca.crt, namespace) and the Service env of a pod."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("token-one\n")
    (sa / "namespace").write_text("ai-lab")
    return sa, {"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def test_in_cluster_is_chosen_without_a_kubeconfig(pod):
    sa, env = pod
    http = kc.transport({}, environ=env, sa_dir=str(sa))
    assert isinstance(http, kc.InClusterTransport) and http.kind == "in-cluster"
    assert http.host == "https://10.43.0.1:443" and http.namespace == "ai-lab" and http.token() == "token-one"
    assert kc.Client(http, ROUTES).namespace == "ai-lab"
    assert kc.Client(http, ROUTES, namespace="other").namespace == "other"


def test_in_cluster_ipv6_service_host(pod):
    sa, env = pod
    http = kc.transport({}, environ=dict(env, KUBERNETES_SERVICE_HOST="fd00::1"), sa_dir=str(sa))
    assert http.host == "https://[fd00::1]:443"


def test_in_cluster_token_is_re_read_when_rotated(pod):
    sa, env = pod
    http = kc.InClusterTransport(env, str(sa))
    assert http.token() == "token-one"
    # the kubelet writes a new file and swaps the ..data symlink: a new inode
    (sa / "token.new").write_text("token-two-rotated")
    os.replace(sa / "token.new", sa / "token")
    assert http.token() == "token-two-rotated"
    os.unlink(sa / "token")  # mid-swap: the last token is kept
    assert http.token() == "token-two-rotated"


@pytest.mark.parametrize("params,env_drop,has_token", [
    ({"kubeconfig": "KCFG"}, None, True),      # an explicit kubeconfig wins over the pod's account
    ({"host": "https://x:6443", "api_key": "k"}, None, True),
    ({}, "KUBERNETES_SERVICE_HOST", True),     # not in a pod
    ({}, None, False),                         # automountServiceAccountToken: false
])
def test_in_cluster_is_not_chosen(pod, tmp_path, params, env_drop, has_token):
    sa, env = pod
    if not has_token:
        os.unlink(sa / "token")
    if env_drop:
        env.pop(env_drop)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    params = dict((k, str(kubeconfig) if v == "KCFG" else v) for k, v in params.items())
    env = dict(env, KUBECONFIG=str(kubeconfig))
    if "host" in params:
        pytest.importorskip("kubernetes")
    http = kc.transport(params, environ=env, sa_dir=str(sa))
    assert not isinstance(http, kc.InClusterTransport)
    assert http.kind == ("library" if "host" in params else "kubeconfig")


def test_missing_kubeconfig_is_worded_for_the_operator(tmp_path):
    with pytest.raises(kc.KubeError, match="does not exist. Pass kubeconfig="):
        kc.transport({"kubeconfig": str(tmp_path / "nope")}, environ={}, sa_dir=str(tmp_path))


def test_plain_kubeconfig_needs_no_kubernetes_library(tmp_path):
    """A process that reaches the API with a plain kubeconfig never imports the kubernetes library."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    code = ("import sys\n"
            "from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc, gpu_swap, lab_secrets\n"
            "c = kc.connect({'kubeconfig': %r}, {}, retry_timeout=0)\n"
            "assert c.http.kind == 'kubeconfig'\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'ansible')))\n" % str(kubeconfig))
    out = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.stdout.strip() == "[]", out.stdout  # neither the kubernetes library nor Ansible
