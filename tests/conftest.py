"""Fixtures shared by every test: the Kubernetes emulator and a helper to run playbooks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.kube_emulator import KubeEmulator, gpu_node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture
def kube(tmp_path):
    """A started Kubernetes emulator: node gpu-node-1 (nvidia.com/gpu: 1), namespace ai-lab."""
    emu = KubeEmulator(nodes=[gpu_node("gpu-node-1")], workdir=str(tmp_path),
                       objects=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai-lab"}}])
    emu.start()
    yield emu
    emu.stop()


def run_playbook(playbook, *args, extra_env=None, check=True, timeout=600):
    """Run ansible-playbook from the checkout; return the CompletedProcess (stdout+stderr in .stdout)."""
    env = dict(os.environ)
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONPATH=REPO)
    env.update(extra_env or {})
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), str(playbook), *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ansible-playbook {playbook} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


@pytest.fixture
def playbook_runner():
    return run_playbook
