"""The example lab's model catalog: the one file the inventory, the tests and the benchmark share."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

EXAMPLE_CATALOG_PATH = Path(__file__).resolve().parents[2] / "inventory" / "example" / "group_vars" / "gpu_lab" / "models.yml"


def load_example_catalog():
    """``{"gpu_lab_models": [...], "gpu_lab_routes": {...}}`` from inventory/example."""
    return yaml.safe_load(EXAMPLE_CATALOG_PATH.read_text())


def example_vision_entry() -> dict:
    """The example catalog's commented-out vision entry (DeepSeek-OCR), uncommented: what a user gets by removing
    the ``# `` of its lines."""
    lines = EXAMPLE_CATALOG_PATH.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^  # - name: deepseek-ocr$", line))
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    return yaml.safe_load("\n".join(block))[0]
