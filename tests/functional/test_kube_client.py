"""kube_client, the collection's one Kubernetes client, against the real control plane.

Real: kube-apiserver (TLS, client-certificate and ServiceAccount-token authentication, RBAC, TokenRequest),
etcd, kube_client itself (no Ansible: the in-cluster swap service runs it as it is), and, for the action
group, ansible-playbook with module_defaults and kubernetes.core.k8s_info.
Stand-in: the pod. In-cluster auth reads a temp directory laid out as the kubelet mounts a ServiceAccount
(token, ca.crt, namespace) and KUBERNETES_SERVICE_HOST/PORT pointing at the test apiserver (its serving
certificate names 127.0.0.1, as a k3s one names the Service IP); the token in it is a real one issued by
the apiserver for a real ServiceAccount, and "rotation" is the file replaced as the kubelet does.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import threading
import time

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc

from tests.conftest import run_playbook

ROUTES = {
    "read_namespaced_config_map": ("GET", "/api/v1/namespaces/{namespace}/configmaps/{name}"),
    "create_namespaced_config_map": ("POST", "/api/v1/namespaces/{namespace}/configmaps"),
    "list_node": ("GET", "/api/v1/nodes"),
}


def _account(kube, name, rules):
    """A ServiceAccount bound to ``rules`` in the test namespace; returns a fresh token of it."""
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
                "rules": rules})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": kube.namespace}]})
    return _token(kube, name)


def _token(kube, name):
    from kubernetes import client as k8s  # pylint: disable=import-outside-toplevel
    return k8s.CoreV1Api(kube.client.client).create_namespaced_service_account_token(
        name, kube.namespace, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"expirationSeconds": 3600}}).status.token


CONFIGMAPS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]


def _round_trip(client, namespace):
    """Create a ConfigMap, read it back, and a missing one is None: what every module does."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}, "data": {"k": "v"}}
    client.call("create_namespaced_config_map", "create ConfigMap probe", namespace=namespace, body=body)
    assert client.call("read_namespaced_config_map", "read", namespace=namespace, name="probe")["data"] == {"k": "v"}
    assert client.call("read_namespaced_config_map", "read", missing_ok=True, namespace=namespace, name="gone") is None


def test_kubeconfig_with_a_client_certificate(kube):
    client = kc.connect({"kubeconfig": kube.kubeconfig}, ROUTES, namespace=kube.namespace)
    assert client.http.kind == "kubeconfig"  # the light transport: no kubernetes library
    _round_trip(client, kube.namespace)
    assert any(n["metadata"]["name"] for n in client.call("list_node", "list nodes")["items"])


def test_kubeconfig_with_a_token_and_its_rights(kube, control_plane, tmp_path):
    token = _account(kube, "reader", CONFIGMAPS)
    client = kc.connect({"kubeconfig": kube.write_kubeconfig(str(tmp_path / "token.yaml"), token)}, ROUTES,
                        namespace=kube.namespace)
    assert client.http.kind == "kubeconfig"
    _round_trip(client, kube.namespace)
    with pytest.raises(kc.KubeError) as err:
        client.call("list_node", "list nodes")
    assert err.value.status == 403 and "refused to list nodes (403 Forbidden)" in str(err.value)
    assert f"system:serviceaccount:{kube.namespace}:reader" in str(err.value)
    # The host/api_key/ca_cert overrides go through the kubernetes library's ApiClient: the same answers.
    library = kc.connect({"host": control_plane.server, "api_key": token,
                          "ca_cert": os.path.join(control_plane.pki, "ca.crt")}, ROUTES, namespace=kube.namespace)
    assert library.http.kind == "library"
    assert library.call("read_namespaced_config_map", "read", name="probe")["data"] == {"k": "v"}
    assert library.call("read_namespaced_config_map", "read", missing_ok=True, name="gone") is None
    with pytest.raises(kc.KubeError, match="403 Forbidden"):
        library.call("list_node", "list nodes")


