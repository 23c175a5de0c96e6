"""The fast path's lab (vLLM sleep mode), shared by its functional test and its benchmark.

What is REAL: the Kubernetes control plane (kwok plays the kubelet), a GPU node with 2 slots of nvidia.com/gpu (what
the NVIDIA device plugin advertises with time-slicing replicas 2), the EndpointSlice/Endpoints controllers that take
vLLM's pod out of its Service when the swap turns its route label off, and the swap core (``gpu_swap.Swap``) driven
step by step exactly as the role's block/rescue and the in-cluster swap service drive it (begin, stop, start;
rollback on any failure).
What stands in: vLLM is tests/support/vllm_backend.py (vLLM v0.11's sleep endpoints and /metrics, the engine
crashes it reports, an EMULATED GPU-memory figure), reached by the swap through ``vllm_url`` (from here the
Service's ClusterIP is not reachable); the GPU backends' Deployments are tests/support/gpu_swap_lab.py's, with what
the vllm role adds when ``vllm_sleep_mode`` is on (the sleep-mode annotation, the route label on the pods and in
the Service's selector).
"""

from __future__ import annotations

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs

from tests.support.controlplane import gpu_node
from tests.support.gpu_swap_lab import Lab

SLICED_NODE = "gpu-sliced"


class SleepLab(Lab):
    """The GPU backends pinned to a node with 2 GPU slots, vLLM as the vllm role makes it with vllm_sleep_mode on."""

    def __init__(self, kube, workdir, **kwargs):
        kwargs.setdefault("node", SLICED_NODE)
        super().__init__(kube, workdir, **kwargs)

    def setup(self):
        self.kube.add_node(gpu_node(self.node, gpus=2))
        return super().setup()

    def objects(self):
        objs = super().objects()
        for obj in objs:
            if obj["metadata"]["name"] != "vllm":
                continue
            if obj["kind"] == "Deployment":
                obj["metadata"]["annotations"][gs.SLEEP_ANNOTATION] = "level1"
                obj["spec"]["template"]["metadata"]["labels"][gs.ROUTE_LABEL] = "on"
            elif obj["kind"] == "Service":
                obj["spec"]["selector"][gs.ROUTE_LABEL] = "on"
        return objs

    def params(self, vllm_url, **extra):
        """The swap's parameters, as the role passes them (tests/support/gpu_swap_lab.py's inventory's values)."""
        params = {"models": self.models, "namespace": self.ns, "node": self.node, "poll_interval": 0.1,
                  "delete_timeout": 60, "ready_timeout": 60, "lock_timeout": 30, "lease_duration": 120,
                  "verify_gateway": False, "vllm_url": vllm_url, "drain_timeout": 30}
        params.update(extra)
        return params

    def cluster(self):
        return gs.Cluster(gs.transport({"kubeconfig": self.kube.kubeconfig}), self.ns)

    def route_label(self):
        return [(p["metadata"].get("labels") or {}).get(gs.ROUTE_LABEL) for p in self.pods("vllm")]

    def vllm_endpoints(self):
        """The addresses the (real) Endpoints controller lists for Service vllm, Ready or not."""
        endpoints = self.kube.get("Endpoints", "vllm") or {}
        return [a for subset in endpoints.get("subsets") or [] for key in ("addresses", "notReadyAddresses")
                for a in subset.get(key) or []]


def drive_swap(lab, target, vllm_url, **extra):
    """One swap through the steps, as the role's block/rescue does: begin, stop, start; on a failure the rollback runs
    and the error is raised again. Returns the start step's report with every step's phases (the begin step's report
    when there was nothing to do)."""
    params = lab.params(vllm_url, **extra)
    cluster = lab.cluster()
    begun = gs.Swap(cluster, params).begin(target)
    if begun["noop"]:
        return begun
    params["holder"] = begun["holder"]
    try:
        stopped = gs.Swap(cluster, params).stop(begun["node"])
        started = gs.Swap(cluster, params).start(target, begun["node"])
        return dict(started, fast_path=begun["fast_path"], phases=begun["phases"] + stopped["phases"] + started["phases"])
    except gs.SwapError as exc:
        gs.Swap(cluster, params).rollback(str(exc))
        raise
