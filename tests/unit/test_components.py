"""The component registry (plugins/module_utils/components.py): the resolved view follows every port override,
the gateway's api_base of each GPU backend and the catalog's default come from it, and the early check's
registry rule finds every problem at once. Plain Python, no Ansible."""

import os

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog, components
from tests.conftest import REPO

SHA = "0" * 40
PORTS = components.port_variables()


def test_the_registry_is_consistent_and_lists_the_deploy_components():
    assert components.registry_errors({}) == []
    assert components.registry_errors({"qdrant_http_port": 6400}) == [
        "qdrant_http_port: not a port of the component registry; ports: gpu_demand_port, litellm_port, llama_stack_port, "
        "neo4j_bolt_port, neo4j_http_port, ollama_embed_port, ollama_port, open_webui_port, phoenix_grpc_port, "
        "phoenix_metrics_port, phoenix_port, searxng_port, vllm_port"]
    assert list(components.defaults()) == ["gpu_runtime", "qdrant", "neo4j", "litellm", "ollama", "vllm", "gpu_demand",
                                           "searxng", "open_webui", "llama_stack", "observability", "ingress",
                                           "network_policy", "tracing"]
    assert [c for c, on in components.defaults().items() if not on] == ["neo4j", "gpu_demand", "searxng", "llama_stack",
                                                                        "tracing"]
    assert sorted(PORTS) == ["gpu_demand_port", "litellm_port", "llama_stack_port", "neo4j_bolt_port", "neo4j_http_port",
                             "ollama_embed_port", "ollama_port", "open_webui_port", "phoenix_grpc_port",
                             "phoenix_metrics_port", "phoenix_port", "searxng_port", "vllm_port"]


@pytest.mark.parametrize("var", sorted(PORTS))
def test_each_port_override_reaches_its_service_and_url(var):
    component, service, port_name = PORTS[var]
    default = components.resolve()["components"][component]["services"][service]["ports"][port_name]
    view = components.resolve({var: str(default + 17)}, namespace="lab2")
    svc = view["components"][component]["services"][service]
    assert svc["ports"][port_name] == default + 17 == view["ports"][var]
    assert svc["urls"][port_name] == "http://%s.lab2.svc.cluster.local:%d" % (svc["name"], default + 17)
    others = dict((v, p) for v, p in components.resolve()["ports"].items() if v != var)
    assert dict((v, p) for v, p in view["ports"].items() if v != var) == others


def test_gateway_api_bases_follow_the_backend_ports_and_the_catalog_default_is_the_registry():
    view = components.resolve({"vllm_port": 8001, "ollama_port": "11435", "ollama_embed_port": 11500}, namespace="x")
    assert components.gateway_api_bases(view) == {"vllm_api_base": "http://vllm.x.svc.cluster.local:8001/v1",
                                                  "ollama_api_base": "http://ollama.x.svc.cluster.local:11435",
                                                  "ollama_embed_api_base": "http://ollama-embed.x.svc.cluster.local:11500"}
    models = [{"name": "q", "backend": "vllm", "source": "Qwen/Q", "revision": SHA},
              {"name": "o", "backend": "ollama", "source": "llama3.1:8b"},
              {"name": "e", "backend": "ollama", "source": "nomic-embed-text", "mode": "embedding"},
              {"name": "own", "backend": "vllm", "source": "a/b", "revision": SHA, "api_base": "http://box:9000/v1"},
              {"name": "own-e", "backend": "ollama", "source": "bge-m3", "mode": "embedding", "api_base": "http://b:1"}]
    bases = [m["litellm_params"]["api_base"] for m in catalog.litellm_model_list(models, namespace="x",
                                                                                 **components.gateway_api_bases(view))]
    # chat models on the GPU Ollama, embedding models on the CPU one; the catalog entry's own api_base still wins
    assert bases == ["http://vllm.x.svc.cluster.local:8001/v1", "http://ollama.x.svc.cluster.local:11435",
                     "http://ollama-embed.x.svc.cluster.local:11500", "http://box:9000/v1", "http://b:1"]
    default = components.gateway_api_bases(components.resolve(namespace="x"))
    assert [m["litellm_params"]["api_base"] for m in catalog.litellm_model_list(models[:3], namespace="x")] == [
        default["vllm_api_base"], default["ollama_api_base"], default["ollama_embed_api_base"]]


