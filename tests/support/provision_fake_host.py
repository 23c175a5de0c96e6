"""A stand-in NixOS host in a directory, for the provision role's molecule scenario and tests.

EMULATED (no NixOS, no nixpkgs, no systemd here): the NixOS commands the role drives are
small programs with the same command lines and the same effects on the same kinds of paths:

  nixos-rebuild build --flake path:DIR#NAME --no-update-lock-file
        refuses a flake without flake.lock (as --no-update-lock-file does), parses every
        .nix file with the REAL `nix-instantiate --parse` (a syntax error fails the build),
        copies the flake source into the fake store (as Nix does), and creates a "system"
        whose store path is a hash of the flake source, with kernel / initrd /
        kernel-modules links derived from the kernel and NVIDIA lines of hardware.nix, a
        bin/switch-to-configuration and sw/bin/nix-env; leaves ./result pointing at it.
  nix flake lock / nix flake update --flake    write a flake.lock (fake revision).
  nix-env -p PROFILE --set PATH                 point the profile at PATH.
  nixos-generate-config --show-hardware-config  print a small hardware module.
  systemd-run [--wait] [--unit=X] ... CMD       run CMD detached (or in the foreground with
                                                --wait), with -E/--setenv environment.
  <system>/bin/switch-to-configuration switch   point run/current-system at the system and,
                                                like k3s on first start, write
                                                etc/rancher/k3s/k3s.yaml (127.0.0.1:6443);
                                                exits 4 for a system built from a flake
                                                containing FAKE-ACTIVATION-FAILS.
  <system>/sw/bin/shutdown -r DELAY [MESSAGE]   "reboot": point run/booted-system at what
                                                run/current-system points at (the generation a
                                                real reboot boots), log the call to
                                                run/shutdown.log; refuses anything but -r.

REAL: nix-instantiate, the rendered files, the role's switch script (run under python3).

Usage: python -m tests.support.provision_fake_host init ROOT
       (ROOT/bin holds the commands; put it first on PATH.)
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.abspath(__file__)
# A flake whose source contains this text builds a system whose activation fails (exit 4),
# like a switch-to-configuration that could not start a unit.
FAIL_MARKER = b"FAKE-ACTIVATION-FAILS"
COMMANDS = ("nixos-rebuild", "nix", "nix-env", "nixos-generate-config", "systemd-run")

HARDWARE_CONFIGURATION = """\
# Stand-in for `nixos-generate-config --show-hardware-config` (tests/support/provision_fake_host.py)
{ config, lib, pkgs, modulesPath, ... }:
{
  boot.initrd.availableKernelModules = [ "nvme" "xhci_pci" "ahci" "usbhid" ];
  boot.kernelModules = [ "kvm-amd" ];
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  fileSystems."/boot" = { device = "/dev/disk/by-label/BOOT"; fsType = "vfat"; };
  networking.useDHCP = lib.mkDefault true;
}
"""

K3S_YAML = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: RkFLRS1DQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: RkFLRS1DRVJU
    client-key-data: RkFLRS1LRVk=
"""


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _wrapper(path, root, command, *extra):
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\nexec %s %s %s %s %s\"$@\"\n"
                     % (sys.executable, HERE, command, root, "".join(e + " " for e in extra)))
    os.chmod(path, 0o755)


def _ln(target, link):
    tmp = link + ".tmp-link"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, link)


def _store_item(root, digest, name, filename, content):
    path = os.path.join(root, "nix/store", "%s-%s" % (digest, name))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, filename), "w") as handle:
        handle.write(content)
    return os.path.join(path, filename) if filename else path


