#!/usr/bin/env python3
"""The GPU swap round trip on the simulated lab: ollama -> vllm -> none -> ollama, then one on-demand hand-over.

    .venv/bin/python tools/demo_swap.py            # starts its own control plane
    .venv/bin/python tools/demo_swap.py --kubeconfig DIR/kubeconfig --namespace ai-lab   # an existing one

Prints each swap's phases with their durations and what the gateway answered meanwhile. NO GPU
is used: the control plane is real (kube-apiserver, controller-manager, scheduler), the pods are
kwok's (Ready after a few seconds, running nothing), the inference servers are local stand-ins
that answer only while their Deployment has a Ready pod, nvidia-smi is a script, and the gateway
is the REAL LiteLLM proxy when .venv-litellm exists (else the demo says so and skips it).
With --kubeconfig the demo works in an existing lab namespace whose GPU backends exist (the
deploy playbook's, as in `make demo`); the local LiteLLM proxy and stand-ins follow that
namespace's pods, unless --gateway-url names a gateway to check each target through instead.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / ".collections"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.support.gpu_swap_lab import DELETE_DELAY, READY_DELAY, GatewayClient, Lab, ReadyGate  # noqa: E402

ROUND = ("vllm:qwen2.5-7b", "none", "ollama")
ALIASES = ("qwen2.5-7b", "llama3.1-8b")


def phases(output):
    """The role's report lines (phase: seconds) from the playbook output."""
    block = output.split("Report each phase's duration", 1)[-1]
    return [m.group(1) for m in re.finditer(r'^\s+"(.+?)",?$', block, re.M) if " s" in m.group(1)]


class _Namespace:
    """A KubeNamespace-like view of an existing cluster (demo against a lab deployed by hand)."""

    def __init__(self, kubeconfig, namespace):
        from kubernetes import config, dynamic  # pylint: disable=import-outside-toplevel
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.client = dynamic.DynamicClient(config.new_client_from_config(kubeconfig))

    def get(self, kind, name, api_version="v1"):
        from kubernetes.dynamic.exceptions import NotFoundError  # pylint: disable=import-outside-toplevel
        try:
            return self.client.resources.get(api_version=api_version, kind=kind).get(
                name=name, namespace=self.namespace).to_dict()
        except NotFoundError:
            return None

    def pods(self, label_selector=None):
        res = self.client.resources.get(api_version="v1", kind="Pod")
        return [p.to_dict() for p in res.get(namespace=self.namespace, label_selector=label_selector).items]

    def apply(self, obj):
        res = self.client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespaced = obj["metadata"].get("namespace") if res.namespaced else None
        res.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=namespaced,
                              field_manager="demo", force_conflicts=True)


def on_demand(kube, workdir, lab, backends, cloud):
    """One on-demand hand-over (docs/gpu_demand.md): Ollama holds the GPU, a request for the vLLM alias through the
    real gateway (with the gpu_demand hook) hands it over and is answered by vLLM."""
    from tests.support.gpu_demand_service import gateway_with_hook, service_for  # pylint: disable=import-outside-toplevel
    stand_ins = type("StandIns", (), {"vllm": backends["vllm"], "ollama": backends["ollama"], "cloud": cloud})
    service = service_for(kube, lab, workdir / "demand", {name: b.url for name, b in backends.items()},
                          hold_budget=120, residency=0)
    proxy = None
    try:
        print("\n== on demand: Ollama holds the GPU; one request for qwen2.5-7b through the gateway (LiteLLM + the "
              "gpu_demand hook, starting about 10 s) ...", flush=True)
        proxy = gateway_with_hook(workdir / "demand-gateway", stand_ins, service)
        started = time.monotonic()
        status, body = proxy.chat("qwen2.5-7b", "who answers?", timeout=300)
        took = time.monotonic() - started
        text = body["choices"][0]["message"]["content"] if status == 200 else str(body)
        state = lab.state()
        print(f"   HTTP {status} after {took:.1f} s (held while the GPU moved): {text[:70]}")
        print(f"   the record now: owner {state.get('owner')} {state.get('model', '')}, trigger "
              f"{state.get('owner_trigger')}, since {state.get('owner_since')}")
        swaps = [line for line in (service.metrics() or "").splitlines() if line.startswith("gpu_lab_swaps_total{")]
        print("   " + "\n   ".join(swaps))
    finally:
        if proxy:
            proxy.stop()
        service.stop()


