"""Render roles of the collection in their ``rendered`` state through the REAL ansible-playbook
and load what they wrote, for the render-side tests of monitoring, ingress and network policy; and the
whole deploy playbook's render of the example lab with every component on (render_example_lab).

Nothing is emulated: the role runs exactly as ``<role>_state: rendered`` runs for a user, with
the example lab's inventory variables (inventory/example) unless a test overrides them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_VARS = sorted((REPO / "inventory" / "example" / "group_vars" / "gpu_lab").glob("*.yml"))


def render_roles(out_dir: Path, roles: list[str], extra_vars: dict | None = None, timeout: int = 600,
                 expect_failure: bool = False):
    """Run each role with ``<role>_state: rendered`` and ``<role>_render_dir: out_dir/<role>``.

    Returns out_dir; with ``expect_failure`` the failed run's output instead (and fails if it passed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # extra_vars go in as role vars: they must win over the example inventory's files (vars_files).
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars_files": [str(p) for p in EXAMPLE_VARS], "vars": {"ansible_python_interpreter": sys.executable},
             "roles": [{"role": f"ailab.gpu_lab.{role}",
                        "vars": dict(extra_vars or {}, **{f"{role}_state": "rendered",
                                                          f"{role}_render_dir": str(out_dir / role)})}
                       for role in roles]}]
    path = out_dir / "render-play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(out_dir / ".ansible-tmp"), PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(path)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if expect_failure:
        assert proc.returncode != 0, f"rendering {roles} was expected to fail:\n{proc.stdout[-3000:]}"
        return proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"rendering {roles} failed:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}")
    return out_dir


def load_objects(directory: Path) -> list[dict]:
    """Every Kubernetes object in the YAML files under ``directory`` (kustomization files excluded)."""
    objects = []
    for path in sorted(Path(directory).rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                objects.append(doc)
    return objects


def render_example_lab(render: Path) -> list[dict]:
    """The deploy playbook in render mode for the example lab with EVERY component on (the optional tracing
    (Phoenix), gpu_demand, Neo4j, searxng, Llama Stack and LiteLLM's Postgres too), vLLM the GPU owner; every object it
    wrote under ``render``/k8s."""
    from tests.conftest import run_playbook  # the one way the tests run a playbook

    run_playbook(REPO / "playbooks" / "deploy.yml", "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                 "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=vllm:qwen2.5-7b",
                 "-e", "litellm_postgres_enabled=true", "-e", json.dumps({"gpu_lab_components": {"tracing": True, "gpu_demand": True,
                                                                            "neo4j": True, "searxng": True,
                                                                            "llama_stack": True}}))
    return load_objects(Path(render) / "k8s")
