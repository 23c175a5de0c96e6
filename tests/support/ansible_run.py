"""Run one module through real Ansible (ansible-playbook, json callback) and return its result.

Module tests go through Ansible itself, so the argument spec, the documented defaults,
no_log handling and check mode are exercised exactly as a playbook would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONPATH=REPO)
    env.update(extra or {})
    return env


def run_module(module, args, check=False, diff=False, verbosity=0, extra_env=None, timeout=300):
    """Return ``(result, stdout)``: the task's result dict and the whole ansible-playbook output."""
    task = {"name": "module under test", module: args, "register": "out", "ignore_errors": True}
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": [task]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=os.environ.get("TMPDIR", "/tmp"), delete=False) as handle:
        yaml.safe_dump(play, handle)
        path = handle.name
    try:
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", path]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        argv += ["-" + "v" * verbosity] if verbosity else []
        env = ansible_env(dict(extra_env or {}, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))
        if verbosity:
            env.pop("ANSIBLE_STDOUT_CALLBACK")
        proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, check=False)
    finally:
        os.unlink(path)
    if verbosity:
        return None, proc.stdout
    start = proc.stdout.find("{")
    try:
        data = json.loads(proc.stdout[start:])
    except ValueError as exc:
        raise AssertionError(f"ansible-playbook gave no JSON result:\n{proc.stdout[-4000:]}") from exc
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, proc.stdout


def write_lab_inventory(directory, host, node):
    """An inventory file in ``directory`` with one host ``node`` of group gpu_lab holding ``host``'s variables."""
    import uuid  # pylint: disable=import-outside-toplevel
    path = os.path.join(str(directory), f"inventory-{uuid.uuid4().hex[:6]}.yml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"children": {"gpu_lab": {"hosts": {node: host}}}}}, handle)
    return path


def deploy_lab_inventory(directory, kube, components, catalog, **extra):
    """An inventory for the deploy playbook against the test's real control plane (``kube``: its kubeconfig and
    namespace; kwok's GPU node ``DEFAULT_NODE``): Ollama the GPU owner, ``components`` as gpu_lab_components, no model
    downloads and no waits on pods kwok never runs, the device plugin's HelmChart in the test's namespace (not
    kube-system, which every test shares); ``extra`` then ``catalog`` (its gpu_lab_models) on top."""
    from tests.support.controlplane import DEFAULT_NODE  # pylint: disable=import-outside-toplevel
    host = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "gpu_lab_kubeconfig": kube.kubeconfig, "gpu_lab_kube_context": "", "gpu_lab_namespace": kube.namespace,
        "gpu_lab_gpu_owner": "ollama", "gpu_lab_gpu_node": DEFAULT_NODE,
        "gpu_lab_render_dir": os.path.join(str(directory), "rendered"),
        "gpu_lab_components": dict(components),
        "vllm_pull_enabled": False, "ollama_pull_enabled": False, "ollama_wait": False,
        "vllm_models_host_path": os.path.join(str(directory), "models"), "gpu_prepull_wait": False,
        "gpu_runtime_chart_namespace": kube.namespace,
    }
    host.update(extra)
    host.update(catalog)
    return write_lab_inventory(directory, host, DEFAULT_NODE)


def recap(out):
    """``(changed, failed)`` of the PLAY RECAP line of an ansible-playbook run's output."""
    import re  # pylint: disable=import-outside-toplevel
    match = re.search(r"ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", out)
    assert match, out[-3000:]
    return int(match.group(1)), int(match.group(2))
