"""Unit tests of plugins/module_utils/nixos.py and plugins/filter/provision.py.

Pure Python: kubeconfig rewrite, changed-detection (switch_plan) and the magic-rollback
decision. Nothing is emulated: these functions take plain values.
"""

import json
import os

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.ailab.gpu_lab.plugins.filter import provision as filters
from ansible_collections.ailab.gpu_lab.plugins.module_utils import nixos
from tests.support.provision_fake_host import K3S_YAML

# K3S_YAML: the kubeconfig k3s writes, exactly as the stand-in host serves it.


# ----------------------------------------------------------------------------- kubeconfig

def test_rewrite_points_at_tailnet_and_renames_everything():
    source = yaml.safe_load(K3S_YAML)
    out = nixos.rewrite_kubeconfig(source, "https://gpu-box.tail1234.ts.net:6443", "gpu-box")
    assert out["clusters"][0]["cluster"]["server"] == "https://gpu-box.tail1234.ts.net:6443"
    assert out["clusters"][0]["cluster"]["certificate-authority-data"] == "RkFLRS1DQQ=="
    assert out["users"][0]["user"]["client-key-data"] == "RkFLRS1LRVk="
    assert [out["clusters"][0]["name"], out["users"][0]["name"], out["contexts"][0]["name"]] == ["gpu-box"] * 3
    assert out["contexts"][0]["context"] == {"cluster": "gpu-box", "user": "gpu-box"}
    assert out["current-context"] == "gpu-box"
    # the input is not modified
    assert source["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_rewrite_is_stable_when_applied_to_its_own_output():
    once = nixos.rewrite_kubeconfig(yaml.safe_load(K3S_YAML), "https://gpu-box.ts.net:6443", "gpu-box")
    twice = nixos.rewrite_kubeconfig(once, "https://gpu-box.ts.net:6443", "gpu-box")
    assert once == twice


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda k: k.update(clusters=[]), "exactly one entry in 'clusters'"),
        (lambda k: k["users"].append({"name": "x"}), "exactly one entry in 'users'"),
        (lambda k: k.pop("contexts"), "exactly one entry in 'contexts'"),
        (lambda k: k["clusters"][0]["cluster"].pop("server"), "no 'server'"),
        (lambda k: k["clusters"][0]["cluster"].update(server="https://10.0.0.9:6443"), "not at the loopback"),
    ],
    ids=["no-cluster", "two-users", "no-contexts", "no-server", "foreign-server"],
)
def test_rewrite_refuses_what_k3s_does_not_write(mutate, message):
    source = yaml.safe_load(K3S_YAML)
    mutate(source)
    with pytest.raises(nixos.ProvisionError, match=message):
        nixos.rewrite_kubeconfig(source, "https://gpu-box.ts.net:6443", "gpu-box")


@pytest.mark.parametrize(
    "host, port, url",
    [
        ("gpu-box.tail1234.ts.net", 6443, "https://gpu-box.tail1234.ts.net:6443"),
        ("100.64.0.7", "6443", "https://100.64.0.7:6443"),
        ("fd7a:115c:a1e0::7", 6443, "https://[fd7a:115c:a1e0::7]:6443"),
    ],
)
def test_server_url(host, port, url):
    assert nixos.kubeconfig_server_url(host, port) == url


@pytest.mark.parametrize("host, port", [("", 6443), ("h", 0), ("h", "x"), (None, 6443)])
def test_server_url_rejects_bad_input(host, port):
    with pytest.raises(nixos.ProvisionError):
        nixos.kubeconfig_server_url(host, port)


def test_filter_returns_sorted_yaml_text():
    text = filters.provision_kubeconfig_rewrite(K3S_YAML, "gpu-box.tail1234.ts.net", "gpu-box")
    assert isinstance(text, str)
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://gpu-box.tail1234.ts.net:6443"
    assert text == filters.provision_kubeconfig_rewrite(yaml.safe_load(text), "gpu-box.tail1234.ts.net", "gpu-box")


def test_filter_reports_broken_yaml():
    with pytest.raises(AnsibleFilterError, match="not valid YAML"):
        filters.provision_kubeconfig_rewrite("clusters: [", "h", "n")


# ---------------------------------------------------------------------- changed-detection

OLD = "/nix/store/aaa-nixos-system-gpu-box"
NEW = "/nix/store/bbb-nixos-system-gpu-box"
K1 = {"kernel": "/nix/store/k1/bzImage", "initrd": "/nix/store/i1/initrd", "kernel-modules": "/nix/store/m1"}

