"""Gaming mode of the provision role: GameMode's hooks, the signal unit, the polkit rule and the signal script.

REAL: ansible-playbook rendering the role (render-only), the real nix-instantiate evaluating the rendered
gamemode.nix and default.nix (with the stub config/lib/pkgs of tests/support/provision_nix_stubs.nix:
`pkgs.writeShellScript`, `config.systemd.package`, `config.services.k3s.package` are store-path strings),
the signal script roles/provision/files/gpu-lab-gaming run by the real bash and dash against the real
control plane (tests/conftest.py), the real kubectl, node (a real JavaScript engine) for the polkit rule.
EMULATED, and how:
- systemd starting the unit: the test builds the command line and the environment from the EVALUATED unit
  (ExecStart with `%i` = the instance, as systemd expands it; `environment`). Two store paths are replaced,
  each checked to be there exactly once: the writeShellScript output is the rendered script behind a
  `#!<bash>` line (what nixpkgs' writeShellScript writes: `#!${runtimeShell}` + the text), and k3s's
  `k3s kubectl` (k3s embeds kubectl) is .venv/bin/kubectl; KUBECONFIG (/etc/rancher/k3s/k3s.yaml, written by
  k3s) is the control plane's admin kubeconfig.
- polkitd running the rule: a `polkit` object with `addRule` and `Result.YES`, actions with `id` and
  `lookup(key)`, subjects with `user`, as polkit(8) "AUTHORIZATION RULES" documents them, and the `unit` /
  `verb` details systemd passes for org.freedesktop.systemd1.manage-units (systemd's dbus-unit.c). A rule
  that returns nothing leaves the decision to the defaults (auth_admin for manage-units): shown as null.
NOT here: a real NixOS build (option types of programs.gamemode, the drop-in on an instance), gamemoded and
systemd themselves: docs/provision.md, "Gaming mode", says how to check them on the host.
"""

import datetime
import json
import os
import shlex
import shutil
import subprocess
import time

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils.gpu_swap import STATE_CONFIGMAP
from tests.functional.test_provision_playbook import REPO, VENV_BIN, run_playbook

STUBS = os.path.join(REPO, "tests", "support", "provision_nix_stubs.nix")
SCRIPT = os.path.join(REPO, "roles", "provision", "files", "gpu-lab-gaming")
DEFAULTS = yaml.safe_load(open(os.path.join(REPO, "roles", "provision", "defaults", "main.yml"), encoding="utf-8"))
STUB_SYSTEMCTL = "/nix/store/stub-systemd/bin/systemctl"
STUB_K3S_KUBECTL = "/nix/store/stub-k3s/bin/k3s kubectl"
STUB_SIGNAL = "/nix/store/stub-gpu-lab-gaming"


def render(out_dir, **extra):
    """Render the example lab's host (inventory/local) with these variables; return hosts/gpu-box."""
    run_playbook("-e", "provision_render_dir=%s" % out_dir, "-e", json.dumps(extra))
    return out_dir / "hosts" / "gpu-box"


def evaluate(path):
    out = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--argstr", "file", str(path), STUBS],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def enabled(tmp_path_factory):
    host = render(tmp_path_factory.mktemp("on"), provision_gamemode_enabled=True,
                  provision_gamemode_users=["alice", "bob"], provision_gamemode_script_timeout=7,
                  gpu_lab_namespace="lab-under-test")
    return host, evaluate(host / "gamemode.nix")


def polkit_decisions(rule, requests):
    """Run the rule text in node with a polkit stand-in; return the Result of each (action, verb, unit, user)."""
    program = """
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin"}, addRule: (f) => rules.push(f)};
%s
const out = %s.map(([id, verb, unit, user]) => {
  const action = {id, lookup: (key) => ({verb, unit})[key]};
  for (const rule of rules) { const r = rule(action, {user}); if (r !== undefined) return r; }
  return null;
});
console.log(JSON.stringify(out));
""" % (rule, json.dumps(requests))
    proc = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(proc.stdout)


# --------------------------------------------------------------- the NixOS part, evaluated

def test_gamemode_hooks_only_queue_the_signal_units(enabled):
    _host, mod = enabled
    gamemode = mod["programs"]["gamemode"]
    assert gamemode["enable"] is True
    assert gamemode["settings"]["custom"] == {
        "start": STUB_SYSTEMCTL + " start --no-block --no-ask-password gpu-lab-gaming@on.service",
        "end": STUB_SYSTEMCTL + " start --no-block --no-ask-password gpu-lab-gaming@off.service",
        "script_timeout": 7,
    }
    # gamemoded drops a [custom] value over 255 bytes: the module asserts it, and it holds
    assert [a["assertion"] for a in mod["assertions"]] == [True, True]


