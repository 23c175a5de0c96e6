"""gpu_swap against a kubelet that fails: each failure a real GPU host shows, injected, and the end state checked.

Real: ansible-playbook with the gpu_swap role and module, kube-apiserver / controller-manager / scheduler (the
ReplicaSet controller that leaves Failed pods and makes replacements, the scheduler that hands a freed GPU to a
Pending pod), Leases and ConfigMaps in etcd, RBAC (the least-privilege test authenticates with a real
ServiceAccount token).
Emulated: the kubelet. kwok (tests/support/controlplane_files/kwok-stages.yaml, knobs in
tests/support/kubelet_knobs.py, docs/testing.md) writes the pod statuses a kubelet writes when a container
crash-loops, is OOM-killed, cannot pull its image, has a bad configuration, runs out its startup probe, or when a
pod is rejected at admission after a reboot; no container runs. nvidia-smi is the hand-written stand-in
(tests/support/nvidia_smi_fake.py); the gateway, where used, is a local OpenAI-compatible stand-in.
Each test's end state is the contract of docs/gpu_swap.md's failure table: the owner recorded is the one serving
and Ready, no intent is left (or the documented one), the Lease is free, the Deployment templates are as before.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import threading
import time

import pytest

from tests.support.catalog_example import load_example_catalog
from tests.support.controlplane import gpu_node
from tests.support.gpu_swap_lab import (DELETE_DELAY, HOLD, NEVER_READY, REPO, SMI_FREE, SMI_GAME, VENV_BIN, Lab,
                                        kill_run, scaling_denied, wait_phase)
from tests.support.kubelet_knobs import (CRASH, FAIL_MESSAGE, FAIL_REASON, IMAGE_PULL, STARTUP_FAILS, WAITING_MESSAGE,
                                         WAITING_REASON)
from tests.support.ollama_server import OllamaServer
from tests.support.openai_backend import OpenAIBackend

BIN = pathlib.Path(VENV_BIN)
CATALOG = load_example_catalog()
SECOND_VLLM = dict(CATALOG["gpu_lab_models"][0], name="mistral-7b", source="mistralai/Mistral-7B-Instruct-v0.3",
                   revision="e0bc86c23ce5aae1db576c8cca6f06f1f73af2db", vllm_args={"max_model_len": 4096})
MODELS = CATALOG["gpu_lab_models"] + [SECOND_VLLM]
ADMISSION = ("Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. Requested: 1, "
             "Available: 0, which is unexpected")


def lab_for(kube, tmp_path, **kwargs):
    return Lab(kube, tmp_path, models=kwargs.pop("models", MODELS), **kwargs).setup()


def assert_settled(lab, owner, model=""):
    problems = lab.owner_settled(owner, model)
    assert not problems, problems


def assert_rolled_back(lab, proc, failed_task, *fragments, owner="ollama", model=""):
    output = proc.stdout if hasattr(proc, "stdout") and isinstance(proc.stdout, str) else proc
    assert getattr(proc, "returncode", 1) != 0, output[-3000:]
    assert f'failed at "{failed_task}' in output, output[-4000:]
    for fragment in fragments:
        assert fragment in output, (fragment, output[-4000:])
    assert "is back (rollback took" in output, output[-4000:]
    assert_settled(lab, owner, model)


def templates(lab):
    """What a rollback must put back: each GPU backend's pod template and model annotation."""
    return {name: (lab.deployment(name)["spec"]["template"],
                   (lab.deployment(name)["metadata"].get("annotations") or {}).get("ailab.gpu-lab/model"))
            for name in ("ollama", "vllm")}


def slow_stop(kube, lab, delay):
    """The live pods of Ollama take ``delay`` to stop once deleted (kwok delete-delay on the pod itself)."""
    res = kube.client.resources.get(api_version="v1", kind="Pod")
    for pod in lab.pods("ollama"):
        res.patch(name=pod["metadata"]["name"], namespace=kube.namespace, content_type="application/merge-patch+json",
                  body={"metadata": {"annotations": {DELETE_DELAY: delay}}})


