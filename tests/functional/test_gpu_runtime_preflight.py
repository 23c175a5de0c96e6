"""The device plugin's pre-flight (roles/gpu_runtime/tasks/state_declared.yml) against the real control plane: the
RuntimeClass and the GPU node are read with the kube_objects lookup; a missing one fails naming it and the fix,
before any object is declared."""

from __future__ import annotations

import re
import sys

import yaml

from tests.conftest import run_playbook


def _play(kube, tmp_path, runtime_class):
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": [{"name": "Declare the device plugin", "ansible.builtin.import_role": {
                 "name": "ailab.gpu_lab.gpu_runtime", "tasks_from": "state_declared"},
                 "vars": {"gpu_runtime_kubeconfig": kube.kubeconfig, "gpu_runtime_kube_context": "",
                          "gpu_runtime_runtime_class": runtime_class}},
                 {"name": "Show what was declared", "ansible.builtin.debug": {
                     "msg": "declared {{ gpu_runtime_manifest.files['device-plugin.yaml'] | length }} objects"}}]}]
    path = tmp_path / "runtime.yml"
    path.write_text(yaml.safe_dump(play))
    return run_playbook(path, "-i", "localhost,", check=False)


def test_a_missing_runtime_class_fails_naming_it_before_anything_is_declared(kube, tmp_path):
    proc = _play(kube, tmp_path, "no-such-class")
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert ("The NVIDIA device plugin cannot work here. RuntimeClass no-such-class does not exist: k3s creates it "
            "when it finds the NVIDIA container runtime on its PATH") in text, text[-3000:]
    assert "No node carries the label" not in text   # the control plane's gpu-box carries it
    assert "TASK [Show what was declared]" not in proc.stdout   # it stopped at the check


def test_with_the_runtime_class_and_a_gpu_node_the_objects_are_declared(kube, tmp_path):
    kube.apply({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": kube.namespace},
                "handler": "nvidia"})
    try:
        proc = _play(kube, tmp_path, kube.namespace)
        assert proc.returncode == 0, proc.stdout[-3000:]
        declared = re.search(r"declared (\d+) objects", proc.stdout)
        assert declared and int(declared.group(1)) > 0, proc.stdout[-2000:]
    finally:
        kube.delete("RuntimeClass", kube.namespace, api_version="node.k8s.io/v1")
