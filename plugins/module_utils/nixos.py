# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ailab maintainers
# Apache License 2.0 (see galaxy.yml)
"""NixOS host logic of the ``provision`` role, as plain Python (standard library only).

Three pieces, each unit-tested directly (tests/unit/test_provision_nixos.py):

* ``rewrite_kubeconfig``: k3s writes ``/etc/rancher/k3s/k3s.yaml`` pointing at
  ``https://127.0.0.1:6443`` with cluster/user/context all called ``default``. The
  controller copy must point at the tailnet name (which is in ``--tls-san``) and carry a
  name that does not clash when several labs' kubeconfigs are merged.
* ``switch_plan``: the changed-detection. A build is switched to only when its store path
  differs from ``/run/current-system``; a reboot is needed when the kernel, initrd or kernel
  modules (the NVIDIA driver lives there) differ from ``/run/booted-system``.
* ``rollback_decision`` / ``run_watchdog``: the "magic rollback". Before switching, the role
  writes a plan (previous and new generation, confirm file) and arms a transient systemd
  timer that runs THIS FILE as a script on the host (``python3 nixos.py <plan.json>``).
  Unless Ansible, over a fresh SSH connection, wrote the new system's path into the confirm
  file before the timer fires, the watchdog switches back to the previous generation.

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
PLAN_KEYS = ("previous", "new", "current_link", "confirm_file", "profile", "rollback_command", "log")

ACTION_KEEP = "keep"
ACTION_ROLLBACK = "rollback"
ACTION_NOOP = "noop"


class ProvisionError(ValueError):
    """Bad input to the provision logic; the message says what and how to fix it."""


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

def rollback_unit_name(new_system):
    """A transient unit name unique to one generation: gpu-lab-rollback-<12 hex>."""
    digest = hashlib.sha256(str(new_system).encode("utf-8")).hexdigest()[:12]
    return "gpu-lab-rollback-%s" % digest


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
    """Read and check a watchdog plan (JSON written by the role)."""
    with open(path) as handle:
        plan = json.load(handle)
    missing = [key for key in PLAN_KEYS if key not in plan]
    if missing:
        raise ProvisionError("rollback plan %s lacks %s" % (path, ", ".join(missing)))
    return plan


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _log(plan, record):
    record = dict(record, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    line = json.dumps(record, sort_keys=True)
    try:
        with open(plan["log"], "a") as handle:
            handle.write(line + "\n")
    except (IOError, OSError):
        pass
    print(line)


def run_watchdog(plan_path, runner=None):
    """Apply ``rollback_decision`` on the host. Returns the process exit code."""
    runner = runner or subprocess.call
    plan = load_plan(plan_path)
    current = os.path.realpath(plan["current_link"])
    confirmed = _read(plan["confirm_file"])
    action, reason = rollback_decision(plan["previous"], plan["new"], current, confirmed)
    record = {"action": action, "reason": reason, "previous": plan["previous"], "new": plan["new"], "current": current}
    if action != ACTION_ROLLBACK:
        _log(plan, record)
        return 0
    env = dict(os.environ)
    env.update(
        PROVISION_PREVIOUS=plan["previous"],
        PROVISION_NEW=plan["new"],
        PROVISION_PROFILE=plan["profile"],
    )
    env.update(plan.get("environment") or {})
    code = runner(["/bin/sh", "-c", plan["rollback_command"]], env=env)
    record["rollback_exit_code"] = code
    _log(plan, record)
    return 0 if code == 0 else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: nixos.py <rollback-plan.json>\n")
        return 2
    try:
        return run_watchdog(argv[0])
    except (ProvisionError, IOError, OSError, ValueError) as exc:
        sys.stderr.write("gpu-lab rollback watchdog: %s\n" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
