"""Every port of the component registry, changed from the inventory as a user would (-e <port variable>), reaches
every reference in the deploy playbook's render: the Service, the container port (and vLLM's --port), the probes
(named ports that resolve to it), the gateway config's api_base, the NetworkPolicy ports, the ingress backends,
the ServiceMonitor endpoints and the clients' URLs; and every flow of the registry is allowed by the rendered
NetworkPolicies on both sides. REAL ansible-playbook in render mode (no cluster);
before the component registry, vllm_port=8001 left the gateway on :8000 and the NetworkPolicy on 8000."""

import json
from pathlib import Path

import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import components
from tests.conftest import REPO
from tests.functional.test_deploy_playbook import _objects

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
# Each overridable port moved by a distinct amount, so that a reference to the wrong port cannot pass.
DEFAULTS = components.resolve()["ports"]
DEFAULTS_ALL = {"qdrant": components.port(components.resolve(), "qdrant", "qdrant")}   # fixed by the image
MOVED = dict((var, DEFAULTS[var] + 101 + 2 * index) for index, var in enumerate(sorted(DEFAULTS)))


def _container_port(deployment, name):
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return dict((p["name"], p["containerPort"]) for p in container["ports"])[name], container


def _policy_ports(policy, direction):
    return {p["port"] for rule in policy["spec"].get(direction, []) for p in rule.get("ports", [])}


