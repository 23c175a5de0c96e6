# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NixOS host logic of the ``provision`` role, as plain Python (standard library only).

Three pieces, each unit-tested directly (tests/unit/test_provision_nixos.py):

* ``rewrite_kubeconfig``: k3s writes ``/etc/rancher/k3s/k3s.yaml`` pointing at
  ``https://127.0.0.1:6443`` with cluster/user/context all called ``default``. The
  controller copy must point at the tailnet name (which is in ``--tls-san``) and carry a
  name that does not clash when several labs' kubeconfigs are merged.
* ``switch_plan``: the changed-detection. A build is switched to only when its store path
  differs from ``/run/current-system``; a reboot is needed when the kernel, initrd or kernel
  modules (the NVIDIA driver lives there) differ from ``/run/booted-system``.
* ``run_switch`` / ``rollback_decision``: the switch with "magic rollback". The role writes a
  plan (previous and new generation, commands, confirm file) and starts THIS FILE as a
  script in a transient systemd unit on the host (``python3 nixos.py <plan.json>``), detached
  from the SSH session. It switches, then waits for Ansible to write the new system's path
  into the confirm file over a fresh SSH connection; without that confirmation within the
  timeout it switches back to the previous generation (as deploy-rs does).

This file is also copied to the host as the watchdog, so it must stay importable and
runnable by a bare CPython 3.6+ without Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import copy
import hashlib
import json
import os
import subprocess
import sys
import time

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
REBOOT_COMPONENTS = ("kernel", "initrd", "kernel-modules")
PLAN_KEYS = (
    "previous", "new", "current_link", "confirm_file", "confirm_timeout", "profile",
    "switch_command", "rollback_command", "status_file", "log",
)

ACTION_KEEP = "keep"
ACTION_ROLLBACK = "rollback"
ACTION_NOOP = "noop"


class ProvisionError(ValueError):
    """Bad input to the provision logic; the message says what and how to fix it."""


# ------------------------------------------------------------------------------ Nix text

