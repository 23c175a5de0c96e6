# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The component registry of the deploy playbook: each fact about a component in ONE place.

``REGISTRY`` lists every component (docs/deploy.md, "The component registry"): its on/off default,
its tag, whether it is a GPU backend, its Services and their ports (each port with the inventory
variable that overrides it), its tailnet routes, the network flows it needs, the backup-tier
variables of its volumes and its scrape endpoints. ``resolve()`` applies the inventory's overrides
and returns the resolved view every consumer reads (the lab role publishes it as ``lab.registry``;
lookup ``ailab.gpu_lab.lab_components`` returns it to a role used on its own). Nothing else in the
collection writes a port number of a lab component.

Plain Python (stdlib only): the lookup plugin, the deploy filters and the unit tests import it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

# Peers outside the lab namespace that flows name (the network_policy role holds their selectors).
PEERS = ("traefik", "prometheus", "internet", "dns", "apiserver")

# Each Service: name, namespace ("lab" = the lab namespace, "monitoring" = gpu_lab_monitoring_namespace),
# ports {port name: {"port": number, "var": inventory variable that overrides it, or None when a chart fixes it}}.
# Flows: {"from": component or peer, "port": "<service>.<port name>"}, one per caller of the component and port:
# each flow is written once, on the side called; a component's egress is derived (resolve(): "egress").
# "calls" lists only the peers outside the cluster a component calls ("internet").
# Routes: {"path", "service", "port"} (the ingress role's Ingress backends). Scrape: {"service", "port", "path"}
# (a ServiceMonitor endpoint). Volumes: the variable holding each PVC's backup tier (the role's default).
REGISTRY = {
    "gpu_runtime": {"default": True, "tags": ["gpu_runtime"], "gpu_backend": False, "services": {}},
    "qdrant": {
        "default": True, "tags": ["qdrant"], "gpu_backend": False,
        # Qdrant listens on the image's ports (no override: its config would need QDRANT__SERVICE__*_PORT too)
        "services": {"qdrant": {"ports": {"http": {"port": 6333, "var": None},
                                          "grpc": {"port": 6334, "var": None}}}},
        "flows": [{"from": "open_webui", "port": "qdrant.http"}, {"from": "prometheus", "port": "qdrant.http"},
                  {"from": "llama_stack", "port": "qdrant.http"}],
        "scrape": [{"service": "qdrant", "port": "http", "path": "/metrics"}],
        "volumes": ["qdrant_backup_tier"],
    },
    # Neo4j (community edition), the graph store. No lab component calls it: the user's applications do (the
    # neo4j role's neo4j_clients, opened by roles/network_policy), and the schema step from the GPU host like Qdrant's
    # collections (docs/neo4j.md). No route (its Browser needs Bolt beside it: kubectl port-forward), no scrape (the
    # community edition has no metrics endpoint).
    "neo4j": {
        "default": False, "tags": ["neo4j"], "gpu_backend": False,
        "services": {"neo4j": {"ports": {"http": {"port": 7474, "var": "neo4j_http_port"},
                                         "bolt": {"port": 7687, "var": "neo4j_bolt_port"}}}},
        "volumes": ["neo4j_backup_tier"],
    },
    "litellm": {
        "default": True, "tags": ["litellm"], "gpu_backend": False,
        "services": {"litellm": {"ports": {"http": {"port": 4000, "var": "litellm_port"}}},
                     # postgres listens on the image's port (no override: the container would need PGPORT too)
                     "litellm-postgres": {"ports": {"postgres": {"port": 5432, "var": None}}}},
        "routes": [{"path": "/v1", "service": "litellm", "port": "http"}],
        "flows": [{"from": "traefik", "port": "litellm.http"}, {"from": "open_webui", "port": "litellm.http"},
                  {"from": "prometheus", "port": "litellm.http"}, {"from": "litellm", "port": "litellm-postgres.postgres"},
                  {"from": "llama_stack", "port": "litellm.http"}],
        "calls": ["internet"],
        "scrape": [{"service": "litellm", "port": "http", "path": "/metrics/"}],
        "volumes": ["litellm_postgres_backup_tier"],
    },
    "ollama": {
        "default": True, "tags": ["ollama"], "gpu_backend": True,
        # ollama: the GPU backend (chat models); ollama-embed: a second Ollama on CPU for the catalog's embedding
        # models (never swapped, so embeddings work whoever owns the GPU; docs/deploy.md "Embeddings on CPU").
        "services": {"ollama": {"ports": {"http": {"port": 11434, "var": "ollama_port"}}},
                     "ollama-embed": {"ports": {"http": {"port": 11434, "var": "ollama_embed_port"}}}},
        "flows": [{"from": "litellm", "port": "ollama.http"}, {"from": "litellm", "port": "ollama-embed.http"},
                  {"from": "gpu_demand", "port": "ollama.http"}],
        "calls": ["internet"],
        "volumes": ["ollama_backup_tier", "ollama_embed_backup_tier"],
    },
    "vllm": {
        "default": True, "tags": ["vllm"], "gpu_backend": True,
        "services": {"vllm": {"ports": {"http": {"port": 8000, "var": "vllm_port"}}}},
        "flows": [{"from": "litellm", "port": "vllm.http"}, {"from": "prometheus", "port": "vllm.http"},
                  {"from": "gpu_demand", "port": "vllm.http"}],
        "scrape": [{"service": "vllm", "port": "http", "path": "/metrics"}],
        "volumes": ["vllm_models_backup_tier"],
    },
    # The on-demand swap service (docs/gpu_demand.md): asked by the gateway's hook, it calls the GPU backends (Ollama's
    # unload, the 1-token check, vLLM's sleep/wake) and the API server (the swap itself).
    "gpu_demand": {
        "default": False, "tags": ["gpu_demand"], "gpu_backend": False,
        "services": {"gpu-demand": {"ports": {"http": {"port": 8090, "var": "gpu_demand_port"}}}},
        "flows": [{"from": "litellm", "port": "gpu-demand.http"}, {"from": "prometheus", "port": "gpu-demand.http"}],
        "calls": ["apiserver"],
        "scrape": [{"service": "gpu-demand", "port": "http", "path": "/metrics"}],
    },
    # SearXNG (docs/network.md, roles/searxng): Open WebUI's web search; the metasearch engine queries the search
    # engines on the internet, so it calls the peer "internet" (443) and Open WebUI itself never does.
    "searxng": {
        "default": False, "tags": ["searxng"], "gpu_backend": False,
        "services": {"searxng": {"ports": {"http": {"port": 8080, "var": "searxng_port"}}}},
        "flows": [{"from": "open_webui", "port": "searxng.http"}],
        "calls": ["internet"],
    },
    "open_webui": {
        "default": True, "tags": ["open_webui"], "gpu_backend": False,
        "services": {"open-webui": {"ports": {"http": {"port": 8080, "var": "open_webui_port"}}}},
        "routes": [{"path": "/", "service": "open-webui", "port": "http"}],
        "flows": [{"from": "traefik", "port": "open-webui.http"}],
        "volumes": ["open_webui_backup_tier"],
    },
    # Llama Stack (docs/deploy.md "Llama Stack"): inference through the gateway, vector IO on Qdrant. No route and no
    # caller in the cluster: its API has no authentication of its own (kubectl port-forward reaches it); no /metrics.
    "llama_stack": {
        "default": False, "tags": ["llama_stack"], "gpu_backend": False,
        "services": {"llama-stack": {"ports": {"http": {"port": 8321, "var": "llama_stack_port"}}}},
        "volumes": ["llama_stack_backup_tier"],
    },
    "observability": {
        "default": True, "tags": ["monitoring", "observability"], "gpu_backend": False, "role": "monitoring",
        "services": {
            # kube-prometheus-stack's own Services: the chart fixes these ports.
            "grafana": {"name": "kube-prometheus-stack-grafana", "namespace": "monitoring",
                        "ports": {"http": {"port": 80, "var": None}}},
            "prometheus": {"name": "kube-prometheus-stack-prometheus", "namespace": "monitoring",
                           "ports": {"http": {"port": 9090, "var": None}}},
        },
        "routes": [{"path": "/grafana", "service": "grafana", "port": "http"},
                   {"path": "/prometheus", "service": "prometheus", "port": "http"}],
        "volumes": ["monitoring_backup_tier"],
    },
    "ingress": {"default": True, "tags": ["ingress"], "gpu_backend": False, "services": {}},
    "network_policy": {"default": True, "tags": ["network_policy"], "gpu_backend": False, "services": {}},
    "tracing": {
        "default": False, "tags": ["phoenix", "tracing"], "gpu_backend": False, "role": "phoenix",
        "services": {"phoenix": {"ports": {"http": {"port": 6006, "var": "phoenix_port"},
                                           "otlp-grpc": {"port": 4317, "var": "phoenix_grpc_port"},
                                           "metrics": {"port": 9090, "var": "phoenix_metrics_port"}}}},
        "routes": [{"path": "/phoenix", "service": "phoenix", "port": "http"}],
        "flows": [{"from": "litellm", "port": "phoenix.otlp-grpc"}, {"from": "litellm", "port": "phoenix.http"},
                  {"from": "open_webui", "port": "phoenix.otlp-grpc"}, {"from": "open_webui", "port": "phoenix.http"},
                  {"from": "traefik", "port": "phoenix.http"}, {"from": "prometheus", "port": "phoenix.metrics"}],
        "scrape": [{"service": "phoenix", "port": "metrics", "path": "/metrics"}],
        "volumes": ["phoenix_backup_tier"],
    },
}