SWITCH_CASES = [
    # id, current, new, booted, built, switch, reasons
    ("same-system", OLD, OLD, K1, K1, False, []),
    ("trailing-slash-same", OLD + "/", OLD, K1, K1, False, []),
    ("new-system-same-kernel", OLD, NEW, K1, dict(K1), True, []),
    ("driver-change", OLD, NEW, K1, dict(K1, **{"kernel-modules": "/nix/store/m2"}), True, ["kernel-modules"]),
    ("kernel-change", OLD, NEW, K1, dict(K1, kernel="/nix/store/k2/bzImage", initrd="/nix/store/i2/initrd"),
     True, ["kernel", "initrd"]),
    # switched earlier to a new kernel but never rebooted: still needs the reboot
    ("pending-reboot", NEW, NEW, K1, dict(K1, kernel="/nix/store/k2/bzImage"), False, ["kernel"]),
    ("no-current-system", "", NEW, {}, K1, True, []),
    ("booted-component-missing", OLD, NEW, {"kernel": K1["kernel"]}, dict(K1, initrd="/nix/store/i9"), True, []),
]


@pytest.mark.parametrize("case", SWITCH_CASES, ids=[c[0] for c in SWITCH_CASES])
def test_switch_plan(case):
    _id, current, new, booted, built, switch, reasons = case
    plan = nixos.switch_plan(current, new, booted=booted, built=built)
    assert plan["switch"] is switch
    assert plan["reboot_reasons"] == reasons
    assert plan["reboot_required"] is bool(reasons)
    assert plan["new"] == new


@pytest.mark.parametrize("new", ["", None, "result", "nix/store/x"])
def test_switch_plan_needs_an_absolute_build_path(new):
    with pytest.raises(nixos.ProvisionError):
        nixos.switch_plan(OLD, new)


def test_switch_plan_filter_wraps_errors():
    with pytest.raises(AnsibleFilterError, match="provision_switch_plan"):
        filters.provision_switch_plan("", OLD)
    assert filters.provision_switch_plan(NEW, OLD)["switch"] is True


# ------------------------------------------------------------------------- rollback

ROLLBACK_CASES = [
    # id, previous, new, current, confirm file content, action
    ("confirmed", OLD, NEW, NEW, NEW + "\n", nixos.ACTION_KEEP),
    ("unconfirmed", OLD, NEW, NEW, None, nixos.ACTION_ROLLBACK),
    ("stale-confirmation", OLD, NEW, NEW, "/nix/store/zzz-older\n", nixos.ACTION_ROLLBACK),
    ("empty-confirmation", OLD, NEW, NEW, "", nixos.ACTION_ROLLBACK),
    ("already-rolled-back", OLD, NEW, OLD, None, nixos.ACTION_NOOP),
    ("someone-else-switched", OLD, NEW, "/nix/store/ccc-other", None, nixos.ACTION_NOOP),
    ("no-previous", "", NEW, NEW, None, nixos.ACTION_NOOP),
    ("previous-is-new", NEW, NEW, NEW, None, nixos.ACTION_NOOP),
    ("confirmed-even-if-current-moved", OLD, NEW, "/nix/store/ccc-other", NEW, nixos.ACTION_KEEP),
]


@pytest.mark.parametrize("case", ROLLBACK_CASES, ids=[c[0] for c in ROLLBACK_CASES])
def test_rollback_decision(case):
    _id, previous, new, current, confirmed, action = case
    got, reason = nixos.rollback_decision(previous, new, current, confirmed)
    assert got == action
    assert reason


def test_switch_unit_name_is_per_generation():
    assert nixos.switch_unit_name(NEW) == nixos.switch_unit_name(NEW)
    assert nixos.switch_unit_name(NEW) != nixos.switch_unit_name(OLD)
    assert nixos.switch_unit_name(NEW).startswith("gpu-lab-switch-")
    assert len(nixos.switch_unit_name(NEW)) == len("gpu-lab-switch-") + 12
    assert filters.provision_switch_unit(NEW) == nixos.switch_unit_name(NEW)


class FakeClock:
    """Deterministic time for the confirmation wait: sleep() advances the clock, nothing waits."""

    def __init__(self):
        self.now = 1000.0
        self.on_sleep = None

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.now)


