#!/usr/bin/env python3
"""The fast path's hand-over time (vLLM sleep mode). Not a test (nothing is asserted): it prints figures.

    .venv/bin/python -m tests.bench.bench_swap_sleep [--rounds 3] [--wake-seconds 0.3]

What is real: the control plane (kwok fakes the kubelet) with a node of 2 GPU slots, the swap core driven step by
step as the in-cluster swap service and the role drive it (tests/support/gpu_swap_sleep.py), without Ansible. What
is simulated: vLLM (tests/support/vllm_backend.py: its sleep takes ``--sleep-seconds``, its wake ``--wake-seconds``,
vLLM's blog measured 0.26-0.82 s for a level-1 wake of 0.5-8B models on an A100), Ollama's pod (kwok: Ready after
``--ready-delay``), no gateway check and no host check (the role's nvidia-smi run).

Per hand-over it prints the whole swap (begin to commit) and its fast-path phases: out of the route, drain, sleep,
wake, the 1-token warm-up, back in the route. For scale: a full vLLM reload measured 37.6-58.1 s on an A100 (same
blog), and the usual path's swap on this machine is in docs/gpu_swap.md "Figures".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / ".collections"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.gpu_swap_lab import READY_DELAY  # noqa: E402
from tests.support.gpu_swap_sleep import SleepLab, drive_swap  # noqa: E402
from tests.support.kube_ns import KubeNamespace  # noqa: E402
from tests.support.vllm_backend import VLLMBackend  # noqa: E402

MODEL = "qwen2.5-7b"
SHOWN = ("take vLLM out", "drain vLLM", "vLLM sleeps", "wake vLLM", "1-token warm-up", "vLLM back in", "wait for Ready")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sleep-seconds", type=float, default=0.2)
    parser.add_argument("--wake-seconds", type=float, default=0.3)
    parser.add_argument("--ready-delay", default="1s", help="kwok delay before Ollama's started pod is Ready")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-swap-sleep-"))
    rows = []
    with ControlPlane(str(work / "cp")) as cp, VLLMBackend(served_models=[MODEL], sleep_seconds=args.sleep_seconds,
                                                             wake_seconds=args.wake_seconds) as vllm:
        kube = KubeNamespace.create(cp, prefix="bench")
        lab = SleepLab(kube, work, owner="vllm", model=MODEL,
                       pod_annotations={"ollama": {READY_DELAY: args.ready_delay}}).setup()
        for _ in range(args.rounds):
            for target in ("ollama", f"vllm:{MODEL}"):
                started = time.monotonic()
                report = drive_swap(lab, target, vllm.url)
                took = time.monotonic() - started
                phases = dict((p["name"], p["seconds"]) for p in report["phases"])
                shown = ", ".join("%s %.2f s" % (name.split(" (")[0], seconds) for name, seconds in phases.items()
                                  if name.startswith(SHOWN))
                rows.append((target, took, report["fast_path"]))
                print("  -> %-16s %5.2f s (fast path: %s): %s" % (target, took, report["fast_path"], shown), flush=True)
        kube.cleanup()
    for target in ("ollama", f"vllm:{MODEL}"):
        values = sorted(took for t, took, _fast in rows if t == target)
        print("hand-over to %-16s median %.2f s (min %.2f, max %.2f), %d swaps" % (
            target, values[len(values) // 2], values[0], values[-1], len(values)))
    print("load average now: %s" % " ".join(open("/proc/loadavg", encoding="utf-8").read().split()[:3]))


if __name__ == "__main__":
    main()
