#!/usr/bin/env python3
"""deploy benchmark: the idempotent re-run of the deploy playbook vs `kubectl apply --server-side` of the
same rendered manifests, against one control plane in one run.

Not a test (nothing is asserted but changed=0): it prints figures. From the repo root:

    .venv/bin/python -m tests.bench.bench_deploy [--runs 3]

What is real: ansible-playbook with the roles, kubernetes.core, kubectl, the control plane
(kube-apiserver, controller-manager, scheduler, etcd; kwok plays the kubelet of gpu-box). What is
emulated: Ollama and Qdrant (tests/support test servers answer the pulls and collection requests; one
Ollama stand-in answers for both Ollamas, the GPU one and ollama-embed);
no vLLM weights are downloaded (vllm_pull_enabled: false).

Steps: start everything, time an empty ansible-playbook, converge once (deploy of the example lab), then
--runs idempotent re-runs (wall clock of the whole ansible-playbook process, json callback: every task's
action and result counted, and the wall time of the one apply, action ailab.gpu_lab.lab_apply), --runs
render-only runs, `kubectl apply --server-side -k` of the rendered tree once to take ownership, then --runs
re-applies. Prints the medians, the ratios (targets of issue 17: re-run <= 6 s, the apply action <= 3x kubectl,
at most 3 module or action starts per re-run, render-only <= 5 s) and the module invocations of a re-run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / ".collections"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.support.ollama_server import OllamaServer  # noqa: E402
from tests.support.qdrant_server import QdrantServer  # noqa: E402

BIN = Path(sys.executable).parent
# Actions that run on the controller without executing a module (no Python process is started for them).
APPLY_ACTION = "ailab.gpu_lab.lab_apply"
NO_MODULE = {"ansible.builtin.set_fact", "set_fact", "ansible.builtin.include_tasks", "include_tasks",
             "ansible.builtin.include_role", "include_role", "ansible.builtin.meta", "meta", "ansible.builtin.assert",
             "assert", "ansible.builtin.debug", "debug", "ansible.builtin.validate_argument_spec",
             "validate_argument_spec",
             # the lab role's check of every component role's argument spec: validate_argument_spec for several roles
             "ailab.gpu_lab.validate_role_specs"}
SECRETS = """
apiVersion: v1
kind: Secret
metadata: {name: litellm-env, namespace: ai-lab}
stringData: {LITELLM_MASTER_KEY: sk-bench-master-0123456789, LITELLM_SALT_KEY: sk-bench-salt-0123456789,
             ANTHROPIC_API_KEY: sk-ant-bench-not-real}
---
apiVersion: v1
kind: Secret
metadata: {name: qdrant-api-key, namespace: ai-lab}
stringData: {QDRANT__SERVICE__API_KEY: qdrant-bench-key}
---
apiVersion: v1
kind: Secret
metadata: {name: open-webui-secret, namespace: ai-lab}
stringData: {WEBUI_SECRET_KEY: webui-bench-secret}
---
apiVersion: v1
kind: Secret
metadata: {name: grafana-admin, namespace: ai-lab}
stringData: {admin-user: admin, admin-password: bench-grafana-password}
"""


def env():
    e = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
             ANSIBLE_NOCOLOR="1", PYTHONPATH=str(REPO))
    return e


def run(argv, **kwargs):
    proc = subprocess.run(argv, cwd=REPO, env=env(), capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        sys.exit("FAILED: %s\n%s\n%s" % (" ".join(map(str, argv)), proc.stdout[-5000:], proc.stderr[-3000:]))
    return proc


def deploy(varsfile, *extra, json_out=False):
    argv = [BIN / "ansible-playbook", "ailab.gpu_lab.deploy", "-i", "inventory/example", "-e", "@%s" % varsfile, *extra]
    e = env()
    if json_out:
        e["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    start, cpu = time.monotonic(), _cpu_seconds()
    proc = subprocess.run(argv, cwd=REPO, env=e, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    CPU.append(_cpu_seconds() - cpu)
    if proc.returncode != 0:
        sys.exit("FAILED: deploy\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-3000:]))
    return took, proc.stdout


CPU = []   # CPU seconds (user + system) of each deploy run's process tree, in run order


def _cpu_seconds():
    """User + system CPU seconds of the finished child processes so far: ansible-playbook, its workers, its modules
    (not the control plane, a daemon of its own). Other jobs on the machine stretch a run's wall time far more."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seconds(duration):
    """Seconds between the json callback's ISO start/end stamps of a task (0 when absent)."""
    from datetime import datetime  # pylint: disable=import-outside-toplevel
    try:
        return (datetime.fromisoformat(duration["end"].rstrip("Z")) - datetime.fromisoformat(duration["start"].rstrip("Z"))
                ).total_seconds()
    except (KeyError, TypeError, ValueError):
        return 0.0


