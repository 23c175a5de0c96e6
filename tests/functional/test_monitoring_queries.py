"""Every PromQL expression the monitoring role ships (alert rules and Grafana dashboards) is
valid and selects metrics that really exist.

REAL: ansible-playbook renders the monitoring role; Debian's promtool parses every expression
(the dashboards' queries are written into a rule file as recording rules, Grafana variables
substituted); the pinned LiteLLM proxy (litellm[proxy] from .venv-litellm) serves real
traffic — successes, a fallback, failures — and its /metrics is what the gateway queries are
checked against (names AND the labels the queries group or filter by).
EMULATED: the inference servers behind LiteLLM (tests/support/openai_backend.py).
FROM UPSTREAM SOURCE, not run here: the vLLM, DCGM, kube-state-metrics, node-exporter and
kubelet names, in tests/functional/data/metric_names.yml (each list says where it came from).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.deploy_render import load_objects, render_roles
from tests.support.promql import metric_selectors, substitute_grafana_vars

NAMES = yaml.safe_load((Path(__file__).parent / "data" / "metric_names.yml").read_text())


def upstream_names() -> set[str]:
    names = set()
    for exporter in NAMES.values():
        names.update(exporter.get("gauges", []))
        names.update(exporter.get("counters_exposed_as_is", []))
        names.update(f"{c}_total" for c in exporter.get("counters", []))
        for hist in exporter.get("histograms", []):
            names.update(f"{hist}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    """[(where, expr)] for every alert rule and every dashboard target, Grafana variables substituted."""
    out = render_roles(tmp_path_factory.mktemp("render"), ["monitoring"])
    found = []
    for obj in load_objects(out / "monitoring"):
        if obj["kind"] == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                found += [(f"rule {r['alert']}", r["expr"]) for r in group["rules"]]
        if obj["kind"] == "ConfigMap" and obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            for text in obj["data"].values():
                dashboard = json.loads(text)
                for panel in dashboard["panels"]:
                    for target in panel["targets"]:
                        found.append((f"dashboard {dashboard['uid']} panel {panel['title']!r} {target['refId']}",
                                      substitute_grafana_vars(target["expr"])))
                for var in dashboard["templating"]["list"]:
                    if var["type"] == "query":
                        inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"]["query"])
                        assert inner, f"{dashboard['uid']} variable {var['name']}: not label_values(selector, label)"
                        found.append((f"dashboard {dashboard['uid']} variable {var['name']}",
                                      substitute_grafana_vars(inner.group(1))))
    assert len(found) > 40, found
    return found


def promtool_check(exprs: list[str], work: Path) -> subprocess.CompletedProcess:
    rules = [{"record": f"ai_lab:query:{i}", "expr": e} for i, e in enumerate(exprs)]
    (work / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run `make setup` (tools/system-deps.sh)"
    return subprocess.run([binary, "check", "rules", "queries.yml"], cwd=work, capture_output=True, text=True,
                          timeout=120, check=False)


def test_every_query_parses_in_real_promtool(queries, tmp_path):
    proc = promtool_check([e for _w, e in queries], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(queries)} rules found" in proc.stdout


def test_promtool_rejects_a_broken_query(tmp_path):
    """The check can fail: a typo'd expression is refused by the real parser."""
    proc = promtool_check(["sum by (le (rate(vllm:e2e_request_latency_seconds_bucket[5m]))"], tmp_path)
    assert proc.returncode != 0 and "parse error" in (proc.stdout + proc.stderr)


def test_non_litellm_metric_names_are_in_the_upstream_lists(queries):
    known = upstream_names()
    unknown = []
    for where, expr in queries:
        names, regexes = metric_selectors(expr)
        for name in names:
            if not name.startswith("litellm_") and name not in known:
                unknown.append((where, name))
        for regex in regexes:
            assert re.fullmatch(r"litellm_[a-z_()|]+", regex), f"{where}: only LiteLLM uses __name__ regexes: {regex}"
    assert unknown == [], "metric names in no upstream list (tests/functional/data/metric_names.yml):\n" + \
        "\n".join(f"  {w}: {n}" for w, n in unknown)


def test_the_name_check_can_fail():
    known = upstream_names()
    names, _ = metric_selectors('sum(rate(vllm:gpu_cache_usage_perc{namespace="ai-lab"}[5m]))')
    assert names == {"vllm:gpu_cache_usage_perc"} and not names <= known   # renamed in vLLM 0.11


def _samples(exposition: str) -> dict[str, list[dict]]:
    """metric name -> label dicts of its samples, from Prometheus text exposition."""
    out: dict[str, list[dict]] = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE "):
                out.setdefault(line.split()[2], [])
            continue
        match = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s", line)
        if match:
            labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
            out.setdefault(match.group(1), []).append(labels)
    return out


def _labels_used(expr: str) -> set[str]:
    used = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^()]*)\)", expr):
        used.update(x.strip() for x in clause.split(",") if x.strip())
    for matchers in re.findall(r"\{([^{}]*)\}", expr):
        used.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return used - {"le", "__name__"}


@pytest.mark.slow
def test_litellm_metric_names_and_labels_exist_in_the_real_proxy(queries, tmp_path):
    from tests.support.litellm_proxy import LiteLLMProxy, gateway_env, write_gateway_config
    from tests.support.openai_backend import OpenAIBackend

    vllm = OpenAIBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama = OpenAIBackend("ollama").start()
    cloud = OpenAIBackend("cloud").start()
    try:
        path, _built = write_gateway_config(tmp_path, vllm, ollama, cloud)
        with LiteLLMProxy(path, env=gateway_env()) as proxy:
            assert proxy.chat("llama3.1-8b")[0] == 200          # a plain success
            vllm.set_failure(500)
            assert proxy.chat("qwen2.5-7b")[0] == 200           # vLLM fails -> fallback to Ollama
            ollama.set_failure(503)
            cloud.set_failure(500)
            assert proxy.chat("qwen2.5-7b")[0] >= 500           # every fallback fails -> failed request
            status, exposition = proxy.get("/metrics/")
            assert status == 200, exposition
    finally:
        for backend in (vllm, ollama, cloud):
            backend.stop()
    samples = _samples(exposition)
    (tmp_path / "litellm-metrics.txt").write_text(exposition)

    problems = []
    for where, expr in queries:
        names, regexes = metric_selectors(expr)
        litellm = {n for n in names if n.startswith("litellm_")}
        for regex in regexes:
            matched = {n for n in samples if re.fullmatch(regex, n)}
            if not matched:
                problems.append(f"{where}: no LiteLLM metric matches {regex}")
            litellm |= matched
        for name in sorted(litellm):
            if name not in samples:
                problems.append(f"{where}: LiteLLM exposes no {name}")
                continue
            have = set().union(*samples[name]) if samples[name] else set()
            missing = _labels_used(expr) - have
            if samples[name] and missing:
                problems.append(f"{where}: {name} has no label {sorted(missing)} (has {sorted(have)})")
            if not samples[name]:
                problems.append(f"{where}: {name} has no sample after a success, a fallback and a failure")
    assert problems == [], "\n".join(problems) + f"\n(metrics in {tmp_path / 'litellm-metrics.txt'})"
