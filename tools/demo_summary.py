"""The closing summary of `make demo` (tools/demo.sh): what runs in the lab namespace, read back from the cluster.

    python tools/demo_summary.py --kubeconfig KUBECONFIG --inventory inventory/example --render DIR [--ollama-url URL]

Prints the components (workloads and their readiness), each catalog model and where it is served
(the gateway alias -> backend Service, and whether that backend has the GPU now), the recorded GPU
owner, the endpoints (Services), the PVCs with their backup tier, and what was simulated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, ".collections"))
from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog  # noqa: E402  pylint: disable=wrong-import-position


def kubectl(kubeconfig, *args):
    binary = os.path.join(os.path.dirname(sys.executable), "kubectl")
    out = subprocess.run([binary if os.access(binary, os.X_OK) else "kubectl", "--kubeconfig", kubeconfig, *args],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def inventory_vars(inventory):
    merged = {}
    group_dir = os.path.join(inventory, "group_vars", "gpu_lab")
    for name in sorted(os.listdir(group_dir)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(group_dir, name), encoding="utf-8") as handle:
                merged.update(yaml.safe_load(handle) or {})
    return merged


def observability_summary(kubeconfig, ns):
    """Dashboards, alerts, web endpoints and network policies the deploy applied (issue 11)."""
    cms = kubectl(kubeconfig, "get", "configmaps", "-A", "-l", "grafana_dashboard=1", "-o", "json")["items"]
    print("\nGrafana dashboards (ConfigMaps picked up by the sidecar):")
    for cm in sorted(cms, key=lambda o: o["metadata"]["name"]):
        for text in cm["data"].values():
            board = json.loads(text)
            print("  %-22s %2d panels: %s" % (board["title"], len(board["panels"]),
                                              ", ".join(p["title"] for p in board["panels"][:6]) + ", ..."))
    rules = kubectl(kubeconfig, "get", "prometheusrules.monitoring.coreos.com", "-A", "-l",
                    "app.kubernetes.io/part-of=ai-lab", "-o", "json")["items"]
    print("\nAlert rules (PrometheusRule; each unit-tested with promtool):")
    for rule in (r for obj in rules for g in obj["spec"]["groups"] for r in g["rules"] if "alert" in r):
        print("  %-26s %-8s for %-4s %s" % (rule["alert"], rule["labels"].get("severity", ""), rule.get("for", "0s"),
                                            rule["annotations"]["summary"]))
    ingresses = kubectl(kubeconfig, "get", "ingresses", "-A", "-o", "json")["items"]
    print("\nWeb endpoints (Traefik on the tailnet address only, TLS from tailscale cert):")
    for ing in sorted(ingresses, key=lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["path"]):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                print("  https://%s%-12s -> %s/%s:%s" % (rule["host"], path["path"], ing["metadata"]["namespace"],
                                                         backend["name"], backend["port"]["number"]))
    policies = kubectl(kubeconfig, "-n", ns, "get", "networkpolicies", "-o", "json")["items"]
    print("\nNetworkPolicies in %s: %s (default deny + the flows of docs/network.md)"
          % (ns, ", ".join(sorted(p["metadata"]["name"] for p in policies)) or "none"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--render", required=True)
    parser.add_argument("--namespace", default="ai-lab")
    parser.add_argument("--ollama-url")
    args = parser.parse_args(argv)
    ns = args.namespace
    inv = inventory_vars(args.inventory)
    models = catalog.validate_catalog(inv["gpu_lab_models"], inv.get("gpu_lab_routes"))
    routes = inv.get("gpu_lab_routes") or {}

    state = kubectl(args.kubeconfig, "-n", ns, "get", "configmap", "gpu-lab-state", "-o", "json")["data"]
    workloads = kubectl(args.kubeconfig, "get", "deployments,statefulsets", "-A", "-l",
                        "app.kubernetes.io/part-of=ai-lab", "-o", "json")["items"]
    services = kubectl(args.kubeconfig, "-n", ns, "get", "services", "-o", "json")["items"]
    pvcs = kubectl(args.kubeconfig, "-n", ns, "get", "pvc", "-o", "json")["items"]
    charts = kubectl(args.kubeconfig, "-n", "kube-system", "get", "helmcharts.helm.cattle.io", "-o", "json")["items"]
    pods = kubectl(args.kubeconfig, "-n", ns, "get", "pods", "-o", "json")["items"]

    print("Components (namespace %s; HelmCharts in kube-system):" % ns)
    for w in sorted(workloads, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        spec, status = w["spec"], w.get("status") or {}
        print("  %-28s %-11s %s/%s ready   %s" % (
            w["metadata"]["name"], w["kind"], status.get("readyReplicas", 0), spec.get("replicas", 1),
            w["metadata"]["labels"].get("app.kubernetes.io/component", "")))
    for c in charts:
        print("  %-28s HelmChart   chart %s %s (failurePolicy %s; no chart is installed here)" % (
            c["metadata"]["name"], c["spec"].get("chart"), c["spec"].get("version", ""), c["spec"].get("failurePolicy")))

    owner, model = state.get("owner"), state.get("model")
    gpu_pods = [p["metadata"]["name"] for p in pods
                if "nvidia.com/gpu" in json.dumps([c.get("resources") for c in p["spec"]["containers"]])
                and not p["metadata"].get("deletionTimestamp")]
    print("\nGPU owner (ConfigMap %s/gpu-lab-state): %s%s on node %s; pods holding the GPU: %s" % (
        ns, owner, (" serving " + model) if model else "", state.get("node"), ", ".join(gpu_pods) or "none"))

    pulled = set()
    if args.ollama_url:
        with urllib.request.urlopen(args.ollama_url + "/api/tags", timeout=5) as resp:  # nosec - loopback
            pulled = set(m["name"] for m in json.load(resp)["models"])
    print("\nModels (the gateway litellm:4000 serves every alias; the alias is what clients send):")
    for m in models:
        if m["backend"] == "vllm":
            where = "vllm:8000 (%s)" % ("has the GPU, serving it" if owner == "vllm" and model == m["name"]
                                       else "scaled to 0: not the GPU owner now")
        elif m["backend"] == "ollama":
            tag = m["source"] if ":" in m["source"] else m["source"] + ":latest"
            where = "ollama:11434 (%s; %s)" % ("has the GPU" if owner == "ollama" else "scaled to 0",
                                               "pulled" if tag in pulled else "not pulled yet")
        else:
            where = "hosted by %s through the gateway (key %s from Secret litellm-env)" % (m["backend"], m["api_key_env"])
        fallback = routes.get(m["name"])
        print("  %-16s %-9s %-10s -> %s%s" % (m["name"], m["backend"], m["mode"], where,
                                              ("; falls back to " + ", ".join(fallback)) if fallback else ""))

    print("\nEndpoints (ClusterIP Services; reach them on the tailnet through the ingress or a port-forward):")
    for s in sorted(services, key=lambda o: o["metadata"]["name"]):
        ports = ", ".join("%s/%s" % (p["port"], p.get("name", "")) for p in s["spec"]["ports"])
        print("  %-20s %-15s %s" % (s["metadata"]["name"], s["spec"].get("clusterIP"), ports))

    print("\nVolumes:")
    for p in sorted(pvcs, key=lambda o: o["metadata"]["name"]):
        print("  %-22s %-8s backup-tier=%-6s %s" % (p["metadata"]["name"], p["spec"]["resources"]["requests"]["storage"],
                                                   p["metadata"].get("labels", {}).get("backup-tier", "?"),
                                                   (p.get("status") or {}).get("phase", "")))

    observability_summary(args.kubeconfig, ns)

    print("\nRendered for review / GitOps: %s (kubectl apply -k %s/k8s)" % (args.render, args.render))
    print("\nWhat was real and what was simulated:")
    for line in (
            "REAL: ansible-playbook and the roles, kubernetes.core, kube-apiserver + controller-manager + scheduler + etcd",
            "      (validation, defaulting, controllers, the scheduler counting nvidia.com/gpu), kubectl kustomize,",
            "      kubernetes-validate, nix-instantiate --parse, the LiteLLM config checks",
            "SIMULATED: the node gpu-box and its one GPU (kwok: pods are marked Running/Ready, no container runs);",
            "      the Ollama API and Qdrant are local test servers (tests/support) that the pulls and collection",
            "      requests went to; HelmCharts are stored but no chart is installed (k3s's helm-controller would);",
            "      no vLLM weights were downloaded (molecule/model_pull exercises that against a local hub).",
            "No GPU was used."):
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
