"""Fixtures shared by every test: the real Kubernetes control plane and a helper to run playbooks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.kube_ns import KubeNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
STARTUPS = os.path.join(REPO, ".cache", "controlplane-startups.txt")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """The real control plane (tests/support/controlplane.py), one per pytest process: etcd,
    kube-apiserver, kube-controller-manager, kube-scheduler, kwok; node gpu-box (nvidia.com/gpu: 1)."""
    cp = ControlPlane(str(tmp_path_factory.mktemp("controlplane")))
    cp.start()
    os.makedirs(os.path.dirname(STARTUPS), exist_ok=True)
    with open(STARTUPS, "a", encoding="utf-8") as handle:  # reported by pytest_terminal_summary
        handle.write(f"{os.getpid()} {cp.startup_seconds:.1f}\n")
    yield cp
    cp.stop()


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput") and os.path.exists(STARTUPS):
        os.unlink(STARTUPS)  # the controller (or a plain run) starts the count


def pytest_terminal_summary(terminalreporter):
    if os.path.exists(STARTUPS):
        with open(STARTUPS, encoding="utf-8") as handle:
            times = [line.split()[1] for line in handle if line.strip()]
        terminalreporter.write_line(f"real control plane started {len(times)} time(s) for pytest: "
                                    f"{', '.join(t + ' s' for t in times)} from nothing to a Ready GPU node")


@pytest.fixture
def kube(control_plane):
    """A fresh namespace on the shared control plane (``kube.namespace``, ``kube.kubeconfig``).

    Tests of one pytest process run one at a time, so the GPU node is theirs alone: at teardown the
    namespace is deleted and its pods are force-deleted, freeing the GPU for the next test."""
    ns = KubeNamespace.create(control_plane)
    yield ns
    ns.cleanup()


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