def test_signal_unit_is_a_root_oneshot_with_the_labs_namespace_and_k3s_kubeconfig(enabled):
    _host, mod = enabled
    unit = mod["systemd"]["services"]["gpu-lab-gaming@"]
    assert unit["serviceConfig"]["Type"] == "oneshot" and unit["serviceConfig"]["User"] == "root"
    assert unit["serviceConfig"]["ExecStart"] == STUB_SIGNAL + " %i"
    assert unit["environment"]["GPU_LAB_NAMESPACE"] == "lab-under-test"
    assert unit["environment"]["KUBECONFIG"] == DEFAULTS["provision_k3s_kubeconfig_path"]
    assert unit["environment"]["GPU_LAB_KUBECTL"] == STUB_K3S_KUBECTL
    assert mod["systemd"]["services"]["gpu-lab-gaming@on"] == {
        "overrideStrategy": "asDropin", "conflicts": ["gpu-lab-gaming@off.service"],
        "after": ["gpu-lab-gaming@off.service"]}
    assert set(mod["systemd"]["services"]) == {"gpu-lab-gaming@", "gpu-lab-gaming@on"}


def test_polkit_rule_lets_the_desktop_users_start_exactly_the_two_units(enabled):
    _host, mod = enabled
    manage = "org.freedesktop.systemd1.manage-units"
    requests = [
        [manage, "start", "gpu-lab-gaming@on.service", "alice"],
        [manage, "start", "gpu-lab-gaming@off.service", "bob"],
        [manage, "stop", "gpu-lab-gaming@on.service", "alice"],
        [manage, "restart", "gpu-lab-gaming@off.service", "alice"],
        [manage, "start", "gpu-lab-gaming@x.service", "alice"],
        [manage, "start", "k3s.service", "alice"],
        [manage, "start", "gpu-lab-gaming@on.service", "carol"],
        ["org.freedesktop.systemd1.manage-unit-files", "start", "gpu-lab-gaming@on.service", "alice"],
    ]
    assert polkit_decisions(mod["security"]["polkit"]["extraConfig"], requests) == [
        "yes", "yes", None, None, None, None, None, None]


def test_default_nix_imports_the_gamemode_module(enabled):
    host, _mod = enabled
    imports = evaluate(host / "default.nix")["imports"]
    assert str(host / "gamemode.nix") in imports


def test_off_by_default_nothing_is_configured(tmp_path):
    host = render(tmp_path / "off")
    mod = evaluate(host / "gamemode.nix")
    assert mod == {"_checks": {}}
    assert str(host / "gamemode.nix") in evaluate(host / "default.nix")["imports"]
    assert DEFAULTS["provision_gamemode_enabled"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"provision_gamemode_users": []}, "provision_gamemode_users must list the desktop users"),
        ({"provision_gamemode_users": ["Not A User"]}, 'got ["Not A User"]'),
        ({"provision_gamemode_users": ["alice"], "provision_k3s_role": "agent",
          "provision_k3s_server_url": "https://gpu-box.tail1234.ts.net:6443"}, "the host must be the k3s"),
        ({"provision_gamemode_users": ["alice"], "provision_gamemode_script_timeout": 0}, "got 0"),
    ],
    ids=["no-users", "bad-user", "agent", "timeout"],
)
def test_enabled_with_bad_inputs_is_refused_before_anything_renders(tmp_path, extra, message):
    proc = run_playbook("-e", "provision_render_dir=%s" % (tmp_path / "out"),
                        "-e", json.dumps(dict(extra, provision_gamemode_enabled=True)), check=False)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------ the signal, against the real cluster

RECORD = {"owner": "vllm", "model": "qwen2.5-7b", "node": "gpu-box", "owner_since": "2026-12-05T20:00:00Z",
          "owner_trigger": "playbook"}