def gpu_pod(name, namespace, node=None, labels=None, annotations=None, **spec):
    spec = dict(spec, containers=[{"name": "main", "image": "example.invalid/notebook:1",
                                   "resources": {"limits": {"nvidia.com/gpu": 1}}}])
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name},
                         "annotations": annotations or {}}, "spec": spec}


# ------------------------------------------------------------------ the old owner's pods
def test_a_failed_pod_of_the_old_owner_counts_as_gone_and_is_deleted_and_named(kube, tmp_path):
    """After a reboot the device plugin's race leaves a pod of the Ollama ReplicaSet Failed
    (UnexpectedAdmissionError); the ReplicaSet made a replacement and leaves the Failed one for ever."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    rs = kube.list("ReplicaSet", api_version="apps/v1", label_selector="app.kubernetes.io/name=ollama")[0]
    # Made Failed by the kubelet emulation first, then given the ReplicaSet's labels and ownerReference: exactly what
    # a real ReplicaSet pod rejected at admission looks like (created with them, the ReplicaSet would delete it as
    # one pod too many in the instant before the kubelet rejects it).
    kube.apply(gpu_pod("ollama-rebooted", kube.namespace, node="gpu-box",
                       annotations={FAIL_REASON: "UnexpectedAdmissionError", FAIL_MESSAGE: ADMISSION}))
    kube.wait_for(lambda: (kube.get("Pod", "ollama-rebooted").get("status") or {}).get("phase") == "Failed",
                  timeout=60, what="the pod rejected at admission")
    pod = kube.get("Pod", "ollama-rebooted")
    res = kube.client.resources.get(api_version="v1", kind="Pod")
    res.patch(name="ollama-rebooted", namespace=kube.namespace, content_type="application/merge-patch+json",
              body={"metadata": {"labels": dict(rs["spec"]["selector"]["matchLabels"],
                                                **rs["spec"]["template"]["metadata"]["labels"]),
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                      "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
                                                      "controller": True, "blockOwnerDeletion": True}]}})
    assert pod["status"]["reason"] == "UnexpectedAdmissionError"
    assert kube.get("Pod", "ollama-rebooted")["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]

    out = lab.swap("vllm:qwen2.5-7b", gpu_swap_delete_timeout=30)
    assert "deleted the GPU backends' Failed pods" in out.stdout and "ollama-rebooted (UnexpectedAdmissionError" in out.stdout
    assert kube.get("Pod", "ollama-rebooted") is None
    assert_settled(lab, "vllm", "qwen2.5-7b")


def test_pods_not_deleted_in_time_roll_back_and_the_owner_comes_back(kube, tmp_path):
    """Ollama's container takes 20 s to stop (within its 30 s grace period: the kubelet does not kill it earlier),
    longer than gpu_swap_delete_timeout; the pod stays Terminating, not terminal, and holds the GPU until then."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    slow_stop(kube, lab, "20s")
    pod = lab.pods("ollama")[0]["metadata"]["name"]
    before = templates(lab)
    out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_delete_timeout=4)
    assert_rolled_back(lab, out, "Scale the GPU backends", "timed out after 4s: pods of Deployment", pod)
    assert templates(lab) == before


