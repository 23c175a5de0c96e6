"""The test kubelet's failure knobs, pinned against the REAL control plane.

Real in every test: kube-apiserver (validation, the pod registry deleting a terminal pod at once), the Deployment
and ReplicaSet controllers (replacements, Failed pods left alone), kube-scheduler (a terminal pod's GPU is free).
Emulated: the kubelet. kwok Stages (tests/support/controlplane_files/kwok-stages.yaml, knobs in
tests/support/kubelet_knobs.py, semantics and the upstream kubelet files they follow in docs/testing.md) write the
pod statuses and Events a kubelet writes; no container runs. Each test names what it pins.

Timing: kwok's delays are lower bounds (a stage fires no earlier than its delay after the change it reacts to) and
the API stores timestamps to the second, so durations are asserted only as lower bounds on the stored timestamps,
and every wait is on a condition with a generous timeout.
"""

from __future__ import annotations

import datetime
import os
import threading
import time

import pytest
import yaml

from tests.support.controlplane import FILES
from tests.support.kubelet_knobs import (CRASH, CRASH_AFTER, CRASH_MESSAGE, DELETE_DELAY, FAIL_MESSAGE, FAIL_REASON,
                                         HOLD_FINALIZER, IMAGE_PULL, READY_DELAY, STARTUP_FAILS, WAITING_MESSAGE,
                                         WAITING_REASON, crash_backoff, image_pull_reason, set_on_pod, startup_budget)

ADMISSION = ("Pod was rejected: Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. "
             "Requested: 1, Available: 0, which is unexpected")
PROBE = {"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": 1, "periodSeconds": 1,
         "failureThreshold": 3}  # budget 1 + 3 x 1 = 4 s


