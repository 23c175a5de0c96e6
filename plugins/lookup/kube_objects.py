# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup ailab.gpu_lab.kube_objects: read objects through the collection's one client, in the controller's process."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: kube_objects
short_description: Read Kubernetes objects (one by name, or a list by namespace and label) through the collection's client
description:
  - The roles' reads of the cluster (the GPU owner record, the device plugin's pre-flight, vLLM's live model, the
    Services the pulls and collections go to, the image pre-pull's progress) go through C(module_utils/kube_client.py),
    the client every module and the one apply use, with its transient-error retries, its kubeconfig handling without the
    kubernetes library (a read costs milliseconds, not the quarter of a second of the C(kubernetes.core.k8s) lookup,
    which builds a client and its discovery per call), and the same connection options.
  - Returns a list (empty when the object does not exist or its API is not served), like the C(kubernetes.core.k8s)
    lookup.
options:
  api_version:
    description: API version of the kind.
    type: str
    default: v1
  kind:
    description: The kind.
    type: str
    required: true
  namespace:
    description: Namespace (namespaced kinds).
    type: str
  resource_name:
    description: One object by name; without it, every object of the namespace (or the cluster) that matches O(label_selector).
    type: str
  label_selector:
    description: Label selector of a list.
    type: str
  kubeconfig:
    description: Path to the kubeconfig (default C($KUBECONFIG), else C(~/.kube/config)).
    type: path
  context:
    description: Context of the kubeconfig (default its current one).
    type: str
author: ailab maintainers (@ailab)
"""

EXAMPLES = r"""
- name: Read the recorded GPU owner
  ansible.builtin.debug:
    msg: "{{ query('ailab.gpu_lab.kube_objects', kind='ConfigMap', namespace='ai-lab', resource_name='gpu-lab-state',
                   kubeconfig='~/.kube/gpu_lab/gpu-box.yaml') }}"
"""

RETURN = r"""
_raw:
  description: The objects found, as the API returns them (dicts).
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.ailab.gpu_lab.plugins.module_utils import apply as _apply
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client


class LookupModule(LookupBase):
    """Objects read through kube_client."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        api_version, kind = self.get_option("api_version"), self.get_option("kind")
        params = {}
        if self.get_option("kubeconfig"):
            params["kubeconfig"] = os.path.expanduser(self.get_option("kubeconfig"))
        if self.get_option("context"):
            params["context"] = self.get_option("context")
        try:
            api = _apply.Api(kube_client.connect(params, routes={}))
            served = api.resources(api_version)
            if served is None or kind not in served:
                return []
            name = self.get_option("resource_name")
            if name:
                found = api.get({"apiVersion": api_version, "kind": kind,
                                 "metadata": {"name": name, "namespace": self.get_option("namespace")}})
                return [found] if found else []
            return [dict(item, apiVersion=api_version, kind=kind) for item in api.list(
                api_version, kind, self.get_option("namespace"), self.get_option("label_selector") or "")]
        except (kube_client.KubeError, _apply.ApplyError) as exc:
            raise AnsibleLookupError("ailab.gpu_lab.kube_objects: %s" % exc)