# ------------------------------------------------------------------ somebody else wants the GPU
def test_a_pod_waiting_for_the_gpu_elsewhere_is_refused_before_anything_stops(kube, tmp_path):
    """A notebook in another namespace waits (Pending) for nvidia.com/gpu: stopping Ollama would hand it the GPU."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    other = f"{kube.namespace}-nb"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    kube.other_namespaces.append(other)
    kube.wait_for(lambda: kube.get("ServiceAccount", "default", namespace=other), what="the notebook namespace")
    kube.apply(gpu_pod("jupyter", other))
    kube.wait_for(lambda: any(c.get("reason") == "Unschedulable"
                              for c in (kube.get("Pod", "jupyter", namespace=other).get("status") or {})
                              .get("conditions") or []), what="the notebook Pending for the GPU")
    before = lab.snapshot()
    out = lab.swap("none", check=False)
    assert out.returncode != 0
    assert f"another pod claims the GPU of node gpu-box: {other}/jupyter is Pending for nvidia.com/gpu and fits " \
           "node gpu-box" in out.stdout
    assert "nothing was changed and the current owner keeps serving" in out.stdout
    assert lab.snapshot() == before
    assert_settled(lab, "ollama")
    # A pod that waits for a GPU on ANOTHER node is no claimant of this one.
    kube.delete("Pod", "jupyter", namespace=other, grace_period_seconds=0)
    kube.apply(gpu_pod("jupyter-elsewhere", other, nodeSelector={"kubernetes.io/hostname": "gpu-box-9"}))
    lab.swap("none")
    assert_settled(lab, "none")
    assert (kube.get("Pod", "jupyter-elsewhere", namespace=other).get("spec") or {}).get("nodeName") is None


def test_a_pod_holding_the_gpu_is_named_and_nothing_stops(kube, tmp_path):
    """Another pod already holds the node's GPU (the device plugin advertises one; the scheduler allowed it while
    the owner was at 0): swapping vLLM on would leave vLLM Pending."""
    lab = lab_for(kube, tmp_path, owner="none")
    kube.apply(gpu_pod("stray-holder", kube.namespace))
    kube.wait_for(lambda: (kube.get("Pod", "stray-holder").get("status") or {}).get("phase") == "Running",
                  what="the stray pod Running")
    before = lab.snapshot()
    out = lab.swap("vllm:qwen2.5-7b", check=False)
    assert out.returncode != 0 and f"{kube.namespace}/stray-holder holds nvidia.com/gpu on gpu-box" in out.stdout
    assert lab.snapshot() == before
    assert_settled(lab, "none")


# ------------------------------------------------------------------ the target fails as a kubelet reports it
class PhaseClock(threading.Thread):
    """Watches the target's pods and the record: when the kubelet first reported a hopeless state, and when the
    swap recorded rolling_back and when the owner was recorded again (monotonic seconds)."""

    def __init__(self, lab, target, reasons):
        super().__init__(daemon=True)
        self.lab, self.target, self.reasons = lab, target, reasons
        self.reported = self.rolling_back = self.done = None
        self._halt = threading.Event()

    def _hopeless(self):
        for pod in self.lab.pods(self.target):
            status = pod.get("status") or {}
            if status.get("phase") == "Failed" and "Failed" in self.reasons:
                return True
            for cs in status.get("containerStatuses") or []:
                waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
                if waiting in self.reasons or last in self.reasons or (cs.get("restartCount") or 0) > 0:
                    return True
        return False

    def run(self):
        while not self._halt.is_set():
            try:
                now = time.monotonic()
                if self.reported is None and self._hopeless():
                    self.reported = now
                phase = self.lab.state().get("intent_phase")
                if self.rolling_back is None and phase == "rolling_back":
                    self.rolling_back = now
                if self.rolling_back is not None and self.done is None and not phase:
                    self.done = now
            except Exception:  # noqa: BLE001 - a read racing a delete: look again
                pass
            self._halt.wait(0.1)

    def stop(self):
        self._halt.set()
        self.join(timeout=10)


FAILURES = {
    "crash-loop": ({CRASH: "Error"}, ("CrashLoopBackOff", "Error"), "(Error)"),
    "oom-killed": ({CRASH: "OOMKilled"}, ("OOMKilled",), "137 (OOMKilled)"),
    "image-pull": ({IMAGE_PULL: "fail"}, ("ErrImagePull", "ImagePullBackOff"), "ErrImagePull"),
    "config-error": ({WAITING_REASON: "CreateContainerConfigError", WAITING_MESSAGE: 'secret "hf-token" not found'},
                     ("CreateContainerConfigError",), 'CreateContainerConfigError: secret "hf-token" not found'),
    "invalid-image": ({WAITING_REASON: "InvalidImageName", WAITING_MESSAGE: 'Failed to apply default image tag'},
                      ("InvalidImageName",), "InvalidImageName"),
    "startup-probe": ({STARTUP_FAILS: "true"}, ("CrashLoopBackOff", "Error"), "vllm"),
    "admission": ({FAIL_REASON: "UnexpectedAdmissionError", FAIL_MESSAGE: ADMISSION}, ("Failed",),
                  "Failed (UnexpectedAdmissionError): Allocate failed"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_target_the_kubelet_gives_up_on_ends_the_wait_at_once_and_rolls_back(kube, tmp_path, failure):
    annotations, reasons, fragment = FAILURES[failure]
    lab = Lab(kube, tmp_path, models=MODELS, owner="ollama", pod_annotations={"vllm": annotations})
    lab.setup()
    dep = lab.deployment("vllm")
    # The load budget the deploy role renders as the startup probe; small here so the probe runs out in seconds.
    res = kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    res.patch(name="vllm", namespace=kube.namespace, content_type="application/strategic-merge-patch+json",
              body={"spec": {"template": {"spec": {"containers": [{
                  "name": "vllm", "terminationMessagePolicy": "FallbackToLogsOnError",
                  "startupProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1,
                                   "failureThreshold": 3}}]}}}})
    kube.wait_for(lambda: lab.settled("vllm") and lab.deployment("vllm")["metadata"]["generation"] >
                  dep["metadata"]["generation"], what="the probe patch synced")
    before = templates(lab)
    clock = PhaseClock(lab, "vllm", reasons)
    clock.start()
    out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_ready_timeout=600)
    clock.stop()
    assert_rolled_back(lab, out, "Start the new owner", "will not become Ready", fragment)
    assert "timed out" not in out.stdout.split("failed at")[1][:400]
    assert templates(lab) == before
    assert clock.reported and clock.rolling_back and clock.done, vars(clock)
    reaction = clock.rolling_back - clock.reported
    print(f"\n{failure}: kubelet report -> rollback started {reaction:.1f} s; -> rollback done "
          f"{clock.done - clock.reported:.1f} s")
    assert reaction < 10, f"the rollback started {reaction:.1f} s after the kubelet's report"


# ------------------------------------------------------------------ exact restore
def test_vllm_a_to_vllm_b_failing_restores_model_args_and_node_pin(kube, tmp_path):
    kube.add_node(gpu_node("gpu-box-2"))
    models = CATALOG["gpu_lab_models"] + [dict(SECOND_VLLM, node="gpu-box-2")]
    lab = lab_for(kube, tmp_path, owner="vllm", model="qwen2.5-7b", models=models)
    before = templates(lab)
    with OpenAIBackend(name="gateway-stand-in") as gateway:
        gateway.set_failure(500)  # mistral-7b never answers through the gateway
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "litellm-env"},
                    "stringData": {"LITELLM_MASTER_KEY": "sk-restore-test-1"}})
        out = lab.swap("vllm:mistral-7b", check=False, gpu_swap_verify_gateway=True, gpu_swap_gateway_url=gateway.url,
                       gpu_swap_gateway_timeout=3)
    assert "--served-model-name" in str(before["vllm"][0])
    assert_rolled_back(lab, out, "Start the new owner", "did not answer a request to mistral-7b", owner="vllm",
                       model="qwen2.5-7b")
    assert templates(lab) == before  # no hostname pin left from mistral-7b's node
    assert lab.state()["node"] == "gpu-box"


def test_none_to_vllm_failing_leaves_the_vllm_template_as_it_was(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="none", model="qwen2.5-7b")
    before = templates(lab)
    with OpenAIBackend(name="gateway-stand-in") as gateway:
        gateway.set_failure(500)
        out = lab.swap("vllm:mistral-7b", check=False, gpu_swap_verify_gateway=True, gpu_swap_gateway_url=gateway.url,
                       gpu_swap_gateway_api_key="sk-restore-test-2", gpu_swap_gateway_timeout=3)
    assert_rolled_back(lab, out, "Start the new owner", "did not answer a request to mistral-7b", owner="none")
    assert templates(lab) == before
    assert "restored the template of vllm as it was before the swap" in out.stdout
    assert "--served-model-name mistral-7b" not in " ".join(lab.vllm_args())


# ------------------------------------------------------------------ the protocol
def test_a_step_acts_only_on_its_own_intent(kube, tmp_path):
    """A stop or start step whose holder is not the recorded intent's, or whose phase is not the one it starts
    from, changes nothing (another run recovered or took over the swap)."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    res = kube.client.resources.get(api_version="v1", kind="ConfigMap")
    res.patch(name="gpu-lab-state", namespace=kube.namespace, content_type="application/merge-patch+json",
              body={"data": {"intent_from": "ollama", "intent_to": "none", "intent_phase": "begun",
                             "intent_holder": "other-run/1/abc", "intent_started_at": "2026-12-05T10:00:00.000000Z"}})
    before = lab.snapshot()
    inv = lab.inventory()
    base = [str(BIN / "ansible"), "gpu-box", "-i", inv, "-m",
            "ailab.gpu_lab.gpu_swap"]
    args = f"kubeconfig={kube.kubeconfig} namespace={kube.namespace} node=gpu-box"
    stop = subprocess.run(base + ["-a", f"step=stop holder=this-run/2/def {args}"], env=lab.env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=120)
    assert stop.returncode != 0 and "the recorded swap intent is not this run's stop step to take" in stop.stdout
    assert "holder other-run/1/abc, phase begun" in stop.stdout
    start = subprocess.run(base + ["-a", f"step=start target=none holder=other-run/1/abc {args}"], env=lab.env(),
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=120)
    assert start.returncode != 0 and "step start needs phase stopped" in start.stdout
    assert lab.snapshot() == before


