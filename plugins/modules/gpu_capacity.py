#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_capacity
short_description: Report GPU capacity, allocation and holders per node, and optionally require free GPUs
version_added: 0.1.0
description:
  - Reads, per Kubernetes node, the GPU extended resource (default C(nvidia.com/gpu)) as capacity, allocatable,
    requested by pods that still exist (Terminating pods count, as the scheduler counts them until the pod object is
    deleted) and free, with the pods holding GPUs (namespace, name, phase, owner workload, amount).
  - Lists pods that request the resource but are not scheduled (Pending), with the scheduler's reason.
  - Optionally reads the host's view from C(nvidia-smi) (memory total/used/free per GPU and compute processes), so a game
    or a stray process that Kubernetes cannot see is reported. Run it on the GPU host for that.
  - With O(require_free) or O(require_host_free_mib) the task fails, naming what holds the GPU, unless the
    requirement holds; with O(wait_timeout) it first waits (polling, no fixed sleep) for the requirement to hold.
  - Read-only; never changes anything.
author:
  - ailab maintainers (@ailab)
extends_documentation_fragment:
  - ailab.gpu_lab.read_only
  - ailab.gpu_lab.kubernetes
options:
  sources:
    description:
      - Where to read from. V(kubernetes) queries the API server; V(nvidia-smi) runs C(nvidia-smi) on the target host.
    type: list
    elements: str
    choices: [kubernetes, nvidia-smi]
    default: [kubernetes]
  resource_name:
    description:
      - The extended resource that stands for a GPU. Under device-plugin time-slicing with renaming it is
        C(nvidia.com/gpu.shared).
    type: str
    default: nvidia.com/gpu
  node:
    description:
      - Report on, and require free GPUs on, this node only. Fails if the node does not exist.
    type: str
  require_free:
    description:
      - Fail unless at least this many of O(resource_name) are free on O(node) (or on some node when O(node) is
        omitted). The message names the pods holding them.
    type: int
  require_host_free_mib:
    description:
      - With V(nvidia-smi) in O(sources), fail unless every GPU of the host has at least this much memory free (MiB).
        The message names the compute processes and the memory no compute process accounts for (graphics clients
        such as a game).
    type: int
  wait_timeout:
    description:
      - Seconds to wait for the requirements to hold, polling every O(wait_sleep) seconds. V(0) checks once.
    type: int
    default: 0
  wait_sleep:
    description:
      - Seconds between two checks while waiting.
    type: int
    default: 2
  nvidia_smi_path:
    description:
      - The C(nvidia-smi) executable on the target host.
    type: str
    default: nvidia-smi
notes:
  - The Kubernetes user needs to list nodes, pods and replicasets cluster-wide.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Report GPU capacity of every node
  ailab.gpu_lab.gpu_capacity:
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
  register: gpu
  delegate_to: localhost

- name: Require one free GPU on gpu-box, waiting up to 3 minutes for a Terminating pod to go
  ailab.gpu_lab.gpu_capacity:
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
    node: gpu-box
    require_free: 1
    wait_timeout: 180
  delegate_to: localhost

- name: On the GPU host, require 20 GiB of GPU memory really free (no game, no stray process)
  ailab.gpu_lab.gpu_capacity:
    sources: [nvidia-smi]
    require_host_free_mib: 20480
  become: true

- name: Time-sliced GPUs
  ailab.gpu_lab.gpu_capacity:
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
    resource_name: nvidia.com/gpu.shared
"""

RETURN = r"""
resource:
  description: The extended resource reported on.
  returned: always
  type: str
  sample: nvidia.com/gpu
looks:
  description: How many times the state was read; more than 1 means the requirements did not hold at first and it waited.
  returned: always
  type: int
  sample: 1
waited_seconds:
  description: Seconds from the first read to the read this report comes from (0 when the first read was the answer).
  returned: always
  type: float
  sample: 0.0
advertised:
  description: Whether any reported node advertises O(resource_name) (false usually means no device plugin).
  returned: when kubernetes is in O(sources)
  type: bool
