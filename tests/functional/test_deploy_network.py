"""What the deploy exposes and what may talk to what, proved on everything the deploy renders.

REAL: ansible-playbook renders the whole deploy playbook for the example lab (render mode, every
component on, the optional tracing (Phoenix) and LiteLLM's Postgres too); cyclonus's NetworkPolicy engine (github.com/mattfenwick/
cyclonus v0.5.6 pkg/matcher, driven by tools/netpol-matrix, built by `make setup`) computes the
connectivity matrix of the rendered NetworkPolicies. The expected flows are parsed from the table
in docs/network.md, so the docs and the policies cannot drift apart.
MODELLED, not running: the pods (their labels and container ports are taken from the rendered
workloads) and the peers outside the lab namespace (Traefik, Prometheus, CoreDNS, an internet
address, a tailnet address, a pod of another namespace), which exist here only as labels and
addresses given to the analyser; no packet is sent. What the charts (kube-prometheus-stack, DCGM,
Traefik) create from their own defaults is checked through the values we give them, not rendered.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.support.deploy_render import render_example_lab

ANALYSER = Path(REPO) / ".cache" / "tools" / "bin" / "netpol-matrix"
EXAMPLE_NET = yaml.safe_load((Path(REPO) / "inventory" / "example" / "group_vars" / "gpu_lab" / "network.yml").read_text())
TAILNET_IP = EXAMPLE_NET["gpu_lab_tailnet_ip"]
TAILNET_NAME = "gpu-box.tail1234.ts.net"
LAB = "ai-lab"


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    objs = render_example_lab(tmp_path_factory.mktemp("deploy") / "rendered")
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "HelmChart", "HelmChartConfig", "Ingress", "NetworkPolicy"} <= kinds, kinds
    return objs


# -- public exposure -----------------------------------------------------------------------------------

def _pod_spec(obj):
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    return spec.get("template", {}).get("spec")


def _walk(value, path=()):
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _walk(item, path + (str(key),))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, path + (str(i),))


def public_exposures(objs, tailnet_ip):
    """Every way an object (or the values of a chart it installs) listens beyond the cluster network."""
    problems = []
    for obj in objs:
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if obj["kind"] == "Service":
            if obj["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort"):
                problems.append(f"{where}: type {obj['spec']['type']}")
            if obj["spec"].get("externalIPs"):
                problems.append(f"{where}: externalIPs")
        pod = _pod_spec(obj) if obj["kind"] in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                                                 "Job", "CronJob") else None
        if pod:
            if pod.get("hostNetwork"):
                problems.append(f"{where}: hostNetwork")
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for port in c.get("ports", []):
                    if "hostPort" in port:
                        problems.append(f"{where}: container {c['name']} hostPort {port['hostPort']}")
        if obj["kind"] in ("HelmChart", "HelmChartConfig"):
            values = yaml.safe_load(obj["spec"].get("valuesContent") or "") or {}
            for path, node in _walk(values):
                dotted = ".".join(path) or "(top)"
                if node.get("hostNetwork") is True:
                    problems.append(f"{where} values {dotted}: hostNetwork true")
                if node.get("type") in ("LoadBalancer", "NodePort"):
                    problems.append(f"{where} values {dotted}: type {node['type']}")
                if "hostPort" in node and node.get("hostIP") != tailnet_ip:
                    problems.append(f"{where} values {dotted}: hostPort {node['hostPort']} on "
                                    f"{node.get('hostIP', 'every address')}, not the tailnet address")
    return problems


def test_nothing_the_deploy_renders_exposes_a_public_address(objects):
    assert public_exposures(objects, TAILNET_IP) == []


def test_the_only_host_ports_are_traefiks_tailnet_entry_points(objects):
    traefik = [o for o in objects if o["kind"] == "HelmChartConfig" and o["metadata"]["name"] == "traefik"]
    assert len(traefik) == 1
    values = yaml.safe_load(traefik[0]["spec"]["valuesContent"])
    assert values["service"]["type"] == "ClusterIP"        # k3s's default is LoadBalancer (ServiceLB)
    host_ports = [(".".join(p), n["hostPort"], n["hostIP"]) for o in objects
                  if o["kind"] in ("HelmChart", "HelmChartConfig")
                  for p, n in _walk(yaml.safe_load(o["spec"].get("valuesContent") or "") or {}) if "hostPort" in n]
    assert sorted(host_ports) == [("ports.web", 80, TAILNET_IP), ("ports.websecure", 443, TAILNET_IP)]
    kps = next(o for o in objects if o["kind"] == "HelmChart" and o["metadata"]["name"] == "kube-prometheus-stack")
    # The node-exporter chart defaults to hostNetwork: true; it must be turned off explicitly.
    assert yaml.safe_load(kps["spec"]["valuesContent"])["prometheus-node-exporter"]["hostNetwork"] is False
    # and provision keeps k3s's ServiceLB off (it would bind every interface).
    provision = yaml.safe_load((Path(REPO) / "roles" / "provision" / "defaults" / "main.yml").read_text())
    assert "servicelb" in provision["provision_k3s_disable"]


def test_the_exposure_check_catches_what_it_looks_for(objects):
    """The check can fail: a LoadBalancer, a NodePort, a public hostPort and hostNetwork are each reported."""
    lb = {"kind": "Service", "metadata": {"name": "grafana", "namespace": "monitoring"},
          "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    chart = {"kind": "HelmChartConfig", "metadata": {"name": "traefik", "namespace": "kube-system"},
             "spec": {"valuesContent": yaml.safe_dump({"ports": {"websecure": {"hostPort": 443}},
                                                       "grafana": {"service": {"type": "NodePort"}},
                                                       "prometheus-node-exporter": {"hostNetwork": True}})}}
    pod = {"kind": "Deployment", "metadata": {"name": "debug", "namespace": LAB},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}}}
    found = public_exposures([lb, chart, pod], TAILNET_IP)
    assert len(found) == 5, found
    assert any("type LoadBalancer" in f for f in found) and any("type NodePort" in f for f in found)
    assert any("hostPort 443 on every address" in f for f in found) and any("hostNetwork" in f for f in found)
    assert any("Deployment ai-lab/debug: container c hostPort 80" in f for f in found)


def test_every_route_is_on_the_tailnet_name_with_tls(objects):
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    routes = {}
    for ing in ingresses:
        assert ing["spec"]["ingressClassName"] == "traefik"
        assert ing["spec"]["tls"] == [{"hosts": [TAILNET_NAME], "secretName": "tailnet-tls"}], ing["metadata"]
        for rule in ing["spec"]["rules"]:
            assert rule["host"] == TAILNET_NAME
            for path in rule["http"]["paths"]:
                routes[path["path"]] = (ing["metadata"]["namespace"], path["backend"]["service"]["name"])
    assert routes == {"/": (LAB, "open-webui"), "/v1": (LAB, "litellm"), "/phoenix": (LAB, "phoenix"),
                      "/grafana": ("monitoring", "kube-prometheus-stack-grafana")}
    # Grafana knows it lives under /grafana (else its redirects leave the route)
    kps = next(o for o in objects if o["kind"] == "HelmChart" and o["metadata"]["name"] == "kube-prometheus-stack")
    server = yaml.safe_load(kps["spec"]["valuesContent"])["grafana"]["grafana.ini"]["server"]
    assert server == {"root_url": f"https://{TAILNET_NAME}/grafana/", "serve_from_sub_path": True}
    # no TLS key in the rendered tree
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_tracing_sends_litellm_and_open_webui_traces_to_phoenix(objects):
    def env(name):
        dep = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
        return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "litellm-config")
    settings = yaml.safe_load(next(iter(config["data"].values())))["litellm_settings"]
    assert settings["callbacks"] == ["prometheus", "otel", "gpu_demand_hook.handler"]   # the example with gpu_demand on
    assert {k: env("litellm")[k] for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://phoenix:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert env("open-webui")["ENABLE_OTEL"] == "true"
    assert env("open-webui")["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:4317"
    phoenix_pvc = next(o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == "phoenix-data")
    assert phoenix_pvc["metadata"]["labels"]["backup-tier"] == "daily"


# -- network policy ------------------------------------------------------------------------------------

NAMESPACES = {ns: {"kubernetes.io/metadata.name": ns} for ns in (LAB, "kube-system", "monitoring", "default")}
OUTSIDE = [
    {"name": "traefik", "namespace": "kube-system", "labels": {"app.kubernetes.io/name": "traefik"},
     "ports": [{"port": 8000}, {"port": 8443}]},
    {"name": "prometheus", "namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"},
     "ports": [{"port": 9090}]},
    {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"},
     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    {"name": "internet", "ip": "203.0.113.10", "ports": [{"port": 443}, {"port": 80}]},
    {"name": "tailnet-host", "ip": TAILNET_IP, "ports": [{"port": 443}, {"port": 22}]},
    {"name": "other-namespace-pod", "namespace": "default", "labels": {"app": "something"}, "ports": [{"port": 80}]},
    # k3s's API server as a pod's packets reach it (after kube-proxy's DNAT of kubernetes.default:443): the node, 6443
    {"name": "apiserver", "ip": "192.168.1.10", "ports": [{"port": 6443}, {"port": 22}]},
]
# A pod someone starts in the lab namespace by hand: default deny must hold for it too.
STRAY = {"name": "stray", "namespace": LAB, "labels": {"app.kubernetes.io/name": "stray"}, "ports": [{"port": 8080}]}


def lab_pods(objs):
    pods = []
    for obj in objs:
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job") or obj["metadata"].get("namespace") != LAB:
            continue
        template = obj["spec"]["template"]
        ports = [{"port": p["containerPort"], "name": p.get("name", ""), "protocol": p.get("protocol", "TCP")}
                 for c in template["spec"]["containers"] for p in c.get("ports", [])]
        labels = template["metadata"]["labels"]
        pods.append({"name": labels["app.kubernetes.io/name"], "namespace": LAB, "labels": labels, "ports": ports})
    return pods


@pytest.fixture(scope="module", autouse=True)
def analyser_built():
    """tools/netpol-matrix.sh builds the analyser once (a no-op when go.mod/go.sum/main.go are unchanged)."""
    proc = subprocess.run(["bash", str(Path(REPO) / "tools" / "netpol-matrix.sh")], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0 and ANALYSER.exists(), proc.stdout + proc.stderr


def analyse(policies, peers):
    doc = {"policies": policies, "namespaces": NAMESPACES, "peers": peers}
    proc = subprocess.run([str(ANALYSER)], input=json.dumps(doc), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return {(e["from"], e["to"], f"{e['port']}/{e['protocol']}") for e in out["allowed"]}


def documented_flows(enabled: set[str], lab_pod_names: list[str]):
    text = (Path(REPO) / "docs" / "network.md").read_text()
    table = text.split("<!-- flows:", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[1:]
            if line.startswith("|") and not line.startswith("|---")]
    assert rows[0] == ["from", "to", "port", "when"], rows[0]
    flows = set()
    for src, dst, port, when in rows[1:]:
        assert when in ("always", "tracing", "postgres", "gpu_demand", "searxng", "llama_stack"), when
        if when != "always" and when not in enabled:
            continue
        for s in (lab_pod_names if src == "every lab pod" else [src]):
            flows.add((s, dst, port))
    return flows


def test_rendered_policies_allow_exactly_the_documented_flows(objects):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["namespace"] for p in policies} == {LAB}
    pods = lab_pods(objects)
    names = sorted(p["name"] for p in pods)
    assert names == ["gpu-demand", "gpu-image-prepull", "litellm", "litellm-postgres", "llama-stack", "neo4j", "ollama",
                     "ollama-embed", "open-webui", "phoenix", "qdrant", "searxng", "vllm"], names
    peers = pods + [STRAY] + OUTSIDE
    allowed = analyse(policies, peers)
    # Only edges that the lab's policies decide: one end in the lab namespace.
    lab = {p["name"] for p in pods} | {STRAY["name"]}
    allowed = {e for e in allowed if e[0] in lab or e[1] in lab}
    expected = documented_flows({"postgres", "tracing", "gpu_demand", "searxng", "llama_stack"}, names + [STRAY["name"]])
    assert sorted(allowed - expected) == [], "allowed but not in docs/network.md"
    assert sorted(expected - allowed) == [], "in docs/network.md but not allowed"
    # the points the issue names, spelled out
    assert not {e for e in allowed if e[0] == "open-webui" and e[1] in ("ollama", "ollama-embed", "vllm")}
    assert not {e for e in allowed if e[0] == "other-namespace-pod"}
    assert not {e for e in allowed if e[1] == "tailnet-host"}
    assert {e for e in allowed if e[1] == "apiserver"} == {("gpu-demand", "apiserver", "6443/TCP")}
    # web search: only Open WebUI reaches SearXNG; SearXNG reaches the internet on 443 and nothing else (no port 80,
    # no lab pod, not the tailnet, not the API server); Open WebUI itself never reaches the internet
    assert {e for e in allowed if e[1] == "searxng"} == {("open-webui", "searxng", "8080/TCP")}
    assert {e for e in allowed if e[0] == "searxng"} == {("searxng", "internet", "443/TCP"),
                                                         ("searxng", "kube-dns", "53/UDP"), ("searxng", "kube-dns", "53/TCP")}
    internet = {e[0] for e in allowed if e[1] == "internet"}
    assert "open-webui" not in internet and internet == {"searxng", "litellm", "ollama", "ollama-embed"}, internet


def test_the_proof_fails_when_a_policy_is_missing(objects):
    """The proof can fail: without default-deny the analyser reports extra edges; without vLLM's policy,
    default deny leaves the gateway unable to reach vLLM (a missing edge)."""
    pods = lab_pods(objects)
    without_deny = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] != "default-deny"]
    allowed = analyse(without_deny, pods + [STRAY] + OUTSIDE)
    assert ("other-namespace-pod", "stray", "8080/TCP") in allowed and ("internet", "stray", "8080/TCP") in allowed
    without_vllm = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] != "vllm"]
    allowed = analyse(without_vllm, pods + [STRAY] + OUTSIDE)
    assert ("litellm", "vllm", "8000/TCP") not in allowed and ("prometheus", "vllm", "8000/TCP") not in allowed
    assert ("litellm", "ollama", "11434/TCP") in allowed