def test_the_lease_lost_mid_swap_stops_the_run_and_the_next_run_rolls_back(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {HOLD: "true"}})
    proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_lease_duration=3)
    wait_phase(lab, "starting", proc)
    # Another holder takes the Lease (as a run would after this one failed to renew in time).
    res = kube.client.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    lease = lab.lease()
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs  # pylint: disable=import-outside-toplevel
    lease["spec"].update(holderIdentity="intruder/9/xyz", renewTime=gs.micro_time(time.time()), leaseDurationSeconds=5)
    res.replace(body=lease, namespace=kube.namespace)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    assert "is now held by intruder/9/xyz, not by this run" in output
    assert "Restoring the previous owner ALSO failed" in output, output[-5000:]
    state = lab.state()
    assert state["intent_phase"] == "starting" and state["intent_to"] == "vllm:qwen2.5-7b"  # the documented end state
    lab.release("vllm")
    out = lab.swap("status")
    assert "the next gpu_swap or deploy run will rollback it" in out.stdout
    recovered = lab.swap("ollama")  # waits for the intruder's Lease to expire, then rolls back
    assert "first rolled back the swap ollama -> vllm:qwen2.5-7b an interrupted run left in phase starting" \
        in recovered.stdout
    assert_settled(lab, "ollama")