def run(kube, workdir, gateway_url=None, own_lab=True):
    from tests.support.litellm_proxy import (MASTER_KEY, LiteLLMProxy, gateway_env,  # pylint: disable=import-outside-toplevel
                                             litellm_binary, write_gateway_config)
    from tests.support.openai_backend import OpenAIBackend  # pylint: disable=import-outside-toplevel
    annotations = {READY_DELAY: "3s", DELETE_DELAY: "2s"}
    lab = Lab(kube, workdir, owner="ollama", pod_annotations={"ollama": annotations, "vllm": annotations})
    if own_lab:
        lab.setup()
    backends = {"vllm": OpenAIBackend(name="vllm"), "ollama": OpenAIBackend(name="ollama")}
    cloud = OpenAIBackend(name="cloud").start()
    gates = [ReadyGate(kube, name, [backend]).start() for name, backend in backends.items()]
    proxy = client = None
    extra = {}
    try:
        if gateway_url:
            extra = {"gpu_swap_verify_gateway": True, "gpu_swap_gateway_url": gateway_url}
        else:
            try:
                litellm_binary()
            except RuntimeError as exc:
                print(f"(no gateway in this demo: {exc})")
            else:
                config, _ = write_gateway_config(workdir, vllm=backends["vllm"], ollama=backends["ollama"], cloud=cloud)
                print("starting the real LiteLLM proxy (about 10 s) ...", flush=True)
                proxy = LiteLLMProxy(config, env=gateway_env()).start()
                extra = {"gpu_swap_verify_gateway": True, "gpu_swap_gateway_url": proxy.url,
                         "gpu_swap_gateway_api_key": MASTER_KEY}
        if proxy:
            client = GatewayClient(proxy, ALIASES)
            client.start()
        if lab.state().get("owner", "ollama") != "ollama":
            print(f"(the lab starts from {lab.state().get('owner')}: handing the GPU to ollama first)")
            lab.swap("ollama", **extra)
        for target in ROUND:
            if client:
                client.phase = f"swapping to {target}"
            started = time.monotonic()
            out = lab.swap(target, **extra)
            print(f"\n== gpu_owner={target}: {time.monotonic() - started:.1f} s (ansible-playbook, start to exit)")
            for line in phases(out.stdout):
                print("   " + line)
            if client:
                client.phase = f"{target} owns the GPU"
                time.sleep(2)
        if client:
            client.stop()
            errors = [e for e in client.log if e[2] != 200]
            print("\nWhat the gateway (real LiteLLM, fallbacks qwen2.5-7b -> llama3.1-8b -> cloud-fallback) answered:")
            print(client.table())
            print(f"   {len(client.log)} requests, {len(errors)} errors")
        if proxy:
            proxy.stop()
            on_demand(kube, workdir, lab, backends, cloud)
    finally:
        if client and client.is_alive():
            client.stop()
        for gate in gates:
            gate.stop()
        if proxy:
            proxy.stop()   # again: a failure may have left it running
        cloud.stop()
    print("\nSimulated: no GPU was used; pods are kwok's, the inference servers and the hosted provider are local "
          "stand-ins, nvidia-smi is a script. Real: the control plane, Ansible and the gpu_swap playbook"
          + (", LiteLLM, the on-demand service." if proxy else "."))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kubeconfig", help="use this cluster (its lab namespace must hold the GPU backends)")
    parser.add_argument("--namespace", default="ai-lab")
    parser.add_argument("--gateway-url", help="with --kubeconfig: LiteLLM as reachable from here, to check each target")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="demo-swap-"))
    if args.kubeconfig:
        run(_Namespace(args.kubeconfig, args.namespace), workdir, gateway_url=args.gateway_url, own_lab=False)
        return
    from tests.support.controlplane import ControlPlane  # pylint: disable=import-outside-toplevel
    from tests.support.kube_ns import KubeNamespace  # pylint: disable=import-outside-toplevel
    print("starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) ...", flush=True)
    with ControlPlane(str(workdir / "cp")) as cp:
        kube = KubeNamespace.create(cp, prefix="demo")
        try:
            run(kube, workdir)
        finally:
            kube.cleanup()


if __name__ == "__main__":
    main()