def make_system(root, name, key, kernel_key, modules_key, fail_activation=False):
    """Create a fake NixOS system in the fake store; returns its path."""
    system = os.path.join(root, "nix/store", "%s-nixos-system-%s" % (_digest(key), name))
    if os.path.isdir(system):
        return system
    os.makedirs(os.path.join(system, "bin"))
    os.makedirs(os.path.join(system, "sw/bin"))
    k = _digest("kernel", kernel_key)
    m = _digest("modules", kernel_key, modules_key)
    _ln(_store_item(root, k, "linux", "bzImage", kernel_key), os.path.join(system, "kernel"))
    _ln(_store_item(root, k, "initrd", "initrd", kernel_key), os.path.join(system, "initrd"))
    _ln(os.path.dirname(_store_item(root, m, "kernel-modules", "modules.dep", modules_key)),
        os.path.join(system, "kernel-modules"))
    _wrapper(os.path.join(system, "bin/switch-to-configuration"), root, "switch-to-configuration", system)
    _wrapper(os.path.join(system, "sw/bin/nix-env"), root, "nix-env")
    _wrapper(os.path.join(system, "sw/bin/shutdown"), root, "shutdown")
    with open(os.path.join(system, "nixos-version"), "w") as handle:
        handle.write("fake\n")
    if fail_activation:
        open(os.path.join(system, "fake-activation-fails"), "w").close()
    return system


