# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the provision role: thin wrappers over plugins/module_utils/nixos.py.

Documented beside this file: provision_kubeconfig_rewrite.yml, provision_switch_plan.yml,
provision_switch_unit.yml, provision_nix_string.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.module_utils.nixos import (
    ProvisionError,
    kubeconfig_server_url,
    nix_string,
    nix_string_list,
    rewrite_kubeconfig,
    switch_unit_name,
    switch_plan,
)

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None


def provision_kubeconfig_rewrite(kubeconfig, host, name, port=6443):
    """k3s.yaml (text or mapping) -> kubeconfig YAML text pointing at https://host:port, named name."""
    if yaml is None:
        raise AnsibleFilterError("provision_kubeconfig_rewrite needs PyYAML on the controller")
    if isinstance(kubeconfig, (bytes, str)):
        try:
            kubeconfig = yaml.safe_load(kubeconfig)
        except yaml.YAMLError as exc:
            raise AnsibleFilterError("provision_kubeconfig_rewrite: the k3s kubeconfig is not valid YAML: %s" % exc)
    try:
        # plain types only: Ansible's tagged strings/containers are not representable by safe_dump
        plain = json.loads(json.dumps(kubeconfig))
        rewritten = rewrite_kubeconfig(plain, kubeconfig_server_url(str(host), int(port)), str(name))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("provision_kubeconfig_rewrite: %s" % exc)
    return yaml.safe_dump(rewritten, default_flow_style=False, sort_keys=True)


def provision_switch_plan(new_system, current_system, booted=None, built=None):
    """Changed-detection: whether to switch and whether a reboot is needed (see the module_utils)."""
    try:
        return switch_plan(current_system, new_system, booted=booted, built=built)
    except ProvisionError as exc:
        raise AnsibleFilterError("provision_switch_plan: %s" % exc)


def provision_switch_unit(new_system):
    """The transient systemd unit name of the switch to one generation."""
    if not new_system:
        raise AnsibleFilterError("provision_switch_unit: the new system path is empty")
    return switch_unit_name(new_system)


def provision_nix_string(value):
    """Quote a value as a Nix string literal (escapes backslash, quote, ${ and control characters)."""
    try:
        if isinstance(value, (list, tuple)):
            return nix_string_list(value)
        return nix_string(value)
    except ProvisionError as exc:
        raise AnsibleFilterError("provision_nix_string: %s" % exc)


class FilterModule(object):
    """ailab.gpu_lab provision filters."""

    def filters(self):
        return {
            "provision_kubeconfig_rewrite": provision_kubeconfig_rewrite,
            "provision_switch_plan": provision_switch_plan,
            "provision_switch_unit": provision_switch_unit,
            "provision_nix_string": provision_nix_string,
        }
