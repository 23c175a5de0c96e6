"""On-demand hand-over benchmark: what a request held by the gateway waits beyond its target's Ready time.
Not a test (nothing is asserted): it prints figures (docs/gpu_demand.md; goal of issue 18: under 1 s).

    .venv/bin/python -m tests.bench.bench_demand [--rounds 2] [--ready-delay 3s] [--delete-delay 1s]

What is real: the LiteLLM proxy with the rendered config and the gpu_demand hook, the on-demand service (the LiteLLM
venv's Python, a ServiceAccount token of its least-privilege account), the control plane. Simulated: the pods (kwok
makes them Ready after --ready-delay, a stand-in for model loading, and gone after --delete-delay), the inference
servers (local servers that answer only while their Deployment has a Ready pod), nvidia-smi (a script).

Each round sends a request for the vLLM alias while Ollama holds the GPU, then one for the Ollama alias (residency 0).
Per request it prints the whole wait through the gateway, the moment the target's pod was Ready (a 20 ms poller of
the API), and "beyond Ready": from that moment to the answer (the verify request, the record, the hook's return and
LiteLLM forwarding the held request).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / ".collections"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.gpu_demand_service import MODELS, gateway_with_hook, service_for  # noqa: E402
from tests.support.gpu_swap_lab import DELETE_DELAY, READY_DELAY, Lab, ReadyGate  # noqa: E402
from tests.support.kube_ns import KubeNamespace  # noqa: E402
from tests.support.openai_backend import OpenAIBackend  # noqa: E402


def held_request(lab, proxy, alias, owner):
    seen, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            if "ready" not in seen and lab.ready(owner):
                seen["ready"] = time.monotonic()
            time.sleep(0.02)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    status, body = proxy.chat(alias, "bench", timeout=300)
    ended = time.monotonic()
    stop.set()
    watcher.join()
    text = body["choices"][0]["message"]["content"] if status == 200 else str(body)
    if not text.startswith("[%s]" % owner):
        sys.exit("FAILED: %s was answered by %r, not by %s" % (alias, text[:200], owner))
    return {"alias": alias, "wait": ended - started, "beyond_ready": ended - seen["ready"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ready-delay", default="3s")
    parser.add_argument("--delete-delay", default="1s")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-demand-"))
    vllm, ollama, cloud = OpenAIBackend(name="vllm"), OpenAIBackend(name="ollama"), OpenAIBackend(name="cloud").start()
    stand_ins = type("StandIns", (), {"vllm": vllm, "ollama": ollama, "cloud": cloud})
    rows = []
    with ControlPlane(str(work / "cp")) as cp:
        kube = KubeNamespace.create(cp, prefix="bench")
        knobs = {READY_DELAY: args.ready_delay, DELETE_DELAY: args.delete_delay}
        lab = Lab(kube, work, owner="ollama", models=MODELS, pod_annotations={"ollama": knobs, "vllm": knobs}).setup()
        gates = [ReadyGate(kube, "vllm", [vllm]).start(), ReadyGate(kube, "ollama", [ollama]).start()]
        service = service_for(kube, lab, work, {"vllm": vllm.url, "ollama": ollama.url}, hold_budget=120,
                              residency=0)
        proxy = gateway_with_hook(work / "gw", stand_ins, service)
        try:
            for _ in range(args.rounds):
                for alias, owner in (("qwen2.5-7b", "vllm"), ("llama3.1-8b", "ollama")):
                    rows.append(held_request(lab, proxy, alias, owner))
                    print("  %-12s held %5.2f s, beyond the target's Ready %5.2f s" % (
                        alias, rows[-1]["wait"], rows[-1]["beyond_ready"]), flush=True)
        finally:
            proxy.stop()
            service.stop()
            for gate in gates:
                gate.stop()
            cloud.stop()
            kube.cleanup()
    beyond = [r["beyond_ready"] for r in rows]
    waits = [r["wait"] for r in rows]
    print("\non-demand hand-over through the gateway, %d requests (ready delay %s, delete delay %s):"
          % (len(rows), args.ready_delay, args.delete_delay))
    print("  held request, whole wait:        median %5.2f s (min %.2f, max %.2f)" % (
        statistics.median(waits), min(waits), max(waits)))
    print("  beyond the target's Ready:       median %5.2f s (min %.2f, max %.2f)   (goal: < 1 s)" % (
        statistics.median(beyond), min(beyond), max(beyond)))
    print("  load average now: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
