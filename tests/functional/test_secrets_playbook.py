"""The secrets playbook run for real through ansible-playbook against the Kubernetes emulator.

Real: ansible-playbook, the role, the lab_secrets module, python-dotenv, the kubernetes client, and
the Kubernetes API (the real kube-apiserver of the ``kube`` fixture: a fresh namespace per test).
"""

from __future__ import annotations

import glob
import json
import os
import re

from tests.conftest import run_playbook
from tests.support.secrets_fixtures import (
    GOOD_ENV,
    PLAYBOOK,
    all_secret_values,
    env_text,
    secrets,
    snapshot,
    write_env,
    write_inventory,
)

EXPECTED = ["grafana-admin", "hf-token", "litellm-env", "litellm-key-open-webui", "litellm-postgres", "open-webui-secret",
            "qdrant-api-key"]


def _lab(tmp_path, kube, text=None, **hostvars):
    env_file = write_env(str(tmp_path / "lab.env"), env_text(GOOD_ENV) if text is None else text)
    hostvars.setdefault("gpu_lab_namespace", kube.namespace)
    inventory = write_inventory(str(tmp_path), kube.kubeconfig, env_file, **hostvars)
    return env_file, inventory


def _temp_dirs(tmp_path, keep):
    local, remote = tmp_path / "local-tmp", tmp_path / "remote-tmp"
    local.mkdir(exist_ok=True)
    remote.mkdir(exist_ok=True)
    env = {"ANSIBLE_LOCAL_TEMP": str(local), "ANSIBLE_REMOTE_TEMP": str(remote),
           "ANSIBLE_KEEP_REMOTE_FILES": "1" if keep else "0"}
    return env, (local, remote)


def _files_under(*roots):
    return [p for root in roots for p in glob.glob(os.path.join(str(root), "**", "*"), recursive=True) if os.path.isfile(p)]