def test_a_missing_gateway_key_fails_before_anything_changes(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    before = lab.snapshot()
    out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_verify_gateway=True,
                   gpu_swap_gateway_url="http://127.0.0.1:9")
    assert out.returncode != 0
    assert f"no gateway key: Secret {kube.namespace}/litellm-env has no LITELLM_MASTER_KEY" in out.stdout
    assert "Nothing was changed" in out.stdout
    assert lab.snapshot() == before


def test_the_rollback_itself_failing_leaves_the_intent_for_the_next_run(kube, tmp_path):
    """vLLM never gets Ready, and a real admission policy refuses to scale Ollama back up: the rollback fails, says
    so, and leaves the intent; once the policy is gone the next run rolls back."""
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {NEVER_READY: "true"}})
    with scaling_denied(kube, "ollama"):
        out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_ready_timeout=4, gpu_swap_lease_duration=4,
                       gpu_swap_rollback_api_retry_timeout=2)
    assert out.returncode != 0
    assert "Restoring the previous owner ALSO failed" in out.stdout and "test policy: ollama may not be scaled up" in out.stdout
    state = lab.state()
    assert state["intent_phase"] == "rolling_back" and state["intent_from"] == "ollama"
    recovered = lab.swap("ollama")
    assert "first rolled back the swap ollama -> vllm:qwen2.5-7b an interrupted run left in phase rolling_back" \
        in recovered.stdout
    assert_settled(lab, "ollama")


