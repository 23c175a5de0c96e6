"""Render a Grafana dashboard of the monitoring role to a PNG, from its JSON, by evaluating every
panel's queries in a REAL Prometheus over SYNTHETIC series.

    python tools/dashboard_png.py [--dashboard gpu] [--out docs/images/dashboard-gpu.png]

What is real: the dashboard JSON (roles/monitoring/files/dashboards/<name>.json), its PromQL, and
Debian's Prometheus server (2.42) that evaluates it (`query_range` over the HTTP API), fed by
`promtool tsdb create-blocks-from openmetrics`. What is made up: the data. `synthetic_gpu_day()`
writes six hours of DCGM exporter and kube-state-metrics series for one RTX 4090 (24 GiB) whose owner
goes Ollama -> vLLM (a swap at 2 h, model load 5 min) -> none (a game from 4 h 30), and the swap
service's metrics for the same story (`_swap_service`). Only the GPU dashboard has such a scenario.
matplotlib draws the panels at their gridPos, Grafana-like.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "roles" / "monitoring" / "files" / "dashboards"
END = 1_796_126_400          # 2026-12-01T12:00:00Z: a fixed window, so the picture is reproducible
HOURS = 6
STEP = 30
VARS = {"$__rate_interval": "2m", "$__interval": "30s", "$namespace": "ai-lab", "$node": ".*", "$model": ".*",
        "$alias": ".*"}


# -- synthetic data ------------------------------------------------------------------------------------

def _load(t: float, seed: float) -> float:
    """A smooth, deterministic 0..1 load curve."""
    return max(0.0, min(1.0, 0.5 + 0.35 * math.sin(t / 900 + seed) + 0.15 * math.sin(t / 173 + 2 * seed)))


def synthetic_gpu_day() -> str:
    """OpenMetrics text: DCGM + kube-state-metrics for Ollama (0-2 h), vLLM (2 h-4 h 20), a game (4 h 30-6 h), and the
    swap service's metrics for the same story."""
    start = END - HOURS * 3600
    gpu = 'gpu="0",Hostname="gpu-box",modelName="NVIDIA GeForce RTX 4090"'
    total = 24564
    fams: dict[str, tuple[str, dict[str, list[tuple[int, float]]]]] = {}

    def add(name, labels, ts, value, kind="gauge"):
        fams.setdefault(name, (kind, {}))[1].setdefault(labels, []).append((ts, value))

    for ts in range(start, END + 1, STEP):
        h = (ts - start) / 3600
        if h < 2:
            phase, pod = "ollama", "ollama-6d9f7c5b8-x2kqp"
            util = 100 * _load(ts, 1.0) * 0.8
            used = 6350 + 40 * math.sin(ts / 600)
        elif h < 2 + 5 / 60:
            phase, pod = "loading", "vllm-7c4b9d8f6-m5tzr"
            util, used = 15.0, 2000 + (h - 2) * 12 * 19600
        elif h < 4 + 20 / 60:
            phase, pod = "vllm", "vllm-7c4b9d8f6-m5tzr"
            util = 100 * _load(ts, 2.5)
            used = 21880.0
        elif h < 4.5:
            phase, pod, util, used = "none", None, 0.0, 310.0
        else:
            phase, pod = "game", None
            util = 88 + 9 * math.sin(ts / 97)
            used = 7420 + 300 * math.sin(ts / 1300)
        labels = gpu + (f',exported_namespace="ai-lab",exported_pod="{pod}",exported_container="{pod.split("-")[0]}"'
                        if pod else "")
        add("DCGM_FI_DEV_FB_USED", labels, ts, round(used))
        add("DCGM_FI_DEV_FB_FREE", labels, ts, round(total - used))
        add("DCGM_FI_DEV_GPU_UTIL", labels, ts, round(util))
        add("DCGM_FI_DEV_MEM_COPY_UTIL", labels, ts, round(util * 0.55))
        add("DCGM_FI_DEV_GPU_TEMP", labels, ts, round(34 + 0.42 * util, 1))
        add("DCGM_FI_DEV_POWER_USAGE", labels, ts, round(28 + 3.9 * util, 1))
        owner = {"ollama": "ollama", "loading": "vllm", "vllm": "vllm"}.get(phase)
        for dep in ("ollama", "vllm"):
            add("kube_deployment_spec_replicas", f'namespace="ai-lab",deployment="{dep}"', ts, 1 if owner == dep else 0)
            ready = owner == dep and phase != "loading"
            add("kube_deployment_status_replicas_available", f'namespace="ai-lab",deployment="{dep}"', ts, 1 if ready else 0)
        if pod:
            add("kube_pod_container_resource_requests",
                f'namespace="ai-lab",pod="{pod}",container="{pod.split("-")[0]}",resource="nvidia_com_gpu",unit="integer",node="gpu-box"',
                ts, 1)
    _swap_service(start, add)
    lines = []
    for name, (kind, series) in fams.items():
        lines.append(f"# TYPE {name} {kind}")
        for labels, points in series.items():
            lines += [f"{name}{{{labels}}} {v} {t}" for t, v in points]
            if points[-1][0] < END:
                # A scraped series that disappears gets a staleness marker; a backfilled one cannot, so a
                # NaN right after its end keeps it from lingering for the 5-minute lookback (max() skips NaN).
                lines.append(f"{name}{{{labels}}} NaN {points[-1][0] + STEP}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


SWAP_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)   # gpu_lab_swap_duration_seconds (docs/gpu_swap.md)