nodes:
  description: One entry per node (only O(node) when given).
  returned: when kubernetes is in O(sources)
  type: list
  elements: dict
  contains:
    name: {description: Node name., type: str, returned: always}
    ready: {description: Node condition Ready is True., type: bool, returned: always}
    schedulable: {description: Node is not cordoned., type: bool, returned: always}
    advertised: {description: The node's capacity lists the resource., type: bool, returned: always}
    capacity: {description: Capacity of the resource., type: int, returned: always}
    allocatable: {description: Allocatable amount of the resource., type: int, returned: always}
    requested: {description: Amount requested by pods bound to the node that still exist (Terminating included)., type: int, returned: always}
    free: {description: allocatable minus requested., type: int, returned: always}
    holders:
      description: Pods bound to the node that hold the resource.
      type: list
      elements: dict
      returned: always
      sample: [{namespace: ai-lab, name: ollama-7c9d-x2x, phase: Running, terminating: false,
                workload: {kind: Deployment, name: ollama}, amount: 1}]
    labels: {description: The node's C(nvidia.com/*) labels (device plugin / GPU feature discovery)., type: dict, returned: always}
    extended_resources: {description: Every extended resource the node advertises., type: list, elements: str, returned: always}
totals:
  description: Sums of capacity, allocatable, requested and free over the reported nodes.
  returned: when kubernetes is in O(sources)
  type: dict
  sample: {capacity: 1, allocatable: 1, requested: 1, free: 0}
pending:
  description: Pods requesting the resource that are not scheduled, with the scheduler's reason and message.
  returned: when kubernetes is in O(sources)
  type: list
  elements: dict
host:
  description: The host's view from nvidia-smi.
  returned: when nvidia-smi is in O(sources)
  type: dict
  contains:
    gpus:
      description: One entry per GPU, with memory in MiB, compute processes and unattributed memory.
      type: list
      elements: dict
      returned: always
      sample: [{index: 0, uuid: GPU-5d3c..., name: NVIDIA GeForce RTX 4090, memory_total_mib: 24564, memory_used_mib: 21003,
                memory_free_mib: 3060, utilization_percent: 97, driver_version: "550.54.14",
                processes: [{gpu_uuid: GPU-5d3c..., pid: 4121, process_name: python3, used_memory_mib: 20480}],
                unattributed_memory_mib: 523}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client
from ansible_collections.ailab.gpu_lab.plugins.module_utils.gpu_capacity import (
    ROUTES,
    CapacityError,
    collect,
    not_advertised_message,
)


def main():
    argument_spec = dict(
        sources=dict(type="list", elements="str", choices=["kubernetes", "nvidia-smi"], default=["kubernetes"]),
        resource_name=dict(type="str", default="nvidia.com/gpu"),
        node=dict(type="str"),
        require_free=dict(type="int"),
        require_host_free_mib=dict(type="int"),
        wait_timeout=dict(type="int", default=0),
        wait_sleep=dict(type="int", default=2),
        nvidia_smi_path=dict(type="str", default="nvidia-smi"),
    )
    argument_spec.update(kube.KUBE_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params

    kube_list = None
    if "kubernetes" in params["sources"]:
        try:
            client = kube_client.connect(params, ROUTES)
        except kube.KubeError as exc:
            module.fail_json(msg=str(exc))
        kube_list = client.kube_list

    def run_command(argv):
        # NixOS keeps nvidia-smi in the system profile, which a non-login shell's PATH may lack.
        exe = argv[0] if os.path.isabs(argv[0]) else module.get_bin_path(argv[0], opt_dirs=["/run/current-system/sw/bin"])
        if not exe or not os.access(exe, os.X_OK):
            return 127, "", "%s: not found" % argv[0]
        return module.run_command([exe] + argv[1:])

    try:
        report, failure = collect(params, kube_list=kube_list, run_command=run_command)
    except (CapacityError, kube.KubeError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    if failure:
        module.fail_json(msg=failure, **report)
    if report.get("advertised") is False:
        module.warn(not_advertised_message(report))
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