def test_two_runs_racing_for_a_free_lease_exactly_one_wins_and_the_other_names_it(kube, tmp_path):
    # Both targets are vLLM models whose pod kwok holds Pending: the winner keeps the Lease until released.
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {HOLD: "true"}})
    runs = [lab.spawn("vllm:qwen2.5-7b", gpu_swap_lock_timeout=2), lab.spawn("vllm:mistral-7b", gpu_swap_lock_timeout=2)]
    kube.wait_for(lambda: any(r.poll() is not None for r in runs), timeout=240, what="the loser to give up")
    loser = next(r for r in runs if r.poll() is not None)
    winner = next(r for r in runs if r is not loser)
    loser_out = loser.stdout.read()
    assert loser.returncode != 0, loser_out[-3000:]
    holder = lab.state().get("intent_holder")
    assert "another gpu_swap holds the lock (Lease" in loser_out and f"holder {holder}" in loser_out
    want = lab.state()["intent_to"].split(":")
    kube.wait_for(lambda: lab.pods("vllm"), what="the winner's vLLM pod")
    lab.release("vllm")
    out = winner.communicate(timeout=300)[0]
    assert winner.returncode == 0, out[-4000:]
    assert_settled(lab, *want)


# ------------------------------------------------------------------ killed in each phase
def _hold_begun(lab, kube, stack):
    """begun: Ollama unloads its model slowly (the unload task waits for /api/ps)."""
    ollama = stack.enter_context(OllamaServer(local=["tinyllama:1b"]))
    ollama.load("tinyllama:1b")
    ollama.unload_delay = 120
    return {"gpu_swap_unload_models": True, "gpu_swap_ollama_url": ollama.url, "gpu_swap_unload_timeout": 120}


def _hold_stopping(lab, kube, stack):
    """stopping: Ollama's container takes 25 s to stop."""
    slow_stop(kube, lab, "25s")
    return {"gpu_swap_delete_timeout": 120}


def _hold_stopped(lab, kube, stack):
    """stopped: a game holds the GPU memory; the host check waits for it."""
    lab.set_smi(SMI_GAME)
    stack.callback(lambda: lab.set_smi(SMI_FREE))
    return {"gpu_swap_host_timeout": 120}


def _hold_starting(lab, kube, stack):
    """starting: the target's pod is held Pending."""
    lab.pod_annotations["vllm"] = {HOLD: "true"}
    res = kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    res.patch(name="vllm", namespace=kube.namespace, content_type="application/strategic-merge-patch+json",
              body={"spec": {"template": {"metadata": {"annotations": {HOLD: "true"}}}}})
    return {}


def _hold_verifying(lab, kube, stack):
    """verifying: the gateway keeps answering 500."""
    gateway = stack.enter_context(OpenAIBackend(name="gateway-stand-in"))
    gateway.set_failure(500)
    return {"gpu_swap_verify_gateway": True, "gpu_swap_gateway_url": gateway.url,
            "gpu_swap_gateway_api_key": "sk-killed-run-1", "gpu_swap_gateway_timeout": 120}


HOLDS = {"begun": _hold_begun, "stopping": _hold_stopping, "stopped": _hold_stopped, "starting": _hold_starting,
         "verifying": _hold_verifying}


def recover_through_deploy(lab):
    """Deploy's real entry point: the deploy playbook's lab role (every component role skipped by tag selection;
    the lab role is tagged always), which completes or rolls back a recorded intent before anything else."""
    # The early input check of deploy covers every component: give the tailnet address and name it asks for.
    inventory = lab.inventory(gpu_lab_tailnet_ip="100.64.0.10", gpu_lab_tailnet_name="gpu-box.tail1234.ts.net")
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(REPO / "playbooks" / "deploy.yml"), "-i",
                           inventory, "--tags", "no-component"], cwd=str(REPO), env=lab.env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=400)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "Finish or roll back an interrupted GPU swap" in proc.stdout
    return proc.stdout