def defaults():
    """Component -> its on/off default (what gpu_lab_components overrides)."""
    return dict((name, bool(entry["default"])) for name, entry in REGISTRY.items())


def port_variables():
    """The inventory variables that override a port, each -> (component, service, port name)."""
    out = {}
    for component, entry in REGISTRY.items():
        for service, spec in entry.get("services", {}).items():
            for port_name, declared in spec["ports"].items():
                if declared["var"]:
                    out[declared["var"]] = (component, service, port_name)
    return out


def _port_number(value):
    try:
        number = None if isinstance(value, bool) else int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 and str(number) == str(value).strip() else None


def registry_errors(overrides, registry=None):
    """Problems of the port overrides (variable -> value; None or "" = not set) and of the registry itself:
    unknown variables, port numbers outside 1-65535, two ports of one Service on one number, a flow or a call
    naming a Service port or component that does not exist. A list of sentences, [] when fine."""
    registry = REGISTRY if registry is None else registry
    errors = []
    known = port_variables() if registry is REGISTRY else {}
    for var, value in sorted((overrides or {}).items()):
        if value in (None, ""):
            continue
        if registry is REGISTRY and var not in known:
            errors.append("%s: not a port of the component registry; ports: %s" % (var, ", ".join(sorted(known))))
        elif _port_number(value) is None:
            errors.append("%s: %r is not a port number 1-65535" % (var, value))
    view = resolve(overrides, registry=registry, strict=False)
    for component, entry in sorted(view["components"].items()):
        for service, spec in sorted(entry["services"].items()):
            seen = {}
            for port_name, number in sorted(spec["ports"].items()):
                if number in seen:
                    errors.append("%s: Service %s has ports %s and %s both on %s; give each its own number (%s)" % (
                        component, spec["name"], seen[number], port_name, number,
                        ", ".join(registry[component]["services"][service]["ports"][p]["var"] or p
                                  for p in (seen[number], port_name))))
                seen[number] = port_name
        refs = [f["port"] for f in entry["flows"]] + [r["service"] + "." + r["port"] for r in entry["routes"]]
        refs += [s["service"] + "." + s["port"] for s in entry["scrape"]]
        for ref in refs:
            service, _sep, port_name = ref.partition(".")
            if port_name not in entry["services"].get(service, {}).get("ports", {}):
                errors.append("%s: '%s' names no port of the component's Services" % (component, ref))
        for flow in entry["flows"]:
            if flow["from"] not in registry and flow["from"] not in PEERS:
                errors.append("%s: flow from '%s', which is neither a component nor a peer (%s)"
                              % (component, flow["from"], ", ".join(PEERS)))
        for call in registry[component].get("calls", []):
            if call not in PEERS:
                errors.append("%s: calls '%s', which is not a peer (%s); a call to a component is a flow on its side"
                              % (component, call, ", ".join(PEERS)))
    return errors