def test_every_registry_port_follows_an_inventory_override(tmp_path, playbook_runner):
    assert set(MOVED) == set(components.port_variables())  # this test moves EACH port of the registry
    render = tmp_path / "rendered"
    playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                    "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=vllm:qwen2.5-7b",
                    "-e", json.dumps(dict(MOVED, gpu_lab_components={"tracing": True, "gpu_demand": True, "neo4j": True,
                                                                     "searxng": True, "llama_stack": True},
                                          neo4j_clients=[{"app.kubernetes.io/name": "my-graph-app"}])))
    objs = _objects(render)
    view = components.resolve(MOVED)
    for var, (component, service, port_name) in components.port_variables().items():
        want = MOVED[var]
        svc = objs[("Service", view["components"][component]["services"][service]["name"])]
        by_name = dict((p["name"], p) for p in svc["spec"]["ports"])
        assert by_name[port_name]["port"] == want, (var, svc["spec"]["ports"])
        target = by_name[port_name]["targetPort"]
        deployment = objs.get(("Deployment", service)) or objs[("StatefulSet", service)]
        number, container = _container_port(deployment, target)
        assert number == want, (var, container["ports"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container and port_name == "http":
                handler = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                # a named port resolves to a container port this loop checks (Neo4j's readiness is its Bolt port)
                named = [p["name"] for p in container["ports"]]
                assert handler["port"] in named + [want], (var, probe, handler)

    vllm = _container_port(objs[("Deployment", "vllm")], "http")[1]
    assert vllm["args"][vllm["args"].index("--port") + 1] == str(MOVED["vllm_port"])

    # the gateway's api_base of each GPU backend
    config = yaml.safe_load((render / "k8s" / "litellm" / "config.yaml").read_text())
    bases = {m["litellm_params"]["model"].split("/")[0]: m["litellm_params"].get("api_base")
             for m in config["model_list"]}
    assert bases["hosted_vllm"] == "http://vllm.ai-lab.svc.cluster.local:%d/v1" % MOVED["vllm_port"]
    assert bases["ollama_chat"] == "http://ollama.ai-lab.svc.cluster.local:%d" % MOVED["ollama_port"]
    # the catalog's embedding model (ollama/<tag>) on the CPU Ollama, whose server listens on the moved port too
    assert bases["ollama"] == "http://ollama-embed.ai-lab.svc.cluster.local:%d" % MOVED["ollama_embed_port"]
    embed = _container_port(objs[("Deployment", "ollama-embed")], "http")[1]
    assert {"name": "OLLAMA_HOST", "value": "0.0.0.0:%d" % MOVED["ollama_embed_port"]} in embed["env"]

    # the NetworkPolicies open the moved ports, and no default one
    policies = dict((name, obj) for (kind, name), obj in objs.items() if kind == "NetworkPolicy")
    assert _policy_ports(policies["vllm"], "ingress") == {MOVED["vllm_port"]}
    assert _policy_ports(policies["ollama"], "ingress") == {MOVED["ollama_port"]}
    assert _policy_ports(policies["ollama-embed"], "ingress") == {MOVED["ollama_embed_port"]}
    assert _policy_ports(policies["open-webui"], "ingress") == {MOVED["open_webui_port"]}
    assert _policy_ports(policies["litellm"], "ingress") == {MOVED["litellm_port"]}
    assert _policy_ports(policies["qdrant"], "ingress") == {DEFAULTS_ALL["qdrant"]}
    phoenix_ports = {MOVED["phoenix_port"], MOVED["phoenix_grpc_port"], MOVED["phoenix_metrics_port"]}
    assert _policy_ports(policies["phoenix"], "ingress") == phoenix_ports
    assert _policy_ports(policies["neo4j"], "ingress") == {MOVED["neo4j_http_port"], MOVED["neo4j_bolt_port"]}
    # Neo4j listens on the moved ports (the image's NEO4J_server_* settings) and advertises the moved Bolt port
    neo4j_env = {e["name"]: e.get("value") for e in _container_port(objs[("StatefulSet", "neo4j")], "bolt")[1]["env"]}
    assert neo4j_env["NEO4J_server_http_listen__address"] == "0.0.0.0:%d" % MOVED["neo4j_http_port"]
    assert neo4j_env["NEO4J_server_bolt_listen__address"] == "0.0.0.0:%d" % MOVED["neo4j_bolt_port"]
    assert neo4j_env["NEO4J_server_bolt_advertised__address"] == "neo4j.ai-lab.svc.cluster.local:%d" % MOVED[
        "neo4j_bolt_port"]
    assert {MOVED["vllm_port"], MOVED["ollama_port"], MOVED["ollama_embed_port"], MOVED["phoenix_grpc_port"]} <= (
        _policy_ports(policies["litellm"], "egress"))
    assert {MOVED["litellm_port"]} <= _policy_ports(policies["open-webui"], "egress")

    # the ingress backends
    for route, var in (("open-webui", "open_webui_port"), ("litellm", "litellm_port"), ("phoenix", "phoenix_port")):
        backend = objs[("Ingress", route)]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["port"] == {"number": MOVED[var]}, (route, backend)

    # each ServiceMonitor endpoint names a port of its Service, which carries the moved number
    monitors = [obj for (kind, _name), obj in objs.items() if kind == "ServiceMonitor"]
    checked = set()
    for monitor in monitors:
        labels = monitor["spec"]["selector"]["matchLabels"]
        services = [o for (kind, _n), o in objs.items() if kind == "Service"
                    and labels.items() <= o["metadata"].get("labels", {}).items()]
        for svc in services:
            names = dict((p["name"], p["port"]) for p in svc["spec"]["ports"])
            for endpoint in monitor["spec"]["endpoints"]:
                assert endpoint["port"] in names, (monitor["metadata"]["name"], endpoint, names)
                checked.add((svc["metadata"]["name"], names[endpoint["port"]]))
    assert {("vllm", MOVED["vllm_port"]), ("litellm", MOVED["litellm_port"]),
            ("phoenix", MOVED["phoenix_metrics_port"])} <= checked

    # the on-demand swap service: the gateway's hook calls it on its moved port, it calls the backends on theirs
    assert _policy_ports(policies["gpu-demand"], "ingress") == {MOVED["gpu_demand_port"]}
    gateway_env = dict((e["name"], e.get("value"))
                       for e in _container_port(objs[("Deployment", "litellm")], "http")[1]["env"])
    assert gateway_env["GPU_DEMAND_URL"] == "http://gpu-demand.ai-lab.svc.cluster.local:%d" % MOVED["gpu_demand_port"]
    demand = json.loads(objs[("ConfigMap", "gpu-demand-config")]["data"]["config.json"])
    assert demand["backends"] == {"vllm": "http://vllm.ai-lab.svc.cluster.local:%d" % MOVED["vllm_port"],
                                  "ollama": "http://ollama.ai-lab.svc.cluster.local:%d" % MOVED["ollama_port"]}
    assert ("gpu-demand", MOVED["gpu_demand_port"]) in checked

    # the clients' URLs
    env = dict((e["name"], e.get("value")) for e in _container_port(objs[("Deployment", "open-webui")], "http")[1]["env"])
    assert env["OPENAI_API_BASE_URL"] == "http://litellm:%d/v1" % MOVED["litellm_port"]
    assert env["PORT"] == str(MOVED["open_webui_port"])   # the image's start.sh listens on $PORT (default 8080)
    assert env["QDRANT_URI"] == "http://qdrant:%d" % DEFAULTS_ALL["qdrant"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:%d" % MOVED["phoenix_grpc_port"]
    # Llama Stack: its server's --port and its run.yaml, the gateway's URL, its policy's egress
    llama = _container_port(objs[("Deployment", "llama-stack")], "http")[1]
    assert llama["args"][llama["args"].index("--port") + 1] == str(MOVED["llama_stack_port"])
    run = yaml.safe_load(objs[("ConfigMap", "llama-stack-config")]["data"]["run.yaml"])
    assert run["server"]["port"] == MOVED["llama_stack_port"]
    env = dict((e["name"], e.get("value")) for e in llama["env"])
    assert env["LAB_GATEWAY_URL"] == "http://litellm:%d/v1" % MOVED["litellm_port"]
    assert _policy_ports(policies["llama-stack"], "egress") == {MOVED["litellm_port"], DEFAULTS_ALL["qdrant"]}

    # every flow of the registry is allowed both ways: by the called pod's policy (ingress from the caller's pod
    # or the peer's namespace, on the resolved port) and by the caller's policy (egress), where it has one
    peers = {"traefik": "kube-system", "prometheus": "monitoring"}
    pod = dict((c, next(iter(e["services"].values()))["name"]) for c, e in view["components"].items() if e["services"])
    for component, entry in view["components"].items():
        for flow in entry["flows"]:
            service, _sep, port_name = flow["port"].partition(".")
            if ("Service", service) not in objs:   # e.g. litellm-postgres when the example lab has no Postgres
                continue
            number = entry["services"][service]["ports"][port_name]
            source = ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peers[flow["from"]]}}}
                      if flow["from"] in peers else {"podSelector": {"matchLabels": {"app.kubernetes.io/name":
                                                                                     pod[flow["from"]]}}})
            admitted = [rule for rule in policies[service]["spec"]["ingress"]
                        if {"protocol": "TCP", "port": number} in rule["ports"]
                        and any(source.items() <= peer.items() for peer in rule["from"])]
            assert admitted, (component, flow, policies[service]["spec"]["ingress"])
            caller = policies.get(pod.get(flow["from"], ""), {"spec": {}})["spec"]
            if "Egress" in caller.get("policyTypes", []):
                assert any({"protocol": "TCP", "port": number} in rule["ports"]
                           and {"podSelector": {"matchLabels": {"app.kubernetes.io/name": service}}} in rule["to"]
                           for rule in caller["egress"]), (component, flow, caller["egress"])

    # SearXNG: Open WebUI's web search and the policies follow its moved port
    assert _policy_ports(policies["searxng"], "ingress") == {MOVED["searxng_port"]}
    assert {MOVED["searxng_port"]} <= _policy_ports(policies["open-webui"], "egress")
    webui_env = dict((e["name"], e.get("value"))
                     for e in _container_port(objs[("Deployment", "open-webui")], "http")[1]["env"])
    assert webui_env["SEARXNG_QUERY_URL"] == "http://searxng:%d/search?q=<query>" % MOVED["searxng_port"]
