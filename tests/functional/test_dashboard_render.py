"""The GPU dashboard's queries, evaluated by a REAL Prometheus, and its picture.

REAL: Debian's prometheus server and promtool (backfill), the dashboard JSON the monitoring role
ships, matplotlib. SYNTHETIC: the data (tools/dashboard_png.py synthetic_gpu_day: six hours of DCGM
and kube-state-metrics series with the exporters' metric and label names, Ollama -> vLLM -> a game, and
the swap service's gpu_lab_* series for the same story, each born at its first event like prometheus_client's).
Every panel must return series, so a query whose selector or grouping does not fit the exporters'
labels (say, a typo'd label or an aggregation that drops the one the legend uses) shows up here.
"""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_every_gpu_panel_returns_series_from_a_real_prometheus(tmp_path):
    out, report = tmp_path / "gpu.png", tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(Path(REPO) / "tools" / "dashboard_png.py"), "--out", str(out),
                           "--report", str(report)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = json.loads(report.read_text())
    dashboard = json.loads((Path(REPO) / "roles" / "monitoring" / "files" / "dashboards" / "gpu.json").read_text())
    assert sorted(counts, key=int) == [str(p["id"]) for p in dashboard["panels"]]
    empty = [p["title"] for p in dashboard["panels"] if counts[str(p["id"])] == 0]
    assert empty == [], f"panels with no data: {empty}"
    # one series per GPU once the pod labels are aggregated away (else a swap splits the line in two)
    for panel in dashboard["panels"]:
        if panel["title"] in ("Temperature", "Power draw", "Framebuffer used"):
            assert counts[str(panel["id"])] == 1, panel["title"]
    # the swap service's panels: a line per owner, per (trigger, result) that happened, p50 and p95
    assert {p["title"]: counts[str(p["id"])] for p in dashboard["panels"] if "gpu_lab_" in json.dumps(p["targets"])} == {
        "GPU owner (swap service)": 3, "Swaps by trigger and result (last hour)": 4, "Swap duration p50 / p95": 2}
    assert out.stat().st_size > 50_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