def _swap_service(start: int, add) -> None:
    """The on-demand swap service's metrics for the same day: a failed request swap at 1 h 30, the swap to vLLM
    at 2 h (a request, 5 min of model load), GameMode's swap to none at 4 h 20, a request refused while gaming at
    4 h 45. Like prometheus_client, a labelled series exists from its first event on (value 1)."""
    job = 'namespace="ai-lab",job="gpu-demand",pod="gpu-demand-5f7d8c9b6-q8wzn"'
    events = [(1.5 * 3600, "ollama", "vllm", "request", "failed", 41.0), (2 * 3600, "ollama", "vllm", "request", "ok", 306.0),
              (4 * 3600 + 1200, "vllm", "none", "gamemode", "ok", 14.0), (4.75 * 3600, "none", "vllm", "request", "refused", 0.0)]
    for ts in range(start, END + 1, STEP):
        t = ts - start
        owner = "none" if t >= 4 * 3600 + 1200 + 14 else "vllm" if t >= 2 * 3600 + 306 else "ollama"
        for name in ("ollama", "vllm", "none"):
            add("gpu_lab_gpu_owner", f'{job},owner="{name}"', ts, 1 if name == owner else 0)
        done = [e for e in events if e[0] + e[5] <= t]
        for key in sorted({e[1:5] for e in done}):
            add("gpu_lab_swaps_total", f'{job},from="{key[0]}",to="{key[1]}",trigger="{key[2]}",result="{key[3]}"', ts,
                sum(1 for e in done if e[1:5] == key), kind="unknown")
        for key in sorted({e[1:4] for e in done if e[4] == "ok"}):
            ok = [e[5] for e in done if e[1:4] == key and e[4] == "ok"]
            labels = f'{job},from="{key[0]}",to="{key[1]}",trigger="{key[2]}"'
            for le in SWAP_BUCKETS + ("+Inf",):
                count = sum(1 for sec in ok if le == "+Inf" or sec <= le)
                add("gpu_lab_swap_duration_seconds_bucket", f'{labels},le="{le}"', ts, count, kind="unknown")
            add("gpu_lab_swap_duration_seconds_sum", labels, ts, sum(ok), kind="unknown")
            add("gpu_lab_swap_duration_seconds_count", labels, ts, len(ok), kind="unknown")


# -- a real Prometheus over the data -------------------------------------------------------------------

