"""A bad ingress address fails the deploy playbook in its early check, before anything is rendered or applied.

Before, `gpu_lab_tailnet_ip: 192.168.1.10` was refused only by the ingress role, near the end of the play,
after the namespace, the device plugin, monitoring, Qdrant, LiteLLM, Ollama, vLLM and Open WebUI had been
applied (or rendered). Now the lab role's first tasks run every role's own rule (tests/unit/data/deploy_cases.yml).

REAL: ansible-playbook with the deploy playbook and the example lab's inventory, pointed at the real control
plane of the ``kube`` fixture (kube-apiserver and controllers; kwok nodes), so that a check that did not stop
the run would really write there; render mode writes to a real directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import REPO, run_playbook

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"


def test_bad_ingress_address_fails_before_anything_is_applied_or_rendered(tmp_path, kube):
    monitoring = f"{kube.namespace}-mon"
    kube.other_namespaces.append(monitoring)
    lab = {"ansible_connection": "local", "gpu_lab_kubeconfig": kube.kubeconfig, "gpu_lab_namespace": kube.namespace,
           "gpu_lab_monitoring_namespace": monitoring, "gpu_lab_tailnet_ip": "192.168.1.10",
           "gpu_lab_tailnet_name": "gpu-box.tail1234.ts.net", "ingress_tls_source": "existing",
           "vllm_pull_enabled": False, "ollama_pull_enabled": False}
    watched = [kube.namespace, monitoring, "kube-system"]
    before = kube.snapshot(watched)
    render = tmp_path / "rendered"
    runs = {"apply": run_playbook(PLAYBOOK, "-i", "inventory/example", "-e", json.dumps(lab), check=False),
            "render": run_playbook(PLAYBOOK, "-i", "inventory/example", "-e", json.dumps(lab),
                                   "-e", "gpu_lab_render_only=true", "-e", f"gpu_lab_render_dir={render}", check=False)}
    for mode, proc in runs.items():
        out = proc.stdout
        assert proc.returncode != 0, f"{mode}: the deploy passed with a LAN address:\n{out[-3000:]}"
        assert "ingress_tailnet_ip: got '192.168.1.10', not an address in 100.64.0.0/10 (the tailnet)" in out, out[-3000:]
        assert "set gpu_lab_tailnet_ip" in out
        # the run stopped in the lab role's early check: no task of any other role ran
        tasks = re.findall(r"^TASK \[([^\]]+)\]", out, re.M)
        assert tasks[-1] == "ailab.gpu_lab.lab : Check every deploy input before anything is applied", (mode, tasks)
        assert not [t for t in tasks if t.startswith("ailab.gpu_lab.") and not t.startswith("ailab.gpu_lab.lab ")], tasks
        assert "changed=0" in out and "failed=1" in out
    assert kube.snapshot(watched) == before, "the failed deploy wrote to the cluster"
    assert kube.get("PersistentVolume", f"{kube.namespace}-vllm-models") is None
    assert not render.exists(), "the failed render wrote files"


def test_bad_role_arguments_are_reported_together_by_the_one_spec_check(tmp_path):
    """Two roles' arguments against their meta/argument_specs.yml (ailab.gpu_lab.validate_role_specs, one task for
    every component role): both problems in one report, each naming its role's spec; a role whose component is off
    is not checked in render mode (tracing is off in the example lab). REAL: ansible-playbook, render mode."""
    render = tmp_path / "rendered"
    bad = {"ansible_connection": "local", "vllm_pull_enabled": False, "ollama_pull_enabled": False,
           "ingress_tls_source": "existing", "gpu_lab_render_only": True, "gpu_lab_render_dir": str(render),
           "qdrant_image_pull_policy": "always", "open_webui_wait_timeout": "soon",
           "phoenix_image_pull_policy": "sometimes"}
    proc = run_playbook(PLAYBOOK, "-i", "inventory/example", "-e", json.dumps(bad), check=False)
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert ("value of qdrant_image_pull_policy must be one of: Always, IfNotPresent, Never, got: always "
            "(meta/argument_specs.yml of role ailab.gpu_lab.qdrant)") in out, out[-3000:]
    assert re.search(r"argument 'open_webui_wait_timeout' is of type str[^\n]*\(meta/argument_specs.yml of role "
                     r"ailab.gpu_lab.open_webui\)", out), out[-3000:]
    assert "phoenix_image_pull_policy" not in out.split("deploy inputs:", 1)[-1]
    tasks = re.findall(r"^TASK \[([^\]]+)\]", out, re.M)
    assert tasks[-1] == "ailab.gpu_lab.lab : Check every deploy input before anything is applied", tasks
    assert not render.exists(), "the failed render wrote files"