def test_a_kubeconfig_with_the_wrong_ca_fails_at_once(kube, control_plane, tmp_path):
    """TLS verification failing is not waited out as an unreachable API would be."""
    with open(kube.kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    with open(os.path.join(control_plane.pki, "admin.crt"), "rb") as handle:  # a certificate, not the cluster's CA
        config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(handle.read()).decode()
    (tmp_path / "wrong-ca.yaml").write_text(yaml.safe_dump(config))
    client = kc.connect({"kubeconfig": str(tmp_path / "wrong-ca.yaml")}, ROUTES, retry_timeout=60)
    started = time.monotonic()
    with pytest.raises(kc.KubeError, match="failed TLS verification while trying to list nodes"):
        client.call("list_node", "list nodes")
    assert time.monotonic() - started < 10 and client.api_retries == 0


def _pod_mount(kube, control_plane, tmp_path, token):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    shutil.copy(os.path.join(control_plane.pki, "ca.crt"), sa / "ca.crt")
    (sa / "namespace").write_text(kube.namespace)
    host, port = control_plane.server.rsplit("/", 1)[1].rsplit(":", 1)
    return sa, {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


def test_in_cluster_service_account_and_token_rotation(kube, control_plane, tmp_path):
    sa, env = _pod_mount(kube, control_plane, tmp_path, _account(kube, "swap-service", CONFIGMAPS))
    client = kc.connect({}, ROUTES, environ=env, sa_dir=str(sa), retry_timeout=5)
    assert client.http.kind == "in-cluster" and client.namespace == kube.namespace  # from the mounted namespace file
    _round_trip(client, None)
    # A token the apiserver does not know (revoked, or the old one past expiry): 401, not retried.
    (sa / "token.tmp").write_text("not-a-valid-token")
    os.replace(sa / "token.tmp", sa / "token")
    with pytest.raises(kc.KubeError, match="401 Unauthorized"):
        client.call("read_namespaced_config_map", "read", name="probe")
    # The kubelet rotates it: the same client (one process of the service) uses the new token at once.
    (sa / "token.tmp").write_text(_token(kube, "swap-service"))
    os.replace(sa / "token.tmp", sa / "token")
    assert client.call("read_namespaced_config_map", "read", name="probe")["data"] == {"k": "v"}


def test_restarted_apiserver_is_ridden_out(kube, control_plane):
    """kube-apiserver stopped and started again while a client keeps asking: every call succeeds, some retried."""
    client = kc.connect({"kubeconfig": kube.kubeconfig}, ROUTES, namespace=kube.namespace, retry_timeout=120)
    restart = threading.Thread(target=control_plane.restart_apiserver, kwargs={"down_seconds": 2})
    restart.start()
    started = time.monotonic()
    calls = 0
    while restart.is_alive() or calls < 3:
        assert client.call("list_node", "list nodes")["items"]
        calls += 1
        time.sleep(0.2)
    restart.join()
    assert client.api_retries > 0, "no call met the restart"
    assert time.monotonic() - started < 120


def test_action_group_hands_the_connection_to_ours_and_kubernetes_core(kube, tmp_path):
    """module_defaults on group/ailab.gpu_lab.kubernetes reaches gpu_capacity and kubernetes.core.k8s_info."""
    play = tmp_path / "group.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n"
        "  module_defaults:\n    group/ailab.gpu_lab.kubernetes:\n"
        f"      kubeconfig: {kube.kubeconfig}\n"
        "  tasks:\n"
        "    - ailab.gpu_lab.gpu_capacity: {}\n      register: capacity\n"
        "    - kubernetes.core.k8s_info: {kind: Node}\n      register: nodes\n"
        "    - ansible.builtin.assert:\n        that: [capacity.nodes | length > 0, nodes.resources | length > 0]\n")
    # Without the group's defaults both would look for this kubeconfig and fail.
    run_playbook(play, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                 extra_env={"KUBECONFIG": str(tmp_path / "absent")})
