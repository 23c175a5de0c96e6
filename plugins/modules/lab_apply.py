#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# The work is done by the action plugin of the same name (plugins/action/lab_apply.py, on the controller);
# this file holds its documentation for ansible-doc.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lab_apply
short_description: Validate, apply server-side and prune a lab's Kubernetes objects as one ApplySet
version_added: 0.2.0
description:
  - Deploy's one apply (docs/deploy.md, "One apply"). Runs on the controller (an action plugin; no module is started,
    nothing is copied to a host) and speaks to the API server through the collection's client.
  - B(Phases.) Namespaces first, then every object whose API is served, then the objects of a custom resource whose
    CRD a chart installs (ServiceMonitors, PrometheusRules), once the API appears (O(crd_timeout)).
  - B(Validate a phase, then write it.) Every object of a phase is first sent as a server-side apply with
    C(dryRun=All) and C(fieldValidation=Strict); if the API server refuses any, nothing of the phase is written and
    each refusal is reported naming the object.
  - B(Write only what changes.) An object whose dry-run answer equals the live object is not sent again; a re-run
    reports C(changed=false).
  - B(One field manager.) Everything is applied under O(field_manager). Fields listed in O(owned_fields) are cut out
    of that apply and applied under their owner's own manager (the GPU swap owns the GPU backends' replicas and
    vLLM's model, args and node pin), so the deploy manager never holds them.
  - B(ApplySet.) With O(applyset), every object is labelled C(applyset.kubernetes.io/part-of) and a parent ConfigMap
    records the kinds and namespaces of the set (KEP-3659, tooling C(ailab.gpu_lab)). With O(prune), members the
    set held and O(components) no longer declare are deleted; Namespaces, PersistentVolumeClaims and
    PersistentVolumes never are.
  - O(state=rendered) writes the same objects (labels included) as a kustomize tree, one directory per component,
    and contacts no cluster.
author:
  - ailab maintainers (@ailab)
extends_documentation_fragment:
  - ailab.gpu_lab.kubernetes
attributes:
  check_mode:
    support: full
    description: Every object is dry-run by the API server; nothing is written, prunes are reported.
  diff_mode:
    support: full
    description: Each created, changed or deleted object before and after (server-set fields left out).
options:
  state:
    description:
      - V(present) applies (and with O(prune) prunes); V(absent) deletes the declared objects (never PVCs, PVs or
        Namespaces); V(rendered) writes the tree under O(render_dir).
    type: str
    choices: [present, absent, rendered]
    default: present
  components:
    description:
      - The objects, by component. Each item has C(name) (the component; its directory when rendered) and C(files), a
        mapping of file name to a list of objects (a string is a file written beside them, not applied).
    type: list
    elements: dict
    required: true
  applyset:
    description:
      - The parent of the set, C(name) and C(namespace) of a ConfigMap, and C(version) (the tooling's version).
    type: dict
  prune:
    description:
      - Delete the set's members that O(components) no longer declare. Only for a run that declares the whole lab
        (deploy turns it off for a tagged run).
    type: bool
    default: false
  owned_fields:
    description:
      - Fields applied under another field manager. Each item has C(manager), C(kind), C(namespace), C(name) and
        C(paths), a list of key paths (a step inside a list of containers is the container's name).
    type: list
    elements: dict
    default: []
  render_dir:
    description: Where O(state=rendered) writes the tree.
    type: path
  wait:
    description:
      - Workloads to wait for after the apply (C(apiVersion), C(kind), C(namespace), C(name)); a timeout names each
        one not ready and why its pods wait (image pulls, crash loops).
    type: list
    elements: dict
    default: []
  wait_timeout:
    description: Seconds to wait for O(wait).
    type: int
    default: 600
  crd_timeout:
    description: Seconds to wait for the API of a custom resource (its CRD installed by a chart) after the rest is applied.
    type: int
    default: 300
  field_manager:
    description: The field manager of the apply.
    type: str
    default: ailab.gpu_lab
"""

EXAMPLES = r"""
- name: Apply the lab's objects as one ApplySet and prune what is no longer declared
  ailab.gpu_lab.lab_apply:
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
    components:
      - name: qdrant
        files:
          qdrant.yaml: "{{ lookup('ansible.builtin.template', 'qdrant.yaml.j2') | ansible.builtin.from_yaml_all | list }}"
    applyset: {name: gpu-lab-applyset, namespace: ai-lab, version: 0.2.0}
    prune: true
"""

RETURN = r"""
results:
  description: What happened to each object (V(created), V(configured), V(unchanged), V(deleted), V(kept), V(skipped)).
  returned: state is present or absent
  type: list
  elements: dict
  sample: [{object: "Deployment ai-lab/qdrant", action: unchanged}]
applyset_id:
  description: The ApplySet's id (the value of the members' C(applyset.kubernetes.io/part-of) label).
  returned: with applyset
  type: str
notes:
  description: What check mode could not dry-run (objects of a CRD not installed yet).
  returned: state is present
  type: list
  elements: str
written:
  description: The files written (relative to O(render_dir)).
  returned: state is rendered
  type: list
  elements: str
"""
