#!/usr/bin/env python3
"""GPU swap benchmark: how much of a swap is orchestration, and how soon after the target is
Ready the swap ends. Not a test (nothing is asserted): it prints figures.

    .venv/bin/python -m tests.bench.bench_swap [--rounds 2] [--ready-delay 3s]

What is real: the control plane (kube-apiserver, controller-manager, scheduler; kwok fakes the
kubelet), the gpu_swap playbook run by ansible-playbook exactly as a user runs it. What is
simulated: the pods (kwok makes them Ready after ``--ready-delay``: a stand-in for model
loading), nvidia-smi (a script), the gateway check (off: it is measured with the real LiteLLM in
tests/functional/test_gpu_swap_gateway.py).

Per swap it prints: the whole run (ansible-playbook start to exit), the time the module spent
waiting on conditions (pods deleted, GPU free, Ready), orchestration = whole run minus those
waits (Ansible start-up and tasks, API calls, the host check), the same inside the swap steps
only, and "ready -> end": from the moment a pod of the target is Ready (seen by a 20 ms poller)
to the playbook's exit. For scale it also times a playbook with the same number of tasks that do
nothing (Ansible's own cost on this machine at this moment) and prints the load average.
"""

from __future__ import annotations

import argparse
import re
import subprocess
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
from tests.support.gpu_swap_lab import DELETE_DELAY, READY_DELAY, Lab  # noqa: E402
from tests.support.kube_ns import KubeNamespace  # noqa: E402

ROUND = ("vllm:qwen2.5-7b", "none", "ollama")
SUMMARY = re.compile(r"([\d.]+) s in total, ([\d.]+) s waiting on conditions, ([\d.]+) s orchestration")


def ready_watch(lab, owner, stop, seen):
    while not stop.is_set():
        if owner != "none" and "ready" not in seen and lab.ready(owner):
            seen["ready"] = time.monotonic()
        time.sleep(0.02)


def one_swap(lab, target):
    owner = target.split(":")[0]
    seen, stop = {}, threading.Event()
    watcher = threading.Thread(target=ready_watch, args=(lab, owner, stop, seen), daemon=True)
    watcher.start()
    started = time.monotonic()
    proc = subprocess.run(lab.argv(target), cwd=str(REPO), env=lab.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    ended = time.monotonic()
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"swap to {target} failed:\n{proc.stdout[-4000:]}")
    match = SUMMARY.search(proc.stdout)
    steps_total, waited, steps_orch = (float(g) for g in match.groups())
    wall = ended - started
    return {"target": target, "wall": wall, "waited": waited, "overhead": wall - waited, "steps_overhead": steps_orch,
            "ready_to_end": (ended - seen["ready"]) if "ready" in seen else None}


BASELINE = """- hosts: gpu_lab
  gather_facts: false
  tasks:
""" + "".join("    - ansible.builtin.ping:\n    - ansible.builtin.debug: {msg: step}\n" for _ in range(4))


def ansible_baseline(lab, work):
    """Seconds of a playbook with the swap's task count and nothing to do (4 module runs, 4 debug)."""
    play = work / "baseline.yml"
    play.write_text(BASELINE)
    argv = [lab.argv("status")[0], str(play), "-i", lab.inventory()]
    started = time.monotonic()
    subprocess.run(argv, cwd=str(REPO), env=lab.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ready-delay", default="3s", help="kwok delay before a started pod is Ready (model loading)")
    parser.add_argument("--delete-delay", default="2s", help="kwok delay before a deleted pod is gone (Terminating)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    with ControlPlane(str(work / "cp")) as cp:
        kube = KubeNamespace.create(cp, prefix="bench")
        annotations = {READY_DELAY: args.ready_delay, DELETE_DELAY: args.delete_delay}
        lab = Lab(kube, work, owner="ollama", pod_annotations={"ollama": annotations, "vllm": annotations}).setup()
        rows = []
        for _ in range(args.rounds):
            for target in ROUND:
                rows.append(one_swap(lab, target))
                print("  %-16s whole run %5.2f s, waiting %5.2f s, orchestration %5.2f s (in the steps %5.2f s), "
                      "ready -> end %s" % (rows[-1]["target"], rows[-1]["wall"], rows[-1]["waited"], rows[-1]["overhead"],
                                           rows[-1]["steps_overhead"], "%.2f s" % rows[-1]["ready_to_end"]
                                           if rows[-1]["ready_to_end"] is not None else "-"), flush=True)
        baseline = sorted(ansible_baseline(lab, work) for _ in range(3))
        kube.cleanup()
    print("\nGPU swap, %d swaps (ready delay %s, delete delay %s), median:" % (len(rows), args.ready_delay, args.delete_delay))
    for key, label in (("wall", "whole run"), ("waited", "waiting on conditions"), ("overhead", "orchestration (run - waits)"),
                       ("steps_overhead", "orchestration inside the swap steps"), ("ready_to_end", "target Ready -> swap ends")):
        values = sorted(r[key] for r in rows if r[key] is not None)
        print("  %-38s %6.2f s (min %.2f, max %.2f)" % (label, values[len(values) // 2], values[0], values[-1]))
    print("  %-38s %6.2f s (min %.2f, max %.2f)" % ("Ansible alone, same task count (no-op)", baseline[1], baseline[0],
                                                    baseline[-1]))
    print("  load average now: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