def deployment(name, annotations=None, gpus=1, container=None, **pod_spec):
    """A Recreate Deployment of one pod (``gpus`` nvidia.com/gpu) with the knobs on its template."""
    main = dict({"name": name, "image": f"example.invalid/{name}:1"}, **(container or {}))
    if gpus:
        main["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                                  "spec": dict(pod_spec, containers=[main])}}}


def ts(value):
    """An API timestamp (RFC 3339, whole seconds) as epoch seconds."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def cstatus(pod):
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def condition(pod, kind):
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def waiting(pod):
    return (cstatus(pod).get("state") or {}).get("waiting") or {}


def unschedulable(pod):
    return condition(pod, "PodScheduled").get("reason") == "Unschedulable"


def kubelet_events(kube, pod_name):
    return [e for e in kube.list("Event") if e["involvedObject"]["name"] == pod_name
            and (e.get("source") or {}).get("component") == "kubelet"]


class PodWatch(threading.Thread):
    """Every change of the namespace's pods, in order, from a real watch: short-lived states are not missed."""

    def __init__(self, kube):
        super().__init__(daemon=True)
        self.kube, self.events, self._halt = kube, [], threading.Event()
        self.res = kube.client.resources.get(api_version="v1", kind="Pod")
        self.rv = self.res.get(namespace=kube.namespace).metadata.resourceVersion
        self.start()

    def run(self):
        while not self._halt.is_set():
            try:
                for event in self.res.watch(namespace=self.kube.namespace, resource_version=self.rv, timeout=2):
                    obj = event["raw_object"]
                    self.rv = obj["metadata"]["resourceVersion"]
                    self.events.append((event["type"], obj))
            except Exception:  # noqa: BLE001 - an expired resourceVersion: start again from now
                self.rv = self.res.get(namespace=self.kube.namespace).metadata.resourceVersion
                time.sleep(0.2)

    def history(self, name):
        """(event type, pod) of the pod ``name``, oldest first."""
        return [(kind, obj) for kind, obj in self.events if obj["metadata"]["name"] == name]

    def stop(self):
        self._halt.set()
        self.join(10)


def test_the_mode_expression_is_the_same_in_every_stage():
    """Static check of the stages file: the jq expression choosing each pod's failure knob is repeated verbatim
    (kwok has no shared definitions); a copy edited alone would make two stages match one pod."""
    with open(os.path.join(FILES, "kwok-stages.yaml"), encoding="utf-8") as handle:
        stages = [d for d in yaml.safe_load_all(handle) if d]
    copies = {e["key"] for s in stages for e in s["spec"]["selector"].get("matchExpressions") or []
              if "$budget" in e.get("key", "")}
    users = [s["metadata"]["name"] for s in stages for e in s["spec"]["selector"].get("matchExpressions") or []
             if "$budget" in e.get("key", "")]
    assert len(copies) == 1, copies
    assert len(users) == 9, users


# ------------------------------------------------------------------ fail-reason
def test_an_evicted_pod_stays_failed_while_the_replicaset_replaces_it(kube):
    """Real: the ReplicaSet controller replaces a Failed pod and never deletes it; the scheduler gives the Failed
    pod's GPU to the replacement; the apiserver deletes a terminal pod at once (no grace period).
    Emulated: the eviction (``fail-reason: Evicted`` set on the live pod): phase Failed, reason Evicted, condition
    DisruptionTarget, the running container killed (137), and the kubelet's Warning Event."""
    kube.apply(deployment("vllm"))
    pod = kube.wait_for(lambda: kube.pods("app=vllm", running=True), what="the pod Running")[0]["metadata"]["name"]
    set_on_pod(kube, pod, {FAIL_REASON: "Evicted"})
    failed = kube.wait_for(lambda: (kube.get("Pod", pod) or {}).get("status", {}).get("phase") == "Failed"
                           and kube.get("Pod", pod), what="the pod Failed")
    status = failed["status"]
    assert status["reason"] == "Evicted" and status["message"].startswith("The node was low on resource: memory.")
    assert condition(failed, "DisruptionTarget")["status"] == "True"
    assert condition(failed, "Ready")["status"] == "False"
    assert cstatus(failed)["state"]["terminated"]["exitCode"] == 137
    # The replacement needs the GPU: the scheduler no longer counts the Failed pod's.
    replacement = kube.wait_for(lambda: [p for p in kube.pods("app=vllm", running=True)
                                         if p["metadata"]["name"] != pod], timeout=120, what="a replacement Running")
    kube.wait_for(lambda: kube.get("ReplicaSet", replacement[0]["metadata"]["ownerReferences"][0]["name"],
                                   "apps/v1")["status"].get("readyReplicas") == 1, what="the ReplicaSet settled")
    still = kube.get("Pod", pod)
    assert still and still["status"]["phase"] == "Failed" and not still["metadata"].get("deletionTimestamp")
    assert any(e["reason"] == "Evicted" and e["type"] == "Warning" for e in kubelet_events(kube, pod))
    # Deleting a terminal pod removes it at once: the apiserver sets grace period 0 (pod registry strategy).
    kube.delete("Pod", pod)
    assert kube.get("Pod", pod) is None


def test_an_admission_failure_on_the_template_fails_every_replacement_and_they_all_stay(kube):
    """Real: the ReplicaSet controller makes a replacement for each Failed pod, without back-off, and leaves the
    Failed ones (after scale-down too). Emulated: the kubelet rejecting each pod at admission (``fail-reason:
    UnexpectedAdmissionError`` on the template, the device plugin never back): Failed, no IP, no container status,
    the kubelet's message; ``fail-message`` replaces the message."""
    kube.apply(deployment("ollama", {FAIL_REASON: "UnexpectedAdmissionError"}))
    kube.apply(deployment("vllm", {FAIL_REASON: "UnexpectedAdmissionError", FAIL_MESSAGE: "custom words"}, gpus=0))

    def failed(app):
        return [p for p in kube.pods(f"app={app}") if p["status"].get("phase") == "Failed"]
    kube.wait_for(lambda: len(failed("ollama")) >= 2 and failed("vllm"), timeout=120,
                  what="the first pods rejected and their replacements rejected too")
    for name in ("ollama", "vllm"):
        kube.client.resources.get(api_version="apps/v1", kind="Deployment").patch(
            name=name, namespace=kube.namespace, body={"spec": {"replicas": 0}},
            content_type="application/merge-patch+json")
    kube.wait_for(lambda: all(p["status"].get("phase") == "Failed" for p in kube.pods()), timeout=120,
                  what="no pod left that is not Failed")
    # A pod the scale-down deleted while it was still Pending ends Failed through deletion (no reason): look at the
    # ones the kubelet rejected, which nothing deletes.
    rejected = kube.wait_for(lambda: [p for p in failed("ollama") if not p["metadata"].get("deletionTimestamp")],
                             timeout=60, what="a rejected ollama pod that is not being deleted")
    pod = rejected[0]
    assert pod["status"]["reason"] == "UnexpectedAdmissionError" and pod["status"]["message"] == ADMISSION
    assert not pod["status"].get("podIP") and not pod["status"].get("containerStatuses")
    assert [p for p in failed("vllm") if not p["metadata"].get("deletionTimestamp")][0]["status"]["message"] == \
        "custom words"
    assert any(e["reason"] == "UnexpectedAdmissionError" and e["message"] == ADMISSION[len("Pod was rejected: "):]
               for e in kubelet_events(kube, pod["metadata"]["name"]))
    for rs in kube.list("ReplicaSet", api_version="apps/v1"):
        kube.wait_for(lambda r=rs: (kube.get("ReplicaSet", r["metadata"]["name"], "apps/v1")["status"].get("replicas")
                                    == 0), what="the scaled-down ReplicaSets settled")
    # A pod the ReplicaSet still saw Pending when scaling down may have been deleted as one too many; once the
    # ReplicaSets have settled, the Failed pods are left alone.
    left = {p["metadata"]["name"] for p in kube.pods()}
    assert len(left) >= 2
    time.sleep(3)
    assert {p["metadata"]["name"] for p in kube.pods()} == left, "a Failed pod was deleted"


# ------------------------------------------------------------------ crash
def test_a_crashing_container_restarts_with_the_kubelets_doubling_back_off(kube):
    """Real: the Deployment keeps its one pod (a crash loop is no pod failure). Emulated: the container runs
    ``crash-after`` (2 s), exits 1 (Error) with its log tail as message (FallbackToLogsOnError), is restarted at once
    the first time, then after CrashLoopBackOff 10 s, then 20 s (back-off measured on the stored finishedAt and
    startedAt, which are whole seconds: hence the 1 s slack); Ready never becomes True."""
    kube.apply(deployment("vllm", {CRASH: "Error", CRASH_AFTER: "2s", CRASH_MESSAGE: "CUDA error: out of memory"},
                          container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    pod = kube.wait_for(lambda: kube.pods("app=vllm"), what="the pod")[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    watch = PodWatch(kube)
    try:
        kube.wait_for(lambda: cstatus(kube.get("Pod", name)).get("restartCount", 0) >= 3, timeout=240, interval=0.5,
                      what="the third restart (about 36 s)")
    finally:
        watch.stop()
    seen = [obj for _, obj in watch.history(name)]
    assert seen and all(condition(p, "Ready").get("status") != "True" and not cstatus(p).get("ready") for p in seen)
    assert all(p["status"]["phase"] == "Running" for p in seen if p["status"].get("phase") != "Pending")
    runs, backoffs = {}, {}
    for p in seen:
        cs = cstatus(p)
        if (cs.get("state") or {}).get("running"):
            runs[cs["restartCount"]] = ts(cs["state"]["running"]["startedAt"])
        if waiting(p).get("reason") == "CrashLoopBackOff":
            backoffs[cs["restartCount"]] = waiting(p)["message"]
        last = (cs.get("lastState") or {}).get("terminated")
        if last:
            assert (last["exitCode"], last["reason"], last["message"]) == (1, "Error", "CUDA error: out of memory")
            assert ts(last["finishedAt"]) - ts(last["startedAt"]) >= 2 - 1
    assert 0 not in backoffs and 1 in runs, "the first restart is immediate"
    assert backoffs[1] == f"back-off 10s restarting failed container=vllm pod={name}_{kube.namespace}({uid})"
    assert backoffs[2].startswith("back-off 20s restarting failed container=vllm")
    finished = {}
    for p in seen:
        last = (cstatus(p).get("lastState") or {}).get("terminated")
        if last:
            finished[cstatus(p)["restartCount"]] = ts(last["finishedAt"])
    for restarts in (2, 3):  # run ``restarts`` started crash_backoff(restarts - 1) after the previous run ended
        assert runs[restarts] - finished[restarts - 1] >= crash_backoff(restarts - 1) - 1, (runs, finished)


def test_oom_killed_and_restart_policy_never(kube):
    """Emulated: ``crash: OOMKilled``: exit 137, reason OOMKilled, no message without FallbackToLogsOnError (the
    default policy File reads the empty termination-log file); with restartPolicy Never the pod ends Failed with
    the container terminated (kubelet_pods.go getPhase). Real: validation of the bare pod, nothing else."""
    kube.apply(deployment("ollama", {CRASH: "OOMKilled"}, gpus=0))
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once", "annotations": {CRASH: "OOMKilled"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "example.invalid/c:1"}]}})
    pod = kube.wait_for(lambda: [p for p in kube.pods("app=ollama") if (cstatus(p).get("lastState") or {})
                                 .get("terminated")], timeout=60, what="the first OOM kill")[0]
    last = cstatus(pod)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "OOMKilled") and "message" not in last
    once = kube.wait_for(lambda: kube.get("Pod", "once")["status"].get("phase") == "Failed" and kube.get("Pod", "once"),
                         timeout=60, what="the restartPolicy Never pod Failed")
    assert cstatus(once)["state"]["terminated"]["reason"] == "OOMKilled" and cstatus(once)["restartCount"] == 0


# ------------------------------------------------------------------ image pulls and other waiting reasons
def test_a_failing_pull_shows_err_image_pull_then_image_pull_back_off_alternating(kube):
    """Emulated: ``image-pull: fail``: ErrImagePull naming the image, ImagePullBackOff ("Back-off pulling image
    ...") once the kubelet's next sync (10 s) finds the image back-off running, then ErrImagePull again when it has
    run out; the back-off doubles, so the second ImagePullBackOff lasts longer (30 s) than the first (10 s).
    Observed times are measured from status.startTime (the first failure, stored to the second): a state is never
    seen before its documented start. Real: the pod stays Pending; nothing else is involved. About 75 s."""
    kube.apply(deployment("vllm", {IMAGE_PULL: "fail"}, gpus=0))
    image = "example.invalid/vllm:1"
    changes = []  # (seconds since startTime, reason, message)

    def third_pull():
        pod = (kube.pods("app=vllm") or [{"status": {}}])[0]
        if not pod["status"].get("startTime") or not waiting(pod):
            return False
        elapsed = time.time() - ts(pod["status"]["startTime"])
        assert pod["status"]["phase"] == "Pending"
        if not changes or changes[-1][1] != waiting(pod)["reason"]:
            changes.append((elapsed, waiting(pod)["reason"], waiting(pod)["message"]))
        return [r for _, r, _ in changes] == ["ErrImagePull", "ImagePullBackOff"] * 2 + ["ErrImagePull"]
    kube.wait_for(third_pull, timeout=300, interval=0.25, what="ErrImagePull, back-off, pull, longer back-off, pull")
    assert changes[0][1] == "ErrImagePull" and f'failed to pull and unpack image "{image}"' in changes[0][2]
    assert changes[1][2].startswith(f'Back-off pulling image "{image}": ErrImagePull: ')
    starts = [e for e, _, _ in changes]
    assert starts[1] >= 20 and starts[2] >= 30 and starts[3] >= 40 and starts[4] >= 70, changes
    assert image_pull_reason(25) == "ImagePullBackOff" and image_pull_reason(75) == "ErrImagePull"


def test_other_waiting_reasons_wait_with_their_message(kube):
    """Emulated: ``waiting-reason`` (+ ``waiting-message``): the container waits with that reason for ever, the
    pod Pending; CreateContainerConfigError names the first Secret the container reads, InvalidImageName the
    kubelet's parse error, when no message is given. Real: nothing else."""
    kube.apply(deployment("qdrant", {WAITING_REASON: "CreateContainerConfigError"}, gpus=0, container={"env": [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]}))
    kube.apply(deployment("bad", {WAITING_REASON: "InvalidImageName"}, gpus=0))
    kube.apply(deployment("told", {WAITING_REASON: "CreateContainerConfigError",
                                   WAITING_MESSAGE: 'couldn\'t find key token in Secret ns/x'}, gpus=0))
    expected = {"qdrant": ("CreateContainerConfigError", 'secret "hf-token" not found'),
                "bad": ("InvalidImageName", 'Failed to apply default image tag "example.invalid/bad:1": couldn\'t '
                                            'parse image name "example.invalid/bad:1": invalid reference format'),
                "told": ("CreateContainerConfigError", "couldn't find key token in Secret ns/x")}

    def all_waiting():
        pods = {p["metadata"]["labels"]["app"]: p for p in kube.pods()}
        return len(pods) == 3 and all(waiting(p).get("reason") == expected[a][0] for a, p in pods.items()) and pods
    pods = kube.wait_for(all_waiting, timeout=60, what="the three pods waiting")
    time.sleep(3)  # they stay so (no stage moves them on)
    for app, pod in pods.items():
        now = kube.get("Pod", pod["metadata"]["name"])
        assert (waiting(now)["reason"], waiting(now)["message"]) == expected[app]
        assert now["status"]["phase"] == "Pending" and cstatus(now)["restartCount"] == 0


# ------------------------------------------------------------------ startup probe
def test_a_startup_probe_that_runs_out_kills_and_restarts_the_container(kube):
    """Emulated: ``startup-fails``: the container runs (started false) and is killed after the pod's own probe
    budget, initialDelaySeconds 1 + failureThreshold 3 x periodSeconds 1 = 4 s (exit 137, Error), restarted at
    once, killed again, then CrashLoopBackOff 10s; the kubelet's Events Unhealthy ("Startup probe failed: Get
    http://<pod IP>:8000/health ... connection refused", count 3) and Killing. A ready-delay longer than the budget
    (a model load the probe does not allow for) is killed the same way; one within it becomes Ready.
    Real: the API server's probe defaults (timeoutSeconds, successThreshold), the Deployment controller."""
    kube.apply(deployment("vllm", {STARTUP_FAILS: "true"}, gpus=0,
                          container={"startupProbe": PROBE, "terminationMessagePolicy": "FallbackToLogsOnError"}))
    kube.apply(deployment("slow", {READY_DELAY: "30s"}, gpus=0, container={"startupProbe": PROBE}))
    kube.apply(deployment("fits", {READY_DELAY: "2s"}, gpus=0, container={"startupProbe": PROBE}))
    assert startup_budget({"startupProbe": PROBE}) == 4

    def backing_off(app):
        pods = kube.pods(f"app={app}")  # none until the ReplicaSet controller has made it
        return bool(pods) and waiting(pods[0]).get("reason") == "CrashLoopBackOff" and pods[0]
    for app in ("vllm", "slow"):
        pod = kube.wait_for(lambda a=app: backing_off(a), timeout=120, what=f"{app}: two kills, then back-off")
        cs = cstatus(pod)
        last = cs["lastState"]["terminated"]
        assert cs["restartCount"] == 1 and not cs["ready"] and not cs["started"]
        assert (last["exitCode"], last["reason"]) == (137, "Error")
        assert ts(last["finishedAt"]) - ts(last["startedAt"]) >= 4, "killed before the probe's budget ran out"
        assert waiting(pod)["message"].startswith(f"back-off 10s restarting failed container={app} ")
        assert condition(pod, "Ready")["status"] == "False"
        events = kubelet_events(kube, pod["metadata"]["name"])
        unhealthy = [e for e in events if e["reason"] == "Unhealthy"]
        assert unhealthy and unhealthy[0]["type"] == "Warning" and unhealthy[0]["count"] == 3
        assert unhealthy[0]["message"] == (f'Startup probe failed: Get "http://{pod["status"]["podIP"]}:8000/health": '
                                           f'dial tcp {pod["status"]["podIP"]}:8000: connect: connection refused')
        assert f"Container {app} failed startup probe, will be restarted" in [
            e["message"] for e in events if e["reason"] == "Killing"]
    assert "message" in cstatus(kube.pods("app=vllm")[0])["lastState"]["terminated"]  # FallbackToLogsOnError
    fits = kube.wait_for(lambda: [p for p in kube.pods("app=fits") if condition(p, "Ready").get("status") == "True"],
                         timeout=60, what="fits Ready")[0]
    assert cstatus(fits)["restartCount"] == 0


# ------------------------------------------------------------------ deletion
def test_a_deleted_pod_is_terminal_before_it_goes_and_its_gpu_is_free_from_then_on(kube):
    """Real: kube-scheduler ignores terminal pods (its pod informer selects status.phase != Failed/Succeeded), so
    the Pending GPU pod is scheduled as soon as the deleted one is terminal, while a finalizer still keeps the
    object; the apiserver removes the object once the finalizer is gone. Emulated: the kubelet stopping the
    containers (``delete-delay`` 3 s, within the 30 s grace period: exit 0, Succeeded) and removing the object."""
    kube.apply(deployment("ollama", {DELETE_DELAY: "3s"}))
    old = kube.wait_for(lambda: kube.pods("app=ollama", running=True), what="ollama Running")[0]["metadata"]["name"]
    kube.client.resources.get(api_version="v1", kind="Pod").patch(
        name=old, namespace=kube.namespace, body={"metadata": {"finalizers": ["example.com/keep"]}},
        content_type="application/merge-patch+json")
    kube.apply(deployment("vllm"))
    kube.wait_for(lambda: [p for p in kube.pods("app=vllm") if unschedulable(p)], what="vllm Unschedulable")
    watch = PodWatch(kube)
    try:
        kube.delete("Deployment", "ollama", api_version="apps/v1")
        new = kube.wait_for(lambda: kube.pods("app=vllm", running=True), timeout=120, what="vllm scheduled, Running")
        held = kube.get("Pod", old)
        assert held and held["status"]["phase"] == "Succeeded", "the finalizer keeps the terminal object"
        terminated = cstatus(held)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
        assert condition(held, "Ready")["reason"] == "PodCompleted"
        kube.client.resources.get(api_version="v1", kind="Pod").patch(
            name=old, namespace=kube.namespace, body={"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json")
        kube.wait_for(lambda: kube.get("Pod", old) is None, what="the object removed once the finalizer is gone")
    finally:
        watch.stop()
    phases = [(kind, obj["status"].get("phase"), bool(obj["metadata"].get("deletionTimestamp")))
              for kind, obj in watch.history(old)]
    terminal_at = phases.index(("MODIFIED", "Succeeded", True))
    assert ("MODIFIED", "Running", True) in phases[:terminal_at], "never seen Terminating and still running"
    assert phases[-1][0] == "DELETED"
    stopped = next(obj for _, obj in watch.history(old) if obj["status"].get("phase") == "Succeeded")
    deleted_at = ts(stopped["metadata"]["deletionTimestamp"]) - stopped["metadata"]["deletionGracePeriodSeconds"]
    assert ts(cstatus(stopped)["state"]["terminated"]["finishedAt"]) - deleted_at >= 3 - 1
    newcomer = new[0]["metadata"]["name"]
    bound = next(i for i, (_, obj) in enumerate(watch.events) if obj["metadata"]["name"] == newcomer
                 and condition(obj, "PodScheduled").get("status") == "True")
    first_terminal = next(i for i, (_, obj) in enumerate(watch.events)
                          if obj["metadata"]["name"] == old and obj["status"].get("phase") == "Succeeded")
    assert first_terminal < bound, "the GPU was handed over before the old pod was terminal"


def test_containers_outlasting_the_grace_period_are_killed_and_a_hold_finalizer_keeps_the_pod_running(kube):
    """Emulated: a container that would take 60 s to stop is killed when the pod's 2 s grace period ends (exit
    137, Failed); a container that never ran ends ContainerStatusUnknown (status_manager.go TerminatePod); a pod
    carrying the tests' finalizer ailab.test/hold is not stopped while it does. Real: the scheduler keeps counting
    the held Terminating pod (the GPU pod stays Unschedulable) and hands its GPU over once it is terminal."""
    kube.apply(deployment("slow", {DELETE_DELAY: "60s"}, gpus=0, terminationGracePeriodSeconds=2))
    kube.apply(deployment("never", {WAITING_REASON: "CreateContainerConfigError"}, gpus=0))
    kube.apply(deployment("held"))
    slow = kube.wait_for(lambda: kube.pods("app=slow", running=True), what="slow Running")[0]["metadata"]["name"]
    held = kube.wait_for(lambda: kube.pods("app=held", running=True), what="held Running")[0]["metadata"]["name"]
    never = kube.wait_for(lambda: [p for p in kube.pods("app=never") if waiting(p).get("reason") ==
                                   "CreateContainerConfigError"], what="never waiting")[0]["metadata"]["name"]
    kube.client.resources.get(api_version="v1", kind="Pod").patch(
        name=held, namespace=kube.namespace, body={"metadata": {"finalizers": [HOLD_FINALIZER]}},
        content_type="application/merge-patch+json")
    watch = PodWatch(kube)
    try:
        for name in (slow, held, never):
            kube.delete("Pod", name)
        kube.wait_for(lambda: kube.get("Pod", slow) is None and kube.get("Pod", never) is None, timeout=120,
                      what="slow killed and never stopped, both removed")
        kube.apply(deployment("waiting"))
        kube.wait_for(lambda: [p for p in kube.pods("app=waiting") if unschedulable(p)],
                      what="a GPU pod refused while the held pod still runs")
        assert kube.get("Pod", held)["status"]["phase"] == "Running"
        kube.client.resources.get(api_version="v1", kind="Pod").patch(
            name=held, namespace=kube.namespace, body={"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json")
        kube.wait_for(lambda: kube.pods("app=waiting", running=True), timeout=120, what="the GPU handed over")
        kube.wait_for(lambda: kube.get("Pod", held) is None, what="the held pod removed")
    finally:
        watch.stop()

    def terminal(name):
        return next(obj for _, obj in watch.history(name) if obj["status"].get("phase") in ("Failed", "Succeeded"))
    killed = terminal(slow)
    terminated = cstatus(killed)["state"]["terminated"]
    assert killed["status"]["phase"] == "Failed" and (terminated["exitCode"], terminated["reason"]) == (137, "Error")
    deleted_at = ts(killed["metadata"]["deletionTimestamp"]) - 2
    assert 2 - 1 <= ts(terminated["finishedAt"]) - deleted_at < 60, "killed at the end of the grace period"
    stopped = terminal(never)
    assert stopped["status"]["phase"] == "Failed"
    assert cstatus(stopped)["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert terminal(held)["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize("restarts,seconds", [(0, 0), (1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (9, 300)])
def test_crash_backoff_arithmetic(restarts, seconds):
    """The helper tests use is the kubelet's sequence (kubelet.go initialCrashLoopBackOff 10 s, doubling in
    client-go flowcontrol.Backoff.Next, capped at MaxCrashLoopBackOff 300 s; the first restart is immediate)."""
    assert crash_backoff(restarts) == seconds