def resolve(overrides=None, enabled=None, namespace="ai-lab", monitoring_namespace="monitoring", registry=None,
            strict=True):
    """The resolved view: the registry with the overrides applied, every port an int, each Service with its
    namespace, in-cluster URLs per port, and whether each component is enabled (``enabled``: the list of enabled
    components; None = the registry's defaults). Raises ValueError on a bad override when ``strict``.

    Returns {namespace, monitoring_namespace, defaults: {component: on/off}, ports: {variable: number}, components: {name: {enabled, tags,
    gpu_backend, role, services: {service: {name, namespace, ports: {port name: number}, urls: {port name: url}}},
    routes, flows, calls, scrape, volumes, egress: [{to, service, port, number}] (the flows of other components
    whose caller is this one)}}}."""
    registry = REGISTRY if registry is None else registry
    overrides = dict(overrides or {})
    if enabled is None:
        enabled = [name for name, entry in registry.items() if entry["default"]]
    namespaces = {"lab": namespace, "monitoring": monitoring_namespace}
    view = {"namespace": namespace, "monitoring_namespace": monitoring_namespace, "ports": {}, "components": {},
            "defaults": defaults() if registry is REGISTRY else {}}
    for component, entry in registry.items():
        services = {}
        for service, spec in entry.get("services", {}).items():
            svc_ns = namespaces[spec.get("namespace", "lab")]
            ports, urls = {}, {}
            for port_name, declared in spec["ports"].items():
                var = declared["var"]
                value = overrides.get(var) if var else None
                if value in (None, ""):
                    number = int(declared["port"])
                else:
                    number = _port_number(value)
                    if number is None:
                        if strict:
                            raise ValueError("%s: %r is not a port number 1-65535" % (var, value))
                        number = value
                ports[port_name] = number
                urls[port_name] = "http://%s.%s.svc.cluster.local:%s" % (spec.get("name", service), svc_ns, number)
                if var:
                    view["ports"][var] = number
            services[service] = {"name": spec.get("name", service), "namespace": svc_ns, "ports": ports, "urls": urls}
        view["components"][component] = {
            "enabled": component in enabled, "tags": list(entry["tags"]), "gpu_backend": bool(entry["gpu_backend"]),
            "role": entry.get("role", component), "services": services,
            "routes": copy.deepcopy(entry.get("routes", [])), "flows": copy.deepcopy(entry.get("flows", [])),
            "calls": list(entry.get("calls", [])), "scrape": copy.deepcopy(entry.get("scrape", [])),
            "volumes": list(entry.get("volumes", [])), "egress": []}
    for component, entry in view["components"].items():
        for flow in entry["flows"]:
            if flow["from"] in view["components"]:
                service, _sep, port_name = flow["port"].partition(".")
                view["components"][flow["from"]]["egress"].append(
                    {"to": component, "service": service, "port": port_name,
                     "number": entry["services"].get(service, {}).get("ports", {}).get(port_name)})
    return view


def port(view, component, service, port_name="http"):
    """The resolved number of ``service``'s port ``port_name`` of ``component``."""
    return view["components"][component]["services"][service]["ports"][port_name]


def gateway_api_bases(view):
    """The gateway's in-cluster api_base of each self-hosted server: {vllm_api_base, ollama_api_base,
    ollama_embed_api_base} (vLLM's OpenAI API under /v1; Ollama's native API at the root, as LiteLLM's ollama
    provider calls it; the CPU Ollama of the embedding models likewise)."""
    ollama = view["components"]["ollama"]["services"]
    return {"vllm_api_base": view["components"]["vllm"]["services"]["vllm"]["urls"]["http"] + "/v1",
            "ollama_api_base": ollama["ollama"]["urls"]["http"],
            "ollama_embed_api_base": ollama["ollama-embed"]["urls"]["http"]}