def test_embedding_models_of_ollama_are_served_by_the_cpu_ollama_which_the_swap_does_not_scale():
    """Issue 18: an embedding request never needs the GPU. The registry declares the CPU Ollama as a Service of the
    ollama component that the gateway calls; the catalog sends every Ollama embedding model there (api_base and
    pulls read the same rule), chat models to the GPU Ollama."""
    ollama = components.REGISTRY["ollama"]
    assert set(ollama["services"]) == {"ollama", "ollama-embed"}
    assert {"from": "litellm", "port": "ollama-embed.http"} in ollama["flows"]
    assert "ollama_embed_backup_tier" in ollama["volumes"]
    chat = {"name": "c", "backend": "ollama", "source": "llama3.1:8b"}
    embed = dict(chat, source="nomic-embed-text", mode="embedding")
    assert [catalog.ollama_service(e) for e in catalog.validate_catalog([chat, dict(embed, name="e")])] == [
        "ollama", "ollama-embed"]
    assert catalog.ollama_service({"name": "q", "backend": "vllm", "mode": "embedding"}) is None
    # the swap's account may change only the GPU backends' Deployments (its RBAC, derived from its requests): never
    # the CPU Ollama's
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap
    _cluster, lab_rules = gpu_swap.rbac_rules({"ollama": "ollama", "vllm": "vllm"}, "litellm-env")
    writes = [r for r in lab_rules if r["apiGroups"] == ["apps"] and set(r["verbs"]) - {"get", "list", "watch"}]
    assert writes and all(r["resourceNames"] == ["ollama", "vllm"] for r in writes), writes


def test_registry_errors_reports_every_problem():
    errors = components.registry_errors({"vllm_port": 0, "ollama_port": "x", "phoenix_port": 4317,
                                         "phoenix_grpc_port": "4317", "nope_port": 1, "litellm_port": None})
    assert len(errors) == 4, errors
    assert "vllm_port: 0 is not a port number 1-65535" in errors
    assert any(e.startswith("nope_port: not a port of the component registry") for e in errors)
    assert any("Service phoenix has ports http and otlp-grpc both on 4317" in e or
               "Service phoenix has ports otlp-grpc and http both on 4317" in e for e in errors), errors
    with pytest.raises(ValueError, match="ollama_port"):
        components.resolve({"ollama_port": "x"})


def test_registry_errors_finds_dangling_references_in_a_registry():
    broken = {"a": {"default": True, "tags": ["a"], "gpu_backend": False,
                    "services": {"a": {"ports": {"http": {"port": 1, "var": None}}}},
                    "flows": [{"from": "ghost", "port": "a.http"}, {"from": "a", "port": "a.grpc"}],
                    "calls": ["b"], "routes": [{"path": "/", "service": "c", "port": "http"}]}}
    errors = components.registry_errors({}, registry=broken)
    assert errors == ["a: 'a.grpc' names no port of the component's Services",
                      "a: 'c.http' names no port of the component's Services",
                      "a: flow from 'ghost', which is neither a component nor a peer (traefik, prometheus, internet, dns, "
                      "apiserver)",
                      "a: calls 'b', which is not a peer (traefik, prometheus, internet, dns, apiserver); a call to a "
                      "component is a "
                      "flow on its side"]


def test_egress_is_derived_from_the_flows_of_the_components_called():
    view = components.resolve({"vllm_port": 8001})
    egress = [(e["to"], e["service"], e["port"], e["number"]) for e in view["components"]["litellm"]["egress"]]
    assert egress == [("litellm", "litellm-postgres", "postgres", 5432), ("ollama", "ollama", "http", 11434),
                      ("ollama", "ollama-embed", "http", 11434),
                      ("vllm", "vllm", "http", 8001), ("gpu_demand", "gpu-demand", "http", 8090),
                      ("tracing", "phoenix", "otlp-grpc", 4317),
                      ("tracing", "phoenix", "http", 6006)]
    assert [(e["to"], e["number"]) for e in view["components"]["open_webui"]["egress"]] == [
        ("qdrant", 6333), ("litellm", 4000), ("searxng", 8080), ("tracing", 4317), ("tracing", 6006)]
    # SearXNG: called by Open WebUI only, and the internet is all it calls (docs/network.md)
    assert [f["from"] for f in view["components"]["searxng"]["flows"]] == ["open_webui"]
    assert view["components"]["searxng"]["calls"] == ["internet"] and view["components"]["searxng"]["egress"] == []
    assert view["components"]["vllm"]["egress"] == [] and view["components"]["vllm"]["calls"] == []


def test_the_playbook_tags_each_component_role_as_the_registry_says():
    """Ansible reads a role's tags from the playbook only: this keeps them equal to the registry's."""
    with open(os.path.join(REPO, "playbooks", "deploy.yml")) as handle:
        play = yaml.safe_load(handle)[0]
    # each component role is imported at its declared-state entry point in the play's tasks
    tags = dict((task["ansible.builtin.import_role"]["name"].rsplit(".", 1)[-1], task.get("tags"))
                for task in play["tasks"] if "ansible.builtin.import_role" in task)
    for component, entry in components.REGISTRY.items():
        assert tags[entry.get("role", component)] == entry["tags"], component
