"""The example lab's model catalog: the one file the inventory, the tests and the benchmark share."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLE_CATALOG_PATH = Path(__file__).resolve().parents[2] / "inventory" / "example" / "group_vars" / "gpu_lab" / "models.yml"


def load_example_catalog():
    """``{"gpu_lab_models": [...], "gpu_lab_routes": {...}}`` from inventory/example."""
    return yaml.safe_load(EXAMPLE_CATALOG_PATH.read_text())