def _plan(tmp_path, switch="ln -sfn \"$PROVISION_SYSTEM\" \"$LINK\"", confirm_timeout=10):
    """A plan whose commands are real /bin/sh lines acting on a symlink standing in for /run/current-system."""
    link = tmp_path / "current-system"
    os.symlink(OLD, link)
    plan = {
        "previous": OLD, "new": NEW, "current_link": str(link), "confirm_file": str(tmp_path / "confirm"),
        "confirm_timeout": confirm_timeout, "poll_interval": 1, "profile": "/nix/var/nix/profiles/system",
        "switch_command": switch,
        "rollback_command": 'ln -sfn "$PROVISION_PREVIOUS" "$LINK" && echo "$PROVISION_PROFILE" > "$OUT"',
        "status_file": str(tmp_path / "status.json"), "log": str(tmp_path / "switch.log"),
        "environment": {"LINK": str(link), "OUT": str(tmp_path / "rollback-ran")},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path, link


def _phases(tmp_path):
    return [json.loads(line)["phase"] for line in (tmp_path / "switch.log").read_text().splitlines()]


def test_switch_rolls_back_when_not_confirmed(tmp_path):
    plan, link = _plan(tmp_path)
    clock = FakeClock()
    assert nixos.run_switch(str(plan), sleep=clock.sleep, clock=clock.time) == 1
    assert os.readlink(link) == OLD
    assert (tmp_path / "rollback-ran").read_text().strip() == "/nix/var/nix/profiles/system"
    assert _phases(tmp_path) == ["switching", "switched", "rolled-back"]
    assert clock.now >= 1010.0


def test_switch_keeps_a_generation_confirmed_during_the_wait(tmp_path):
    plan, link = _plan(tmp_path)
    clock = FakeClock()
    clock.on_sleep = lambda now: now >= 1003 and (tmp_path / "confirm").write_text(NEW + "\n")
    assert nixos.run_switch(str(plan), sleep=clock.sleep, clock=clock.time) == 0
    assert os.readlink(link) == NEW
    assert _phases(tmp_path) == ["switching", "switched", "confirmed"]
    assert json.loads((tmp_path / "status.json").read_text())["phase"] == "confirmed"
    assert clock.now < 1010.0


def test_switch_ignores_a_stale_confirmation(tmp_path):
    plan, link = _plan(tmp_path)
    (tmp_path / "confirm").write_text(OLD)
    clock = FakeClock()
    assert nixos.run_switch(str(plan), sleep=clock.sleep, clock=clock.time) == 1
    assert os.readlink(link) == OLD


def test_failed_switch_rolls_back_at_once(tmp_path):
    plan, link = _plan(tmp_path, switch='ln -sfn "$PROVISION_SYSTEM" "$LINK"; exit 4')
    clock = FakeClock()
    assert nixos.run_switch(str(plan), sleep=clock.sleep, clock=clock.time) == 1
    assert os.readlink(link) == OLD
    assert _phases(tmp_path) == ["switching", "switch-failed", "rolled-back"]
    assert clock.now == 1000.0


def test_failed_rollback_is_reported(tmp_path):
    plan, _link = _plan(tmp_path)
    data = json.loads(plan.read_text())
    data["rollback_command"] = "exit 3"
    plan.write_text(json.dumps(data))
    clock = FakeClock()
    assert nixos.run_switch(str(plan), sleep=clock.sleep, clock=clock.time) == 2
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "rollback-failed" and status["rollback_exit_code"] == 3


def test_confirm_timeout_zero_disables_the_rollback(tmp_path):
    plan, link = _plan(tmp_path, confirm_timeout=0)
    assert nixos.run_switch(str(plan)) == 0
    assert os.readlink(link) == NEW
    assert _phases(tmp_path) == ["switching", "switched", "confirmed"]


def test_switch_refuses_an_incomplete_plan(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"previous": OLD}))
    assert nixos.main([str(path)]) == 2
    assert nixos.main([]) == 2


# ----------------------------------------------------------------------------- Nix text

NIX_STRING_CASES = [
    ("gpu-box", '"gpu-box"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("${builtins.readFile /etc/shadow}", '"\\${builtins.readFile /etc/shadow}"'),
    ("back\\slash", '"back\\\\slash"'),
    ("two\nlines\t", '"two\\nlines\\t"'),
    ("$HOME and $ {x}", '"$HOME and $ {x}"'),
    (6443, '"6443"'),
]


@pytest.mark.parametrize("value, literal", NIX_STRING_CASES)
def test_nix_string(value, literal):
    assert nixos.nix_string(value) == literal


def test_nix_string_round_trips_through_the_real_nix_parser(tmp_path):
    """Each literal is evaluated by the real nix-instantiate and must give the input back."""
    import subprocess

    for value, _literal in NIX_STRING_CASES:
        out = subprocess.run(["nix-instantiate", "--eval", "--json", "-E", nixos.nix_string(value)],
                             capture_output=True, text=True, check=True, timeout=30)
        assert json.loads(out.stdout) == str(value)


def test_nix_string_list_and_filter():
    assert nixos.nix_string_list(["tailscale0", "flannel.1"]) == '[ "tailscale0" "flannel.1" ]'
    assert nixos.nix_string_list([]) == "[ ]"
    assert filters.provision_nix_string(["a"]) == '[ "a" ]'
    with pytest.raises(AnsibleFilterError):
        filters.provision_nix_string({"a": 1})
    with pytest.raises(nixos.ProvisionError):
        nixos.nix_string(True)
    with pytest.raises(nixos.ProvisionError):
        nixos.nix_string_list("abc")
