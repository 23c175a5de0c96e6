#!/usr/bin/env python3
"""Gateway overhead benchmark: direct calls to a local backend vs. the same calls through the
REAL LiteLLM proxy running our generated config (example catalog + litellm role defaults).

Not a test (nothing is asserted): it prints figures. Run from the repo root:

    .venv/bin/python -m tests.bench.bench_gateway                 # role defaults
    .venv/bin/python -m tests.bench.bench_gateway --variant all    # compare settings

What is real: the LiteLLM proxy (from $AILAB_LITELLM_VENV or .venv-litellm) with the config
rendered by ailab.gpu_lab.litellm_config. What is emulated: the model server
(tests/support/openai_backend.py answers instantly), so the figures are the gateway's own cost.

Measured per request, keep-alive HTTP/1.1 connections on both paths (one per client):
sequential latency, 16 concurrent clients' latency and throughput, and for streaming the
time to the first content chunk (TTFT). Overhead = through-proxy minus direct, per percentile.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
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

from tests.support.litellm_proxy import (MASTER_KEY, LiteLLMProxy, gateway_env, role_base_config,  # noqa: E402
                                         write_gateway_config)
from tests.support.openai_backend import OpenAIBackend  # noqa: E402

MODEL = "qwen2.5-7b"

# Settings variants for --variant: (config section overrides, env overrides, extra CLI args).
# "minimal" replaces the role's settings with just a master key (the REFERENCE baseline).
VARIANTS = {
    "defaults": ({}, {}, []),
    "minimal": (None, {}, []),
    "no-prometheus": ({"litellm_settings": {"callbacks": []}}, {}, []),
    "log-info": ({}, {"LITELLM_LOG": "INFO"}, []),
    "message-logging-on": ({"litellm_settings": {"turn_off_message_logging": False}}, {}, []),
    "spend-logs-on": ({"general_settings": {"disable_spend_logs": False, "disable_error_logs": False}}, {}, []),
    "granian": ({}, {}, ["--run_granian"]),
    "prometheus-exclude": ({"litellm_settings": {"prometheus_exclude_metrics": [
        "litellm_remaining_api_key_budget_metric", "litellm_api_key_max_budget_metric",
        "litellm_api_key_budget_remaining_hours_metric", "litellm_remaining_user_budget_metric",
        "litellm_user_max_budget_metric", "litellm_user_budget_remaining_hours_metric",
        "litellm_remaining_team_budget_metric", "litellm_team_max_budget_metric",
        "litellm_team_budget_remaining_hours_metric", "litellm_api_key_rate_limit_allowed_metric",
        "litellm_api_key_rate_limit_used_metric", "litellm_team_rate_limit_allowed_metric",
        "litellm_team_rate_limit_used_metric", "litellm_remaining_api_key_requests_for_model",
        "litellm_remaining_api_key_tokens_for_model", "litellm_remaining_requests_metric",
        "litellm_remaining_tokens_metric", "litellm_spend_metric"]}}, {}, []),
    "prometheus-trimmed": ({"litellm_settings": {"prometheus_metrics_config": [{"group": "gateway", "metrics": [
        "litellm_proxy_total_requests_metric", "litellm_proxy_failed_requests_metric",
        "litellm_request_total_latency_metric", "litellm_llm_api_latency_metric",
        "litellm_llm_api_time_to_first_token_metric", "litellm_overhead_latency_metric",
        "litellm_deployment_state", "litellm_deployment_successful_fallbacks", "litellm_deployment_failed_fallbacks",
        "litellm_total_tokens_metric"],
        "include_labels": ["requested_model", "model", "api_provider", "status_code", "exception_status"]}]}}, {}, []),
    "workers-2": ({}, {}, ["--num_workers", "2"]),
}


def percentile(values, pct):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port, path, headers, model):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.path = path
        self.headers = dict(headers, **{"Content-Type": "application/json"})
        self.model = model

    def chat(self) -> float:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 8})
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError("HTTP %s: %s" % (resp.status, data[:300]))
        return elapsed

    def stream_ttft(self) -> tuple[float, float]:
        body = json.dumps({"model": self.model, "stream": True, "messages": [{"role": "user", "content": "ping"}]})
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("HTTP %s: %s" % (resp.status, resp.read()[:300]))
        first = None
        while True:
            line = resp.readline()
            if not line:
                break
            if first is None and line.startswith(b"data: {") and b'"content":"' in line.replace(b" ", b"") \
                    and b'"content":""' not in line.replace(b" ", b""):
                first = time.perf_counter() - start
            if line.strip() == b"data: [DONE]":
                resp.read()
                break
        total = time.perf_counter() - start
        return (first if first is not None else total), total

    def close(self):
        self.conn.close()


def _repeat(port, path, headers, model, n, warmup, call):
    """One client on one connection: ``warmup`` unmeasured calls, then ``n`` measured ones."""
    client = Client(port, path, headers, model)
    for _ in range(warmup):
        call(client)
    results = [call(client) for _ in range(n)]
    client.close()
    return results


def sequential(port, path, headers, model, n, warmup):
    return _repeat(port, path, headers, model, n, warmup, Client.chat)


def concurrent(port, path, headers, model, clients, per_client):
    samples, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker():
        client = Client(port, path, headers, model)
        client.chat()  # connect + warm
        barrier.wait()
        mine = []
        try:
            for _ in range(per_client):
                mine.append(client.chat())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        client.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError("%d client errors, first: %s" % (len(errors), errors[0]))
    return samples, len(samples) / wall


def streaming(port, path, headers, model, n, warmup):
    results = _repeat(port, path, headers, model, n, warmup, Client.stream_ttft)
    return [r[0] for r in results], [r[1] for r in results]


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime of every process in a process group (the proxy and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp) is index 2 after the command
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def ms(x):
    return "%7.2f" % (x * 1000.0)


def run_variant(name, args, backend, ollama, cloud, tmp):
    overrides, env_over, extra = VARIANTS[name]
    if overrides is None:
        config = {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}
    else:
        config = role_base_config()
        for section, values in overrides.items():
            config[section] = dict(config.get(section) or {}, **values)
    path, built = write_gateway_config(tmp, backend, ollama, cloud, config=config)
    env = dict(gateway_env(), **env_over)
    extra = list(extra) + (["--num_workers", str(args.workers)] if args.workers else [])
    proxy = LiteLLMProxy(path, env=env, extra_args=extra, startup_timeout=120)
    proxy.start()
    try:
        direct = ("/v1/chat/completions", {}, MODEL, backend.port)
        gateway = ("/v1/chat/completions", {"Authorization": "Bearer " + MASTER_KEY}, MODEL, proxy.port)
        res = {"variant": name, "checksum": built["checksum"]}
        for label, (route, headers, model, port) in (("direct", direct), ("proxy", gateway)):
            cpu_before = group_cpu_seconds(proxy.proc.pid)
            seq = sequential(port, route, headers, model, args.requests, args.warmup)
            cpu_per_request = (group_cpu_seconds(proxy.proc.pid) - cpu_before) / (args.requests + args.warmup)
            conc, rps = concurrent(port, route, headers, model, args.concurrency, args.per_client)
            ttft, total = streaming(port, route, headers, model, args.stream_requests, args.warmup // 4 + 1)
            res[label] = {
                "seq_p50": percentile(seq, 50), "seq_p95": percentile(seq, 95), "seq_mean": statistics.mean(seq),
                "conc_p50": percentile(conc, 50), "conc_p95": percentile(conc, 95), "conc_rps": rps,
                "ttft_p50": percentile(ttft, 50), "ttft_p95": percentile(ttft, 95),
                "stream_total_p50": percentile(total, 50),
                "proxy_cpu_per_request": cpu_per_request,
            }
        return res
    finally:
        proxy.stop()


def report(res, args):
    d, p = res["direct"], res["proxy"]
    print("\n== variant: %s (config checksum %s...)" % (res["variant"], res["checksum"][:12]))
    print("%-34s %9s %9s %9s" % ("", "direct", "proxy", "added"))
    rows = [("sequential p50 (ms)", "seq_p50"), ("sequential p95 (ms)", "seq_p95"),
            ("%d concurrent p50 (ms)" % args.concurrency, "conc_p50"),
            ("%d concurrent p95 (ms)" % args.concurrency, "conc_p95"),
            ("streaming TTFT p50 (ms)", "ttft_p50"), ("streaming TTFT p95 (ms)", "ttft_p95"),
            ("streaming total p50 (ms)", "stream_total_p50")]
    for label, key in rows:
        print("%-34s %9s %9s %9s" % (label, ms(d[key]), ms(p[key]), ms(p[key] - d[key])))
    print("%-34s %9s %9s" % ("proxy CPU per request (ms)", "", ms(p["proxy_cpu_per_request"])))
    print("%-34s %9.0f %9.0f" % ("%d concurrent throughput (req/s)" % args.concurrency, d["conc_rps"], p["conc_rps"]))
    verdict = "MEETS" if (p["seq_p50"] - d["seq_p50"]) <= 0.010 else "MISSES"
    print("target <= 10 ms added at sequential p50: %s (%.2f ms)" % (verdict, (p["seq_p50"] - d["seq_p50"]) * 1000))


def main():
    parser = argparse.ArgumentParser(description="LiteLLM gateway overhead benchmark (direct vs through the proxy)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=25, help="requests per concurrent client")
    parser.add_argument("--stream-requests", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="--num_workers for the proxy (0: LiteLLM's default)")
    parser.add_argument("--variant", default="defaults", help="one of %s, or 'all'" % ", ".join(VARIANTS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    names = list(VARIANTS) if args.variant == "all" else args.variant.split(",")

    backend = OpenAIBackend("vllm", served_models=[MODEL]).start()
    ollama = OpenAIBackend("ollama").start()
    cloud = OpenAIBackend("cloud").start()
    print("LiteLLM gateway benchmark: %d sequential, %d clients x %d concurrent, %d streaming; %d CPUs, load %s"
          % (args.requests, args.concurrency, args.per_client, args.stream_requests, os.cpu_count(),
             "%.2f %.2f %.2f" % os.getloadavg()))
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                res = run_variant(name, args, backend, ollama, cloud, tmp)
                report(res, args)
                results.append(res)
    finally:
        for b in (backend, ollama, cloud):
            b.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