_NIX_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("${", "\\${"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def nix_string(value):
    """A double-quoted Nix string literal holding ``value`` verbatim (no interpolation)."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise ProvisionError("expected a string for a Nix string literal, got %r" % (value,))
    text = str(value)
    for old, new in _NIX_ESCAPES:
        text = text.replace(old, new)
    return '"%s"' % text


def nix_string_list(values):
    """``[ "a" "b" ]``: a Nix list of string literals."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ProvisionError("expected a list of strings for a Nix list, got %r" % (values,))
    items = [nix_string(value) for value in values]
    return "[ %s ]" % " ".join(items) if items else "[ ]"


# --------------------------------------------------------------------------- kubeconfig

def kubeconfig_server_url(host, port=6443):
    """``https://host:port``; IPv6 literals get brackets."""
    if not host or not isinstance(host, str):
        raise ProvisionError("kubeconfig server host must be a non-empty string (the tailnet name), got %r" % (host,))
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ProvisionError("kubeconfig server port must be an integer, got %r" % (port,))
    if not 0 < port < 65536:
        raise ProvisionError("kubeconfig server port %d is out of range 1-65535" % port)
    return "https://%s:%d" % (host, port)


def _server_host(url):
    rest = url.split("://", 1)[-1]
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        return hostport[: hostport.index("]") + 1]
    return hostport.rsplit(":", 1)[0] if ":" in hostport else hostport


def rewrite_kubeconfig(kubeconfig, server, name):
    """Return a copy of a k3s kubeconfig pointing at ``server`` with everything named ``name``.

    ``kubeconfig`` is the parsed ``k3s.yaml`` (a dict). Exactly one cluster, user and context
    are expected (that is what k3s writes); anything else is refused rather than guessed at.
    The cluster's CA data and the user's client certificate are kept as they are.
    """
    if not isinstance(kubeconfig, dict):
        raise ProvisionError("the k3s kubeconfig is not a YAML mapping; is /etc/rancher/k3s/k3s.yaml complete?")
    if not name or not isinstance(name, str):
        raise ProvisionError("the kubeconfig context name must be a non-empty string, got %r" % (name,))
    if not isinstance(server, str) or not server.startswith("https://"):
        raise ProvisionError("the kubeconfig server must be an https:// URL, got %r" % (server,))
    result = copy.deepcopy(kubeconfig)
    for key in ("clusters", "users", "contexts"):
        entries = result.get(key)
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            raise ProvisionError(
                "the k3s kubeconfig must hold exactly one entry in %r (k3s writes one), found %r; "
                "point provision_k3s_kubeconfig_path at the file k3s wrote" % (key, entries)
            )
    cluster = result["clusters"][0]
    old_server = (cluster.get("cluster") or {}).get("server")
    if not old_server:
        raise ProvisionError("the k3s kubeconfig cluster has no 'server' field")
    old_host = _server_host(old_server)
    if old_host not in LOOPBACK_HOSTS and old_server != server:
        raise ProvisionError(
            "the k3s kubeconfig points at %s, not at the loopback address k3s writes; refusing to "
            "rewrite a kubeconfig that was not produced by k3s on this host" % old_server
        )
    cluster["cluster"]["server"] = server
    cluster["name"] = name
    result["users"][0]["name"] = name
    context = result["contexts"][0]
    context["name"] = name
    context.setdefault("context", {})
    context["context"]["cluster"] = name
    context["context"]["user"] = name
    result["current-context"] = name
    return result


# --------------------------------------------------------------------- changed-detection

def _store_path(value, what):
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ProvisionError("%s must be an absolute path, got %r" % (what, value))
    return value.rstrip("/") or "/"


def switch_plan(current_system, new_system, booted=None, built=None):
    """Decide whether to switch and whether a reboot is needed.

    current_system: resolved target of /run/current-system ('' or None: no system yet).
    new_system:     resolved store path of the fresh build (required).
    booted:         {component: resolved path} for /run/booted-system/{kernel,initrd,kernel-modules}.
    built:          the same for the new system.

    Returns a dict: switch (bool), reboot_required (bool), reboot_reasons (list of the
    components that differ), current, new.
    """
    new = _store_path(new_system, "the built system (result link of the build)")
    if new is None:
        raise ProvisionError("the build produced no system path; check provision_build_command's output")
    current = _store_path(current_system, "the current system")
    booted = booted or {}
    built = built or {}
    reasons = []
    for component in REBOOT_COMPONENTS:
        before = _store_path(booted.get(component), "booted %s" % component)
        after = _store_path(built.get(component), "built %s" % component)
        # A component missing on either side (a container, a system without initrd) cannot
        # be compared and does not by itself ask for a reboot.
        if before is not None and after is not None and before != after:
            reasons.append(component)
    return {
        "switch": current != new,
        "reboot_required": bool(reasons),
        "reboot_reasons": reasons,
        "current": current or "",
        "new": new,
    }


# ------------------------------------------------------------------------ magic rollback

def switch_unit_name(new_system):
    """A transient unit name unique to one generation: gpu-lab-switch-<12 hex>."""
    digest = hashlib.sha256(str(new_system).encode("utf-8")).hexdigest()[:12]
    return "gpu-lab-switch-%s" % digest


def rollback_decision(previous, new, current, confirmed):
    """What the watchdog does when its timer fires. Returns (action, reason).

    previous:  the generation that was current before the switch.
    new:       the generation that was switched to.
    current:   what /run/current-system resolves to now.
    confirmed: content of the confirm file ('' or None when absent). Ansible writes the new
               system's path there after reaching the host over a fresh SSH connection, so a
               stale confirmation of an older switch never counts.
    """
    if confirmed is not None and confirmed.strip() == new:
        return ACTION_KEEP, "confirmed: Ansible reached the host after switching to %s" % new
    if not previous:
        return ACTION_NOOP, "no previous generation was recorded; nothing to roll back to"
    if previous == new:
        return ACTION_NOOP, "the previous generation is the new one; nothing to roll back"
    if current == previous:
        return ACTION_NOOP, "already back on the previous generation %s" % previous
    if current != new:
        return ACTION_NOOP, (
            "the current system %s is neither the new nor the previous generation: someone switched "
            "meanwhile; leaving it alone" % current
        )
    return ACTION_ROLLBACK, "not confirmed in time: rolling back from %s to %s" % (new, previous)


def load_plan(path):
    """Read and check a switch plan (JSON written by the role)."""
    with open(path) as handle:
        plan = json.load(handle)
    missing = [key for key in PLAN_KEYS if key not in plan]
    if missing:
        raise ProvisionError("switch plan %s lacks %s" % (path, ", ".join(missing)))
    return plan


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _status(plan, phase, **fields):
    """Write the status file atomically (Ansible waits on it) and append the record to the log."""
    record = dict(fields, phase=phase, new=plan["new"], previous=plan["previous"],
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    line = json.dumps(record, sort_keys=True)
    tmp = plan["status_file"] + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(line + "\n")
    os.rename(tmp, plan["status_file"])
    try:
        with open(plan["log"], "a") as handle:
            handle.write(line + "\n")
    except (IOError, OSError):
        pass
    return record


def _run(plan, command, runner):
    env = dict(os.environ)
    env.update(plan.get("environment") or {})
    env.update(
        PROVISION_SYSTEM=plan["new"],
        PROVISION_NEW=plan["new"],
        PROVISION_PREVIOUS=plan["previous"],
        PROVISION_PROFILE=plan["profile"],
    )
    return runner(["/bin/sh", "-c", command], env=env)


def _roll_back(plan, runner, reason):
    code = _run(plan, plan["rollback_command"], runner)
    if code == 0:
        _status(plan, "rolled-back", reason=reason, rollback_exit_code=code)
        return 1
    _status(plan, "rollback-failed", reason=reason, rollback_exit_code=code)
    return 2


def run_switch(plan_path, runner=None, sleep=None, clock=None):
    """The host side of a switch with magic rollback. Returns the process exit code.

    1. run ``switch_command`` (set the system profile, switch-to-configuration switch);
       status ``switched`` or, on failure, roll back at once (``rolled-back``);
    2. wait up to ``confirm_timeout`` seconds for the confirm file to hold the new path
       (Ansible writes it over a fresh SSH connection);
    3. apply ``rollback_decision``: ``confirmed``, ``left-alone`` or ``rolled-back``.

    Runs detached from the SSH session (a transient systemd unit), so a switch that cuts
    the connection still finishes, and still rolls back.
    """
    runner = runner or subprocess.call
    sleep = sleep or time.sleep
    clock = clock or time.time
    plan = load_plan(plan_path)
    _status(plan, "switching")
    code = _run(plan, plan["switch_command"], runner)
    if code != 0:
        _status(plan, "switch-failed", switch_exit_code=code)
        if not plan["previous"] or plan["previous"] == plan["new"]:
            return 1
        return _roll_back(plan, runner, "switch_command failed with exit code %d" % code)
    _status(plan, "switched", switch_exit_code=0)
    timeout = float(plan.get("confirm_timeout") or 0)
    if timeout <= 0:
        _status(plan, "confirmed", reason="magic rollback disabled (confirm_timeout 0)")
        return 0
    deadline = clock() + timeout
    confirmed = _read(plan["confirm_file"])
    while (confirmed or "").strip() != plan["new"] and clock() < deadline:
        sleep(float(plan.get("poll_interval") or 1))
        confirmed = _read(plan["confirm_file"])
    current = os.path.realpath(plan["current_link"])
    action, reason = rollback_decision(plan["previous"], plan["new"], current, confirmed)
    if action == ACTION_KEEP:
        _status(plan, "confirmed", reason=reason)
        return 0
    if action == ACTION_NOOP:
        _status(plan, "left-alone", reason=reason, current=current)
        return 0
    return _roll_back(plan, runner, reason)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: nixos.py <switch-plan.json>\n")
        return 2
    try:
        return run_switch(argv[0])
    except (ProvisionError, IOError, OSError, ValueError) as exc:
        sys.stderr.write("gpu-lab switch: %s\n" % exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