def count_tasks(json_text):
    """(module or action starts by action, changed count, objects applied by kubernetes.core.k8s, seconds by action)
    of one json-callback run; the seconds are each task's wall time, tasks without a module under "controller".
    The one apply (an action plugin: no module process, but a start that does real work) is counted as a start."""
    data = json.loads(json_text[json_text.index("{"):])
    actions, changed, objects, seconds = collections.Counter(), 0, 0, collections.Counter()
    for play in data["plays"]:
        for task in play["tasks"]:
            kinds = set()
            for result in task["hosts"].values():
                loop = result.get("results")   # a loop's items carry ansible_loop_var; lab_apply's per-object results do not
                items = loop if isinstance(loop, list) and loop and isinstance(loop[0], dict) and "ansible_loop_var" in loop[0] \
                    else [result]
                for item in items:
                    if item.get("skipped"):
                        continue
                    action = result.get("action") or task["task"].get("action", "?")
                    changed += bool(item.get("changed"))
                    if action in NO_MODULE:
                        kinds.add("controller (no module)")
                        continue
                    kinds.add(action)
                    actions[action] += 1
                    if action.endswith("k8s") and isinstance(item.get("result"), dict):
                        objects += len(item["result"].get("results") or [item["result"]])
            seconds[sorted(kinds)[0] if kinds else "skipped tasks"] += _seconds(task["task"].get("duration") or {})
    return actions, changed, objects, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    cluster = work / "cluster"
    run([sys.executable, "-m", "tests.support.servers", "start", "k8s", "--dir", cluster])
    ollama = OllamaServer(registry={"llama3.1:8b": 4 << 20, "nomic-embed-text": 1 << 20}).start()
    qdrant = QdrantServer(api_key="qdrant-bench-key").start()
    kubeconfig = cluster / "kubeconfig"
    try:
        kubectl = [BIN / "kubectl", "--kubeconfig", kubeconfig]
        run(kubectl + ["create", "namespace", "ai-lab"])
        run(kubectl + ["apply", "-f", "-"], input=SECRETS)
        varsfile = work / "vars.yml"
        varsfile.write_text("\n".join([
            "ansible_connection: local", "ansible_python_interpreter: %s" % sys.executable,
            "gpu_lab_kubeconfig: %s" % kubeconfig, "ollama_pull_url: %s" % ollama.url,
            "ollama_embed_pull_url: %s" % ollama.url, "qdrant_api_url: %s" % qdrant.url,
            "vllm_pull_enabled: false", "gpu_swap_verify_gateway: false", "gpu_swap_host_check: false",
            "ingress_tls_source: existing", ""]))
        empty = work / "empty.yml"
        empty.write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")
        empties = []
        for _ in range(args.runs):
            start = time.monotonic()
            run([BIN / "ansible-playbook", "-i", "inventory/example", "-e", "@%s" % varsfile, empty])
            empties.append(time.monotonic() - start)
        took, _ = deploy(varsfile)
        print("converge (first deploy of the example lab): %.1f s" % took)

        reruns, counts, apply_seconds = [], None, []
        first_rerun = len(CPU)
        for _ in range(args.runs):
            took, out = deploy(varsfile, json_out=True)
            reruns.append(took)
            counts = count_tasks(out)
            apply_seconds.append(counts[3].get(APPLY_ACTION, 0.0))
            if counts[1]:
                sys.exit("a re-run reported changed=%d: not idempotent, no figure to give" % counts[1])
        render = work / "rendered"
        rerun_cpu = CPU[first_rerun:]
        renders = []
        first_render = len(CPU)
        for _ in range(args.runs):
            took, _ = deploy(varsfile, "-e", "gpu_lab_render_only=true", "-e", "gpu_lab_render_dir=%s" % render)
            renders.append(took)
        render_cpu = CPU[first_render:]
        apply = kubectl + ["apply", "--server-side", "--force-conflicts", "--field-manager", "bench", "-k", render / "k8s"]
        built = run([BIN / "kubectl", "kustomize", render / "k8s"]).stdout
        n_objects = sum(1 for line in built.splitlines() if line.startswith("kind: "))
        run(apply)  # take ownership once
        applies = []
        for _ in range(args.runs):
            start = time.monotonic()
            run(apply)
            applies.append(time.monotonic() - start)
    finally:
        ollama.stop()
        qdrant.stop()
        subprocess.run([sys.executable, "-m", "tests.support.servers", "stop", "--dir", cluster], cwd=REPO, env=env(),
                       check=False, capture_output=True)
    actions, _changed, k8s_objects, seconds = counts
    d, k = statistics.median(reruns), statistics.median(applies)
    a = statistics.median(apply_seconds)
    print("empty ansible-playbook (one host, no task), median of %d: %.1f s" % (args.runs, statistics.median(empties)))
    print("deploy re-run (changed=0), median of %d: %.1f s   (target: <= 6 s; runs: %s)" % (
        args.runs, d, ", ".join("%.1f" % t for t in reruns)))
    print("the apply action alone (%s task of the re-run), median of %d: %.2f s   (runs: %s)" % (
        APPLY_ACTION, args.runs, a, ", ".join("%.2f" % t for t in apply_seconds)))
    print("kubectl apply --server-side -k of the same %d rendered objects, median of %d: %.2f s   (runs: %s)" % (
        n_objects, args.runs, k, ", ".join("%.2f" % t for t in applies)))
    print("ratio apply action / kubectl: %.1fx   (target: within 3x); whole re-run / kubectl: %.1fx" % (a / k, d / k))
    print("render-only run, median of %d: %.1f s   (target: <= 5 s; runs: %s)" % (
        args.runs, statistics.median(renders), ", ".join("%.1f" % t for t in renders)))
    print("CPU seconds (user + system of ansible-playbook and its workers and modules), median of %d: re-run %.1f s, "
          "render-only %.1f s   (what other jobs on the machine change least)" % (
              args.runs, statistics.median(rerun_cpu), statistics.median(render_cpu)))
    print("module or action starts in one re-run: %d (%s; target: <= 3); objects passed to kubernetes.core.k8s: %d" % (
        sum(actions.values()), ", ".join("%s %d" % kv for kv in sorted(actions.items())), k8s_objects))
    print("where a re-run's time goes (task wall time by action; the rest is ansible-playbook start-up and "
          "loading): " + ", ".join("%s %.1f s" % kv for kv in seconds.most_common()))
    print("host: %d CPUs, load average %.1f before the runs, %.1f after (other jobs on this machine inflate every "
          "figure)" % (os.cpu_count(), load_before, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