def unit_command(host, mod, instance, kubeconfig, tmp_path):
    """argv and environment of `systemctl start gpu-lab-gaming@<instance>` from the evaluated unit."""
    unit = mod["systemd"]["services"]["gpu-lab-gaming@"]
    argv = shlex.split(unit["serviceConfig"]["ExecStart"].replace("%i", instance))
    assert argv[0] == STUB_SIGNAL
    script = tmp_path / "gpu-lab-gaming"  # what writeShellScript puts in the store
    script.write_text("#!%s\n%s" % (shutil.which("bash"), (host / "gpu-lab-gaming").read_text()))
    script.chmod(0o755)
    env = dict(unit["environment"])
    assert env["GPU_LAB_KUBECTL"] == STUB_K3S_KUBECTL and env["KUBECONFIG"] == DEFAULTS["provision_k3s_kubeconfig_path"]
    env.update(GPU_LAB_KUBECTL=os.path.join(VENV_BIN, "kubectl"), KUBECONFIG=kubeconfig, PATH="/usr/bin:/bin",
               HOME=str(tmp_path))
    return [str(script)] + argv[1:], env


def utc(text):
    assert text.endswith("Z"), text
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def test_the_unit_writes_the_signal_into_the_record_and_nothing_else(kube, tmp_path):
    host = render(tmp_path / "render", provision_gamemode_enabled=True, provision_gamemode_users=["alice"],
                  gpu_lab_namespace=kube.namespace)
    mod = evaluate(host / "gamemode.nix")
    assert mod["systemd"]["services"]["gpu-lab-gaming@"]["environment"]["GPU_LAB_NAMESPACE"] == kube.namespace
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STATE_CONFIGMAP}, "data": RECORD})

    seen = []
    for instance in ("on", "off"):
        argv, env = unit_command(host, mod, instance, kube.kubeconfig, tmp_path)
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = kube.get("ConfigMap", STATE_CONFIGMAP)["data"]
        assert data["gaming"] == instance
        assert before <= utc(data["gaming_at"]) <= datetime.datetime.now(datetime.timezone.utc)
        assert {k: v for k, v in data.items() if not k.startswith("gaming")} == RECORD
        assert "gaming=%s" % instance in proc.stdout and kube.namespace in proc.stdout
        seen.append(utc(data["gaming_at"]))
        time.sleep(1)  # gaming_at has second resolution: the next signal is strictly newer
    assert seen[0] < seen[1]

    # the ConfigMap is gone (lab not deployed): a clear error, non-zero, and no record made up
    kube.delete("ConfigMap", STATE_CONFIGMAP)
    argv, env = unit_command(host, mod, "on", kube.kubeconfig, tmp_path)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "could not write gaming=on into ConfigMap %s/%s" % (kube.namespace, STATE_CONFIGMAP) in proc.stderr
    assert "does not exist in namespace %s: deploy the lab" % kube.namespace in proc.stderr
    assert kube.get("ConfigMap", STATE_CONFIGMAP) is None


def test_no_cluster_is_a_clear_error(kube, tmp_path):
    """The kubeconfig's API server does not answer (k3s stopped): non-zero, and the hint names KUBECONFIG."""
    config = yaml.safe_load(open(kube.kubeconfig, encoding="utf-8"))
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens on port 1
    dead = tmp_path / "dead.yaml"
    dead.write_text(yaml.safe_dump(config))
    env = {"PATH": VENV_BIN + ":/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(dead),
           "GPU_LAB_NAMESPACE": kube.namespace}
    proc = subprocess.run(["sh", SCRIPT, "off"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "could not write gaming=off" in proc.stderr and "127.0.0.1:1" in proc.stderr
    assert "check that the cluster is up and that KUBECONFIG (%s)" % dead in proc.stderr


def test_without_nixos_the_same_script_runs_from_a_hook(kube, tmp_path):
    """The documented use elsewhere: /bin/sh (dash here), kubectl from PATH, the two variables."""
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STATE_CONFIGMAP}, "data": RECORD})
    env = {"PATH": VENV_BIN + ":/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": kube.kubeconfig,
           "GPU_LAB_NAMESPACE": kube.namespace}
    proc = subprocess.run(["/bin/sh", SCRIPT, "on"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert kube.get("ConfigMap", STATE_CONFIGMAP)["data"]["gaming"] == "on"
    # bad usage and a missing namespace: status 2 and what to do, before any write
    for args, extra, message in ((["maybe"], {}, "usage: gpu-lab-gaming on|off"),
                                 (["on", "off"], {}, "usage: gpu-lab-gaming on|off"),
                                 (["off"], {"GPU_LAB_NAMESPACE": ""}, "GPU_LAB_NAMESPACE is not set")):
        proc = subprocess.run(["/bin/sh", SCRIPT] + args, env=dict(env, **extra), capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert kube.get("ConfigMap", STATE_CONFIGMAP)["data"]["gaming"] == "on"