def _recap(output):
    match = re.search(r"gpu1\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_converge_then_idempotent_with_stable_generated_values(tmp_path, kube):
    _env, inventory = _lab(tmp_path, kube)
    first = run_playbook(PLAYBOOK, "-i", inventory)
    assert _recap(first.stdout)["changed"] == 1
    created = secrets(kube)
    assert sorted(created) == EXPECTED
    assert created["litellm-env"]["ANTHROPIC_API_KEY"] == GOOD_ENV["ANTHROPIC_API_KEY"]
    assert created["litellm-env"]["OPENAI_API_KEY"] == GOOD_ENV["OPENAI_API_KEY"]
    assert re.match(r"^sk-[A-Za-z0-9]{48}$", created["litellm-env"]["LITELLM_MASTER_KEY"])
    assert created["grafana-admin"] == {"admin-user": "admin", "admin-password": GOOD_ENV["GRAFANA_ADMIN_PASSWORD"]}
    assert created["hf-token"] == {"HF_TOKEN": GOOD_ENV["HF_TOKEN"]}
    flat = repr(created)
    assert GOOD_ENV["TAILSCALE_AUTH_KEY"] not in flat and GOOD_ENV["K3S_TOKEN"] not in flat
    before = snapshot(kube)
    second = run_playbook(PLAYBOOK, "-i", inventory)
    assert _recap(second.stdout)["changed"] == 0
    assert snapshot(kube) == before


def test_vvv_diff_output_and_temp_files_hold_no_secret_value(tmp_path, kube):
    """Create, update and prune at -vvv --diff; search ALL output and every temp file for every value."""
    env_file, inventory = _lab(tmp_path, kube)
    extra, roots = _temp_dirs(tmp_path, keep=False)
    outputs = [run_playbook(PLAYBOOK, "-i", inventory, "-vvv", "--diff", extra_env=extra).stdout]
    assert _files_under(*roots) == []  # the module's temporary files are gone
    # Change one provider key, drop HF_TOKEN, drop a model: update + stale, then prune. Keep payloads this time.
    changed = dict(GOOD_ENV, OPENAI_API_KEY="sk-proj-fn-CHANGED-Zx9Yw8Vu7")
    del changed["HF_TOKEN"]
    write_env(env_file, env_text(changed))
    extra, roots = _temp_dirs(tmp_path, keep=True)
    outputs.append(run_playbook(PLAYBOOK, "-i", inventory, "-vvv", "--diff", extra_env=extra).stdout)
    outputs.append(run_playbook(PLAYBOOK, "-i", inventory, "-vvv", "--diff", "-e", "secrets_prune=true",
                                "-e", "{\"gpu_lab_models\": []}", extra_env=extra).stdout)
    kept_files = _files_under(*roots)
    assert any(os.path.basename(p).startswith("AnsiballZ_lab_secrets") for p in kept_files)
    for path in kept_files:  # what Ansible leaves (only because we asked) sits in a directory private to the user
        assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0, path
    values = all_secret_values(kube, extra=list(GOOD_ENV.values()) + [changed["OPENAI_API_KEY"]])
    assert len(values) >= 12
    text = "\n".join(outputs)
    assert "<redacted, changed>" in text and "<redacted, new> (generated)" in text
    assert "PLAY RECAP" in text and "AnsiballZ_lab_secrets" in text  # really -vvv
    for value in values:
        assert value not in text, "a secret value appeared in the -vvv output"
        for path in kept_files:  # even the module payloads kept on purpose hold no value
            with open(path, "rb") as handle:
                assert value.encode() not in handle.read(), path
    final = secrets(kube)
    assert "OPENAI_API_KEY" not in final["litellm-env"] and final["hf-token"] == {}  # pruned


def test_bad_env_fails_with_every_problem_and_leaves_cluster_untouched(tmp_path, kube):
    env_file, inventory = _lab(tmp_path, kube)
    run_playbook(PLAYBOOK, "-i", inventory)
    before = snapshot(kube)
    bad = ("# broken on purpose\n"
           "ANTHROPIC_API_KEY=sk-ant-fn-bad-1111\n"
           "ANTHROPIC_API_KEY=sk-ant-fn-bad-2222\n"
           "OPENAI_API_KEY=\"unterminated\n"
           "HF_TOKEN=<your Hugging Face read token, hf_...>\n"
           "GRAFANA_ADMIN_PASSWORD=\n"
           "my-key=1\n")
    write_env(env_file, bad)
    proc = run_playbook(PLAYBOOK, "-i", inventory, "-vvv", check=False)
    assert proc.returncode != 0
    out = proc.stdout
    for expected in ("lab.env:3: ANTHROPIC_API_KEY is already defined on line 2",
                     "lab.env:4: cannot parse the value of OPENAI_API_KEY",
                     "lab.env:5: HF_TOKEN still holds a placeholder",
                     "lab.env:6: GRAFANA_ADMIN_PASSWORD is empty",
                     "lab.env:7: invalid key name",
                     "OPENAI_API_KEY is required (api_key_env of model 'gpt'",
                     "6 problem(s) found; no Secret was touched"):
        assert expected in out
    assert "sk-ant-fn-bad" not in out
    assert snapshot(kube) == before


def test_bad_env_on_empty_cluster_creates_not_even_the_namespace(tmp_path, kube):
    fresh = f"{kube.namespace}-fresh"
    _env, inventory = _lab(tmp_path, kube, text="OPENAI_API_KEY=x\n", gpu_lab_namespace=fresh)
    before = snapshot(kube, [fresh])
    assert ("v1", "Namespace", fresh, None) in before
    proc = run_playbook(PLAYBOOK, "-i", inventory, check=False)
    assert proc.returncode != 0 and "ANTHROPIC_API_KEY is required" in proc.stdout
    assert snapshot(kube, [fresh]) == before


def test_check_mode_reports_and_writes_nothing(tmp_path, kube):
    new = f"{kube.namespace}-new"
    _env, inventory = _lab(tmp_path, kube, gpu_lab_namespace=new)
    before = snapshot(kube, [new])
    proc = run_playbook(PLAYBOOK, "-i", inventory, "--check", "--diff")
    assert _recap(proc.stdout)["changed"] == 1
    assert f'"{new}/litellm-env"' in proc.stdout and "<redacted, new> (generated)" in proc.stdout
    assert snapshot(kube, [new]) == before


def test_group_readable_env_is_refused(tmp_path, kube):
    env_file, inventory = _lab(tmp_path, kube)
    os.chmod(env_file, 0o640)
    before = snapshot(kube)
    proc = run_playbook(PLAYBOOK, "-i", inventory, check=False)
    assert proc.returncode != 0 and "is readable by group or other users (mode 0640): chmod 600" in proc.stdout
    assert snapshot(kube) == before


def _module_result(output):
    """gpu1's result of the role's lab_secrets task, from the ansible.posix.json callback's output."""
    plays = json.loads(output[output.index("{"):])["plays"]
    tasks = [t for play in plays for t in play["tasks"] if "Validate .env" in t["task"]["name"]]
    return tasks[0]["hosts"]["gpu1"]


def test_validate_only_needs_no_cluster_and_rejects_a_bad_file(tmp_path, kube):
    """validate_only with a kubeconfig that does not exist: a good .env is validated (every Secret
    planned, none written), a bad one fails naming file, line and key."""
    env_file, inventory = _lab(tmp_path, kube, gpu_lab_kubeconfig=str(tmp_path / "missing-kubeconfig"))
    as_json = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    before = snapshot(kube)
    good = _module_result(run_playbook(PLAYBOOK, "-i", inventory, "-e", "secrets_validate_only=true",
                                       extra_env=as_json).stdout)
    assert not good.get("failed") and good["changed"] is False, good
    assert sorted(s["name"] for s in good["secrets"]) == EXPECTED
    assert {s["action"] for s in good["secrets"]} == {"validated"}
    write_env(env_file, env_text(dict(GOOD_ENV, HF_TOKEN="<your Hugging Face read token, hf_...>")))
    proc = run_playbook(PLAYBOOK, "-i", inventory, "-e", "secrets_validate_only=true", extra_env=as_json,
                        check=False)
    bad = _module_result(proc.stdout)
    assert proc.returncode != 0 and bad["failed"], bad
    assert "lab.env:" in bad["msg"] and "HF_TOKEN still holds a placeholder" in bad["msg"], bad["msg"]
    assert snapshot(kube) == before


def test_unreachable_api_is_a_clear_error_and_nothing_written(tmp_path, kube):
    bad_kubeconfig = kube.write_kubeconfig(path=str(tmp_path / "wrong-token.yaml"), token="wrong")
    _env, inventory = _lab(tmp_path, kube, gpu_lab_kubeconfig=bad_kubeconfig)
    before = snapshot(kube)
    proc = run_playbook(PLAYBOOK, "-i", inventory, check=False)
    assert proc.returncode != 0
    assert "rejected the credentials (401 Unauthorized) while trying to read the lab's Secrets" in proc.stdout
    assert "no Secret was touched" in proc.stdout
    assert snapshot(kube) == before


def test_gateway_keys_from_env_or_generated_kept_and_never_shown(tmp_path, kube):
    """litellm_keys (docs/litellm.md "Keys"): one Secret per key, the value from .env LITELLM_KEY_<NAME> or generated
    once and kept, and Llama Stack's own while its component is on; a second run changes nothing; at -vvv --diff no
    key value appears."""
    alice = "sk-alice-fn-Q2w3E4r5T6y7U8i9O0p1"
    _env, inventory = _lab(tmp_path, kube, text=env_text(dict(GOOD_ENV, LITELLM_KEY_ALICE=alice)),
                           litellm_keys=[{"name": "alice", "models": ["cloud-fallback"], "rpm": 10}, {"name": "ci-bot"}],
                           gpu_lab_components={"llama_stack": True})
    outputs = [run_playbook(PLAYBOOK, "-i", inventory, "-vvv", "--diff").stdout]
    created = secrets(kube)
    assert created["litellm-key-alice"] == {"api-key": alice}
    generated = created["litellm-key-ci-bot"]["api-key"]
    assert re.match(r"^sk-[A-Za-z0-9]{48}$", generated)
    assert re.match(r"^sk-[A-Za-z0-9]{48}$", created["litellm-key-open-webui"]["api-key"])
    assert re.match(r"^sk-[A-Za-z0-9]{48}$", created["litellm-key-llama-stack"]["api-key"])
    before = snapshot(kube)
    outputs.append(run_playbook(PLAYBOOK, "-i", inventory, "-vvv", "--diff").stdout)
    assert _recap(outputs[-1])["changed"] == 0 and snapshot(kube) == before
    text = "\n".join(outputs)
    for value in (alice, generated, created["litellm-key-open-webui"]["api-key"], created["litellm-key-llama-stack"]["api-key"]):
        assert value not in text, "a gateway key appeared in the -vvv output"