@pytest.mark.parametrize("phase", list(HOLDS) + ["committing"])
def test_a_run_killed_in_each_phase_is_recovered_by_deploys_entry_point(kube, tmp_path, phase):
    lab = lab_for(kube, tmp_path, owner="ollama")
    before = templates(lab)
    if phase == "committing":
        # Nothing can hold a run between recording "committing" and the commit (one API write apart); the state a
        # run killed there leaves is written as it would be: target Ready, intent committing, a dead holder's Lease.
        lab.swap("vllm:qwen2.5-7b")
        res = kube.client.resources.get(api_version="v1", kind="ConfigMap")
        res.patch(name="gpu-lab-state", namespace=kube.namespace, content_type="application/merge-patch+json",
                  body={"data": {"owner": "ollama", "model": "", "intent_from": "ollama", "intent_to": "vllm:qwen2.5-7b",
                                 "intent_phase": "committing", "intent_holder": "dead-run/1/abc",
                                 "intent_started_at": "2026-12-05T10:00:00.000000Z"}})
        expected, action = ("vllm", "qwen2.5-7b"), "complete"
    else:
        with contextlib.ExitStack() as stack:
            extra = HOLDS[phase](lab, kube, stack)
            before = templates(lab)
            proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_lease_duration=4, **extra)
            wait_phase(lab, phase, proc)
            kill_run(proc)
        lab.set_smi(SMI_FREE)
        expected, action = ("ollama", ""), "rollback"
    state = lab.state()
    assert state["intent_phase"] == phase, state
    recover_through_deploy(lab)
    assert_settled(lab, *expected)
    assert templates(lab) == before


# ------------------------------------------------------------------ the host side
def test_a_failed_ollama_unload_is_a_warning_naming_the_error(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    with OllamaServer(local=["tinyllama:1b"]) as ollama:
        ollama.load("tinyllama:1b")
        ollama.unload_delay = 60  # a request keeps it busy: still loaded when the unload's wait ends
        out = lab.swap("vllm:qwen2.5-7b", gpu_swap_unload_models=True, gpu_swap_ollama_url=ollama.url,
                       gpu_swap_unload_timeout=2)
    flat = " ".join(out.stdout.split())
    assert "[WARNING]: Ollama's models were not unloaded before Ollama was stopped: Ollama at" in flat, flat[-3000:]
    assert "still holds tinyllama:1b in memory 2 s after keep_alive=0" in flat
    assert_settled(lab, "vllm", "qwen2.5-7b")


def test_least_privilege_account_runs_a_swap_and_a_rollback(kube, tmp_path):
    """The swap with a real ServiceAccount token bound to exactly the rules tasks/rbac.yml applies."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    play = tmp_path / "rbac.yml"
    play.write_text("- hosts: gpu_lab\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role: {name: ailab.gpu_lab.gpu_swap, tasks_from: rbac}\n")
    applied = subprocess.run([str(BIN / "ansible-playbook"), str(play), "-i", lab.inventory()], env=lab.env(),
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=300)
    assert applied.returncode == 0, applied.stdout[-4000:]
    from kubernetes import client as k8s  # pylint: disable=import-outside-toplevel
    token = k8s.CoreV1Api(kube.client.client).create_namespaced_service_account_token(
        "gpu-swap", kube.namespace, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                     "spec": {"expirationSeconds": 3600}}).status.token
    restricted = kube.write_kubeconfig(str(tmp_path / "gpu-swap.kubeconfig"), token)
    lab.vars["gpu_lab_kubeconfig"] = restricted
    lab.swap("vllm:qwen2.5-7b")
    assert_settled(lab, "vllm", "qwen2.5-7b")
    res = kube.client.resources.get(api_version="apps/v1", kind="Deployment")
    res.patch(name="ollama", namespace=kube.namespace, content_type="application/strategic-merge-patch+json",
              body={"spec": {"template": {"metadata": {"annotations": {NEVER_READY: "true"}}}}})
    out = lab.swap("ollama", check=False, gpu_swap_ready_timeout=4)
    assert_rolled_back(lab, out, "Start the new owner", "has no Ready pod", owner="vllm", model="qwen2.5-7b")
    # ...and the account can do nothing else: reading another Secret is forbidden.
    probe = subprocess.run([str(BIN / "kubectl"), "--kubeconfig", restricted,
                            "-n", kube.namespace, "get", "secret", "some-other"], text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, check=False, env=lab.env())
    assert "forbidden" in probe.stdout.lower(), probe.stdout
