#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_swap
short_description: One step of handing the lab's single GPU to Ollama, vLLM or nobody, as a transaction
version_added: 0.1.0
description:
  - Runs one step of a GPU swap; the C(ailab.gpu_lab.gpu_swap) role calls the steps in order, with the host-side checks
    (C(ailab.gpu_lab.model_pull) O(ignore:state=unloaded), C(ailab.gpu_lab.gpu_capacity) with C(nvidia-smi)) between them.
    See docs/gpu_swap.md for the whole sequence.
  - The recorded owner lives in ConfigMap C(gpu-lab-state) (keys C(owner), C(model), C(node)); while a swap runs the same
    ConfigMap holds the intent (C(intent_from), C(intent_to), C(intent_phase), C(intent_holder), C(intent_started_at)) and
    the coordination.k8s.io Lease C(gpu-lab-swap) is held, renewed while waiting, so two swaps never proceed at once and
    a run that died is recognised by its lease expiring.
  - V(status) reports owner, intent, lock and both GPU backends. V(begin) first completes or rolls back a swap an
    interrupted run left behind, validates the target against the catalog, returns C(noop=true) with C(changed=false)
    when the lab is already in that state, else refuses when a pod other than the lab's GPU backends holds the node's
    GPU or waits (Pending) for it and fits the node (stopping the owner would hand it the GPU), or when the gateway
    check has no key, then takes the lock and records the intent with the GPU backends' templates as they are
    (C(intent_restore)). V(stop) looks for such a pod again, deletes the GPU backends' Failed pods (which the
    ReplicaSet controller leaves), scales every GPU backend to 0 and waits until their pods are deleted or terminal
    (not just Terminating) and the node's GPU is free. V(start) sets vLLM's model (arguments and served name from the
    catalog), scales the target to 1, waits for Ready (failing at once on what the kubelet reports as hopeless, see
    O(ready_timeout)), sends a real request through the gateway to the target's alias (fallbacks disabled), records
    the new owner and releases the lock. V(stop) and V(start) act only when the recorded intent is this run's
    (O(holder)) and in the phase they start from. V(rollback) restores the owner recorded in C(intent_from) and the
    templates recorded at V(begin) (vLLM's arguments and model annotation, node selectors), and waits for it.
    V(recover) is what the deploy role calls before touching GPU backends; it finishes (phase C(committing)) or rolls
    back an interrupted swap.
  - Transient API errors (connection refused, 5xx, 429, as while an API server restarts) are retried for O(api_retry_timeout)
    seconds; every other API error fails the step at once with a sentence naming the object.
extends_documentation_fragment:
  - ailab.gpu_lab.kubernetes
attributes:
  check_mode:
    support: full
    description: V(begin) and V(status) report the plan (including a pending recovery) and write nothing; the role runs
      no other step in check mode.
  diff_mode:
    support: none
    description: The plan and the phases are returned instead.
options:
  step:
    description: The step to run (see the description).
    type: str
    required: true
    choices: [status, begin, stop, start, rollback, recover]
  target:
    description:
      - V(begin) and V(start) only. V(ollama), V(vllm) (keeps the model vLLM serves now, else O(default_vllm_model), else
        the catalog's first vllm model), V(vllm:<catalog name>) or V(none). Anything else fails listing the valid targets.
    type: str
  models:
    description: The model catalog (C(gpu_lab_models)); valid vLLM targets, their arguments and served names come from it.
    type: list
    elements: dict
    default: []
  namespace:
    description: Namespace of the lab (GPU backends, state ConfigMap, Lease).
    type: str
    default: ai-lab
  node:
    description:
      - The GPU node to hand over. Default the catalog entry's C(node), else the recorded node, else the only node that
        advertises O(resource_name) (several without a choice is an error).
    type: str
  holder:
    description: The lock holder identity V(begin) returned; required by V(stop) and V(start).
    type: str
  since:
    description:
      - Wall-clock time (seconds since the epoch) the previous step finished (its C(finished_at)), so the time spent
        in the role's tasks between two steps is reported as a phase.
    type: float
  multi_node:
    description: V(start) only; pin the target to O(node) with a C(kubernetes.io/hostname) node selector (V(begin) returns it).
    type: bool
    default: false
  reason:
    description: V(rollback) only; what failed, recorded in the phase name.
    type: str
    default: ""
  ollama_deployment:
    description: Name of the Ollama Deployment.
    type: str
    default: ollama
  vllm_deployment:
    description: Name of the vLLM Deployment.
    type: str
    default: vllm
  vllm_container:
    description: Name of the vLLM container whose C(args) carry the model.
    type: str
    default: vllm
  default_vllm_model:
    description: Catalog name V(vllm) alone means when vLLM serves no model yet.
    type: str
  probe_alias:
    description: Alias of the gateway check when Ollama is the target. Default the catalog's first Ollama chat model.
    type: str
  resource_name:
    description: The extended resource that stands for a GPU.
    type: str
    default: nvidia.com/gpu
  lease_duration:
    description:
      - Seconds the lock stays valid after each renewal. Every step renews it, and so does every wait; it must exceed
        the longest task the role runs between two steps (Ollama unload, host check).
    type: int
    default: 120
  lock_timeout:
    description: Seconds to wait for another run's lock to be released or to expire before failing.
    type: int
    default: 150
  delete_timeout:
    description: Seconds to wait until the old owner's pods are deleted and the GPU is free.
    type: int
    default: 180
  ready_timeout:
    description:
      - Seconds to wait for the target to be Ready. V(0) derives it from the target Deployment's own startup probe
        (C(initialDelaySeconds + failureThreshold x periodSeconds), the backend's load budget the deploy role sets)
        plus 120 s, so the kubelet gives up on a slow load before the swap does; 900 without a startup probe.
      - The wait ends at once, with the kubelet's reason and the container's last message, when the target cannot get
        Ready by waiting (CrashLoopBackOff, ErrImagePull, ImagePullBackOff, CreateContainerConfigError, InvalidImageName,
        an OOM kill, a restart while loading such as a startup probe that ran out, a Failed pod).
    type: int
    default: 0
  unload_error:
    description: V(stop) only; why unloading Ollama's models before the stop failed. Reported as a warning.
    type: str
  poll_interval:
    description: Seconds between two looks at a condition.
    type: float
    default: 0.5
  verify_gateway:
    description:
      - V(start) sends a request through the gateway to the target's alias before committing; V(begin) fails before any
        change when it is on and O(gateway_url) is missing.
    type: bool
    default: true
  gateway_url:
    description:
      - Base URL of the LiteLLM gateway as the controller reaches it (without C(/v1)). Required with O(verify_gateway)
        when the target is a backend.
    type: str
  gateway_api_key:
    description: Key for the gateway. Default the C(LITELLM_MASTER_KEY) of Secret O(gateway_secret) in the lab namespace.
    type: str
  gateway_secret:
    description: Secret holding C(LITELLM_MASTER_KEY), read when O(gateway_api_key) is not given.
    type: str
    default: litellm-env
  gateway_timeout:
    description: Seconds to keep trying the gateway request before the step fails (and the role rolls back).
    type: int
    default: 120
  vllm_url:
    description:
      - vLLM's base URL as this step reaches it, for the fast path (vLLM sleep mode, see the role's docs), that is its
        C(/metrics), C(/sleep), C(/wake_up), C(/is_sleeping) and a 1-token warm-up request.
      - Empty (the default) means the ClusterIP of vLLM's Service, which only a cluster node reaches; where vLLM cannot
        be reached, V(begin) takes the usual path (vLLM stopped and started) and says why.
    type: str
    default: ""
  drain_timeout:
    description: Seconds the fast path waits for vLLM's running and waiting requests to end before it sleeps (a sleep
      during a decode crashed vLLM's engine); past it the step fails and the role rolls back.
    type: int
    default: 120
notes:
  - The Kubernetes user needs to read/patch Deployments and their scale, list pods and nodes, read/write the state
    ConfigMap and the Lease, and read the gateway Secret; the k3s admin kubeconfig can.
author:
  - ailab maintainers (@ailab)
seealso:
  - module: ailab.gpu_lab.gpu_capacity
  - module: ailab.gpu_lab.model_pull
"""

EXAMPLES = r"""
- name: Who owns the GPU, and is a swap in progress?
  ailab.gpu_lab.gpu_swap:
    step: status
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
  delegate_to: localhost

- name: Complete or roll back an interrupted swap (what deploy runs before touching GPU backends)
  ailab.gpu_lab.gpu_swap:
    step: recover
    kubeconfig: ~/.kube/gpu_lab/gpu-box.yaml
    models: "{{ gpu_lab_models }}"
  delegate_to: localhost
"""

RETURN = r"""
owner:
  description: V(status) the recorded owner; V(start) the new owner (V(ollama), V(vllm:<model>) or V(none)).
  returned: status, start
  type: str
  sample: vllm:qwen2.5-7b
noop:
  description: V(begin) only; the lab is already in the requested state, nothing was touched.
  returned: begin
  type: bool
plan:
  description: V(begin) only; the steps the swap will take, in order.
  returned: begin
  type: list
  elements: str
current:
  description: V(begin) only; the owner before the swap.
  returned: begin
  type: str
target:
  description: V(begin) only; the validated target.
  returned: begin
  type: str
node:
  description: The node whose GPU is handed over.
  returned: begin, status
  type: str
fast_path:
  description: V(begin) only; whether the hand-over moves the VRAM instead of the pods (vLLM sleeps or wakes; see the
    role's docs, "Fast path - vLLM sleep mode"). When vLLM runs in sleep mode and it does not, the notes say why.
  returned: begin
  type: bool
holder:
  description: The lock holder identity of this swap (pass it to the next steps).
  returned: always
  type: str
recovered:
  description: V(begin) and V(recover); what was done with a swap an interrupted run left (action, from, to, phase), or null.
  returned: begin, recover
  type: dict
removed_pods:
  description: V(stop) only; the GPU backends' Failed pods that were deleted (name, reason and message of each).
  returned: stop
  type: list
  elements: str
restored:
  description: V(rollback) only; the owner that is back.
  returned: rollback
  type: str
phases:
  description: What this step did, each with its duration and the part of it spent waiting on a condition.
  returned: always
  type: list
  elements: dict
  sample: [{name: wait until pods are deleted, seconds: 20.4, waited: 20.1}]
finished_at:
  description: Wall-clock time the step finished (pass it as O(since) to the next step).
  returned: always
  type: float
state:
  description: The data of ConfigMap C(gpu-lab-state) after the step.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs


def main():
    argument_spec = dict(
        step=dict(type="str", required=True, choices=["status", "begin", "stop", "start", "rollback", "recover"]),
        target=dict(type="str"),
        models=dict(type="list", elements="dict", default=[]),
        namespace=dict(type="str", default="ai-lab"),
        node=dict(type="str"),
        holder=dict(type="str"),
        since=dict(type="float"),
        multi_node=dict(type="bool", default=False),
        reason=dict(type="str", default=""),
        ollama_deployment=dict(type="str", default="ollama"),
        vllm_deployment=dict(type="str", default="vllm"),
        vllm_container=dict(type="str", default="vllm"),
        default_vllm_model=dict(type="str"),
        probe_alias=dict(type="str"),
        resource_name=dict(type="str", default="nvidia.com/gpu"),
        lease_duration=dict(type="int", default=120),
        lock_timeout=dict(type="int", default=150),
        delete_timeout=dict(type="int", default=180),
        ready_timeout=dict(type="int", default=0),
        unload_error=dict(type="str"),
        poll_interval=dict(type="float", default=0.5),
        verify_gateway=dict(type="bool", default=True),
        gateway_url=dict(type="str"),
        gateway_api_key=dict(type="str", no_log=True),
        gateway_secret=dict(type="str", default="litellm-env", no_log=False),
        gateway_timeout=dict(type="int", default=120),
        vllm_url=dict(type="str", default=""),
        drain_timeout=dict(type="int", default=120),
    )
    argument_spec.update(kube.KUBE_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("step", "begin", ["target"]), ("step", "start", ["target", "holder"]),
                                        ("step", "stop", ["holder"])])
    p = module.params
    try:
        if p["step"] == "begin":
            gs.parse_target(p["target"], p["models"])  # bad input fails before the cluster is even asked
        cluster = gs.Cluster(gs.transport(p), p["namespace"], retry_timeout=p["api_retry_timeout"])
    except gs.SwapError as exc:
        module.fail_json(msg=str(exc))
    swap = gs.Swap(cluster, p, check_mode=module.check_mode)
    try:
        if p["step"] == "status":
            result = dict(swap.status(), changed=False)
        elif p["step"] == "begin":
            result = swap.begin(p["target"])
            if module.check_mode:
                result["changed"] = not result["noop"] or bool(result.get("recovered"))
        elif p["step"] == "stop":
            result = swap.stop(p["node"], unload_error=p["unload_error"])
            if p["unload_error"]:
                module.warn("Ollama's models were not unloaded before Ollama was stopped: %s" % p["unload_error"])
        elif p["step"] == "start":
            verify = None
            target = gs.parse_owner_text(p["target"])
            alias = gs.probe_alias(p["models"], target, p["probe_alias"])
            if p["verify_gateway"] and alias:
                if not p["gateway_url"]:
                    raise gs.SwapError("gateway_url is not set, so the new owner cannot be checked through the gateway: set "
                                       "gpu_swap_gateway_url (LiteLLM as the controller reaches it, e.g. over the tailnet) "
                                       "or gpu_swap_verify_gateway: false")
                key = p["gateway_api_key"] or cluster.secret_value(p["gateway_secret"], "LITELLM_MASTER_KEY")
                if not key:
                    raise gs.SwapError("no gateway key: Secret %s/%s has no LITELLM_MASTER_KEY (run the secrets playbook) "
                                       "and gpu_swap_gateway_api_key is not set" % (p["namespace"], p["gateway_secret"]))
                module.no_log_values.add(key)
                verify = gs.gateway_verifier(p["gateway_url"], key, alias, p["gateway_timeout"], open_url)
            result = swap.start(p["target"], p["node"], multi_node=p["multi_node"], verify=verify)
        elif p["step"] == "rollback":
            result = swap.rollback(p["reason"])
        else:
            recovered = swap.recover()
            result = dict(swap.report(), changed=bool(recovered) and not module.check_mode, recovered=recovered)
    except (gs.SwapError, kube.KubeError, ValueError) as exc:  # CatalogError is a ValueError
        report = {}
        try:
            report = swap.report()
        except (gs.SwapError, kube.KubeError):
            report = {"phases": swap.phases, "holder": swap.holder}
        module.fail_json(msg=str(exc), **report)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