def init(root):
    """Lay out a freshly installed 'host' under root."""
    root = os.path.abspath(root)
    for sub in ("bin", "etc/nixos", "nix/store", "nix/var/nix/profiles", "run/units", "var/lib"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for command in COMMANDS:
        _wrapper(os.path.join(root, "bin", command), root, command)
    installed = make_system(root, "nixos", "installer", "default-kernel", "no-nvidia")
    for link in ("run/current-system", "run/booted-system", "nix/var/nix/profiles/system"):
        _ln(installed, os.path.join(root, link))
    return root


# ---------------------------------------------------------------------- the commands

def _flake_dir(ref):
    path, _, name = ref.partition("#")
    if path.startswith("path:"):
        path = path[len("path:"):]
    return path, name


def _source_files(directory):
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for filename in sorted(files):
            full = os.path.join(base, filename)
            yield os.path.relpath(full, directory), full


def cmd_nixos_rebuild(root, args):
    if not args or args[0] != "build" or "--flake" not in args:
        sys.stderr.write("fake nixos-rebuild: only `build --flake REF` is emulated, got %r\n" % (args,))
        return 2
    directory, name = _flake_dir(args[args.index("--flake") + 1])
    if not os.path.isfile(os.path.join(directory, "flake.nix")):
        sys.stderr.write("error: path '%s' does not contain a 'flake.nix'\n" % directory)
        return 1
    if "--no-update-lock-file" in args and not os.path.isfile(os.path.join(directory, "flake.lock")):
        sys.stderr.write("error: flake '%s' requires lock file changes but they're not allowed due to "
                         "'--no-update-lock-file'\n" % directory)
        return 1
    host = os.path.join(directory, "hosts", name)
    if not os.path.isfile(os.path.join(host, "default.nix")):
        sys.stderr.write("error: flake does not provide attribute 'nixosConfigurations.%s'\n" % name)
        return 1
    parts = []
    for rel, full in _source_files(directory):
        with open(full, "rb") as handle:
            content = handle.read()
        if rel.endswith(".nix"):
            parsed = subprocess.run(["nix-instantiate", "--parse", full], capture_output=True, text=True)
            if parsed.returncode != 0:
                sys.stderr.write(parsed.stderr)
                return 1
        parts += [rel, content]
    source = os.path.join(root, "nix/store", "%s-source" % _digest(*parts))
    if not os.path.isdir(source):
        shutil.copytree(directory, source, symlinks=True)
    with open(os.path.join(host, "hardware.nix")) as handle:
        hardware = handle.read()
    kernel = "\n".join(line.strip() for line in hardware.splitlines() if "kernelPackages =" in line) or "default-kernel"
    nvidia = "\n".join(line.strip() for line in hardware.splitlines()
                       if re.search(r"^\s*(open|package) = ", line))
    fails = any(FAIL_MARKER in part for part in parts if isinstance(part, bytes))
    system = make_system(root, name, _digest(*parts), kernel, nvidia, fail_activation=fails)
    _ln(system, os.path.join(os.getcwd(), "result"))
    print(system)
    return 0


def cmd_nix(root, args):
    words = [a for a in args if not a.startswith("--extra-experimental-features") and a != "nix-command flakes"]
    if words[:2] not in (["flake", "lock"], ["flake", "update"]):
        sys.stderr.write("fake nix: only `flake lock` / `flake update` are emulated, got %r\n" % (args,))
        return 2
    ref = words[-1]
    directory, _ = _flake_dir(ref)
    lock = os.path.join(directory, "flake.lock")
    rev = _digest("nixpkgs", words[1], os.path.exists(lock) and open(lock).read())[:40]
    with open(lock, "w") as handle:
        json.dump({"nodes": {"nixpkgs": {"locked": {"owner": "NixOS", "repo": "nixpkgs", "rev": rev, "type": "github"}},
                             "root": {"inputs": {"nixpkgs": "nixpkgs"}}}, "root": "root", "version": 7},
                  handle, indent=2, sort_keys=True)
    return 0


def cmd_nix_env(root, args):
    if "-p" not in args or "--set" not in args:
        sys.stderr.write("fake nix-env: only `-p PROFILE --set PATH` is emulated\n")
        return 2
    _ln(args[args.index("--set") + 1], args[args.index("-p") + 1])
    return 0


def cmd_nixos_generate_config(root, args):
    if args != ["--show-hardware-config"]:
        sys.stderr.write("fake nixos-generate-config: only --show-hardware-config is emulated\n")
        return 2
    sys.stdout.write(HARDWARE_CONFIGURATION)
    return 0


def cmd_systemd_run(root, args):
    env = dict(os.environ)
    unit, wait, i = "run-fake", False, 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-E", "--setenv"):
            i += 1
            arg = "--setenv=" + args[i]
        if arg.startswith("--setenv="):
            key, sep, value = arg[len("--setenv="):].partition("=")
            if sep:
                env[key] = value
        elif arg.startswith("--unit="):
            unit = arg[len("--unit="):]
        elif arg == "--wait":
            wait = True
        i += 1
    command = args[i:]
    if not command:
        sys.stderr.write("fake systemd-run: no command\n")
        return 2
    if wait:
        return subprocess.call(command, env=env)
    log = open(os.path.join(root, "run/units", unit + ".log"), "ab")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    with open(os.path.join(root, "run/units", unit + ".pid"), "w") as handle:
        handle.write("%d\n" % proc.pid)
    sys.stderr.write("Running as unit: %s.service\n" % unit)
    return 0


def cmd_switch_to_configuration(root, args):
    system, args = args[0], args[1:]
    if args != ["switch"]:
        sys.stderr.write("fake switch-to-configuration: only `switch` is emulated\n")
        return 2
    _ln(system, os.path.join(root, "run/current-system"))
    k3s_yaml = os.path.join(root, "etc/rancher/k3s/k3s.yaml")
    if not os.path.exists(k3s_yaml):
        os.makedirs(os.path.dirname(k3s_yaml), exist_ok=True)
        with open(k3s_yaml, "w") as handle:
            handle.write(K3S_YAML)
        os.chmod(k3s_yaml, 0o600)
    if os.path.exists(os.path.join(system, "fake-activation-fails")):
        sys.stderr.write("warning: the following units failed: k3s.service\n")
        return 4
    return 0


def cmd_shutdown(root, args):
    if not args or args[0] != "-r":
        sys.stderr.write("fake shutdown: only a reboot (-r) is emulated, got %r\n" % (args,))
        return 2
    with open(os.path.join(root, "run/shutdown.log"), "a") as handle:
        handle.write(json.dumps(args) + "\n")
    _ln(os.path.realpath(os.path.join(root, "run/current-system")), os.path.join(root, "run/booted-system"))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "init":
        print(init(argv[1]))
        return 0
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    command, root, args = argv[0], argv[1], argv[2:]
    handler = {
        "switch-to-configuration": cmd_switch_to_configuration,
        "nixos-rebuild": cmd_nixos_rebuild,
        "nix": cmd_nix,
        "nix-env": cmd_nix_env,
        "nixos-generate-config": cmd_nixos_generate_config,
        "systemd-run": cmd_systemd_run,
        "shutdown": cmd_shutdown,
    }.get(command)
    if handler is None:
        sys.stderr.write("unknown fake command %r\n" % command)
        return 2
    return handler(root, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