class Prometheus:
    def __init__(self, workdir: Path, openmetrics: str):
        self.dir = workdir
        for tool in ("promtool", "prometheus"):
            if not shutil.which(tool):
                sys.exit(f"{tool} not found: apt-get install prometheus (tools/system-deps.sh)")
        (workdir / "data.om").write_text(openmetrics)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(workdir / "data.om"),
                        str(workdir / "tsdb")], check=True, capture_output=True, text=True)
        (workdir / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "w"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        sys.exit("prometheus did not become ready:\n" + (workdir / "prometheus.log").read_text()[-3000:])

    def query_range(self, expr: str) -> list[dict]:
        args = urllib.parse.urlencode({"query": expr, "start": END - HOURS * 3600, "end": END, "step": STEP})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/query_range?{args}", timeout=60) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body}")
        return body["data"]["result"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def substitute(expr: str) -> str:
    for var, value in sorted(VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def legend(fmt: str, metric: dict) -> str:
    out = fmt or ""
    for key, value in metric.items():
        out = out.replace("{{" + key + "}}", value)
    return out or ",".join(f"{k}={v}" for k, v in metric.items())


def evaluate(dashboard: dict, prom: Prometheus) -> dict[int, list[tuple[str, list, list]]]:
    """panel id -> [(legend, times, values)] for every series every target returned."""
    out = {}
    for panel in dashboard["panels"]:
        series = []
        for target in panel["targets"]:
            for result in prom.query_range(substitute(target["expr"])):
                ts = [float(t) for t, _v in result["values"]]
                vs = [float(v) for _t, v in result["values"]]   # "NaN" parses; matplotlib leaves a gap
                series.append((legend(target.get("legendFormat", ""), result["metric"]), ts, vs))
        out[panel["id"]] = series
    return out


# -- drawing -------------------------------------------------------------------------------------------

BG, PANEL, TEXT, MUTED = "#111217", "#181b1f", "#d8d9da", "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a"]


def _fmt(value: float, unit: str | None) -> str:
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "percent":
        return f"{value:.0f}%"
    if unit == "mbytes":
        return f"{value / 1024:.1f} GiB"
    if unit == "celsius":
        return f"{value:.0f} °C"
    if unit == "watt":
        return f"{value:.0f} W"
    return f"{value:g}"


def _threshold_color(panel: dict, value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps") or []
    color = "#73bf69"
    for step in steps:
        if step["value"] is None or value >= step["value"]:
            color = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "text": "#6e7079"}.get(step["color"], step["color"])
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        hit = mapping.get("options", {}).get(str(int(value)) if value == int(value) else str(value))
        if hit and hit.get("color"):
            color = {"green": "#73bf69", "text": "#6e7079"}.get(hit["color"], hit["color"])
    return color


def _mapped(panel: dict, value: float, unit) -> str:
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        hit = mapping.get("options", {}).get(str(int(value)) if value == int(value) else str(value))
        if hit:
            return hit["text"]
    return _fmt(value, unit)


def draw(dashboard: dict, data: dict, out: Path, subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime, timezone

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    fig = plt.figure(figsize=(18, rows * 0.52 + 1.2), facecolor=BG)
    fig.text(0.012, 1 - 0.35 / (rows * 0.52 + 1.2), dashboard["title"], color=TEXT, fontsize=16, weight="bold", va="top")
    fig.text(0.012, 1 - 0.8 / (rows * 0.52 + 1.2), subtitle, color=MUTED, fontsize=10, va="top")
    top = 1 - 1.2 / (rows * 0.52 + 1.2)
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        pad = 0.004
        left, width = g["x"] / 24 + pad, g["w"] / 24 - 2 * pad
        height = g["h"] / rows * top - 2 * pad
        bottom = top - (g["y"] + g["h"]) / rows * top + pad
        frame = fig.add_axes((left, bottom, width, height), facecolor=PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color("#2c3235")
        frame.set_title(panel["title"], color=TEXT, fontsize=10, loc="left", pad=4)
        if panel["type"] == "timeseries":   # room for the tick labels inside the panel
            ax = fig.add_axes((left + 0.045 * (24 / 24), bottom + 0.035, width - 0.055, height - 0.05), facecolor=PANEL)
        else:
            ax = frame
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        unit = panel["fieldConfig"]["defaults"].get("unit")
        series = data[panel["id"]]
        if panel["type"] == "timeseries":
            stacked = panel["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode") == "normal"
            base = None
            for i, (name, ts, vs) in enumerate(series):
                times = [datetime.fromtimestamp(t, timezone.utc) for t in ts]
                color = PALETTE[i % len(PALETTE)]
                if stacked and base is not None and len(base) == len(vs) and ts == series[i - 1][1]:
                    upper = [a + b for a, b in zip(base, vs)]
                    ax.fill_between(times, base, upper, color=color, alpha=0.35, lw=0)
                    ax.plot(times, upper, color=color, lw=1.4, label=name)
                    base = upper
                else:
                    ax.fill_between(times, vs, color=color, alpha=0.18, lw=0)
                    ax.plot(times, vs, color=color, lw=1.6, label=name)
                    base = vs
            ax.set_xlim(datetime.fromtimestamp(END - HOURS * 3600, timezone.utc), datetime.fromtimestamp(END, timezone.utc))
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
            ax.tick_params(colors=MUTED, labelsize=8)
            ax.grid(color="#2c3235", lw=0.6)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p, u=unit: _fmt(v, u)))
            if series:
                ax.legend(loc="upper left", fontsize=7, frameon=False, labelcolor=TEXT, ncol=2)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            # Stat, gauge and table show the value at the end of the window (series that ended earlier are gone).
            last = [(name, vs[-1]) for name, ts, vs in series if ts and ts[-1] == END]
            if panel["type"] == "table":
                for i, (name, value) in enumerate(last[:4] or [("(no pod: memory held outside Kubernetes)", None)]):
                    text = name if value is None else f"{name}   {_fmt(value, unit)}"
                    ax.text(0.04, 0.78 - i * 0.2, text, color=TEXT, fontsize=9, transform=ax.transAxes)
            else:
                for i, (name, value) in enumerate(last):
                    x = (i + 0.5) / len(last)
                    ax.text(x, 0.45, _mapped(panel, value, unit), color=_threshold_color(panel, value), fontsize=20,
                            weight="bold", ha="center", va="center", transform=ax.transAxes)
                    ax.text(x, 0.12, name, color=MUTED, fontsize=8, ha="center", transform=ax.transAxes)
    fig.savefig(out, dpi=90, facecolor=BG)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", default="gpu", choices=["gpu"])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "dashboard-gpu.png"))
    parser.add_argument("--report", help="write panel id -> number of series returned (JSON) here")
    args = parser.parse_args(argv)
    dashboard = json.loads((DASHBOARDS / f"{args.dashboard}.json").read_text())
    with tempfile.TemporaryDirectory(prefix="ailab-dash-") as tmp:
        prom = Prometheus(Path(tmp), synthetic_gpu_day())
        try:
            data = evaluate(dashboard, prom)
        finally:
            prom.stop()
    if args.report:
        Path(args.report).write_text(json.dumps({str(k): len(v) for k, v in data.items()}))
    draw(dashboard, data, Path(args.out),
         "Synthetic data evaluated by a real Prometheus: Ollama owns the GPU, swap to vLLM at 08:00, "
         "swap to none at 10:20 (GameMode), a game from 10:30 (memory used, no pod); a failed swap at 07:30")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
