"""The kube-state-metrics, node-exporter and kubelet names our alerts and dashboards use exist in
the upstream Go source of the pinned versions (tests/functional/data/metric_names.yml).

REAL: the source itself, fetched with `go mod download` from the Go module proxy (the same proxy
`make setup` builds the control plane from; k8s.io/kubernetes is already in Go's module cache then).
Nothing runs: the names are found as the literal text that defines them. Not checked here: vLLM and
DCGM (their lists cite a file of a public repository, not a Go module) and LiteLLM (checked against
the real proxy's /metrics in test_monitoring_queries.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

NAMES = yaml.safe_load((Path(__file__).parent / "data" / "metric_names.yml").read_text())
PINNED = {key: value for key, value in NAMES.items() if "module" in value}


def module_dir(module):
    """The module's source directory in Go's module cache (downloaded on first use)."""
    go = shutil.which("go")
    assert go, "Go is needed (make setup builds the control plane with it)"
    proc = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True, timeout=600,
                          check=False, cwd="/")
    info = json.loads(proc.stdout or "{}")
    assert proc.returncode == 0 and info.get("Dir"), f"go mod download {module}: {info.get('Error') or proc.stderr}"
    return Path(info["Dir"])


def test_the_three_go_exporters_are_pinned():
    assert sorted(PINNED) == ["kube_state_metrics", "kubelet", "node_exporter"]


@pytest.mark.parametrize("exporter", sorted(PINNED))
def test_every_listed_gauge_is_defined_in_the_pinned_upstream_source(exporter):
    entry = PINNED[exporter]
    assert sorted(entry["evidence"]) == sorted(entry["gauges"]), "every gauge needs its evidence, and only those"
    source = module_dir(entry["module"])
    missing = []
    for gauge, pairs in entry["evidence"].items():
        for relative, literal in pairs:
            path = source / relative
            if not path.is_file() or literal not in path.read_text(encoding="utf-8"):
                missing.append(f"{gauge}: {literal!r} not in {entry['module']}/{relative}")
    assert missing == [], "\n".join(missing)
