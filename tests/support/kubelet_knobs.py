"""The test kubelet's knobs: pod annotations read by kwok's Stages (tests/support/controlplane_files/kwok-stages.yaml).

Set them on a Deployment's pod template (every pod of it behaves so) or, with ``set_on_pod``, on one live pod
(that pod only: a kubelet restart or an eviction happening to it). What each one does, modelled on which kubelet
source file, is in docs/testing.md ("Knobs") and in the stages file's comments. No container ever runs: these
write the pod statuses a real kubelet writes.
"""

from __future__ import annotations

PREFIX = "kwok.ailab.test/"

# -- the pod comes up (unchanged since the first control plane)
READY_DELAY = PREFIX + "ready-delay"      # "5s": Ready that long after the containers "start" (default 300ms)
NEVER_READY = PREFIX + "never-ready"      # "true": Running, Ready stays False (a readiness probe that never passes)
HOLD = PREFIX + "hold"                    # "true": stays Pending while the live pod carries it
DELETE_DELAY = PREFIX + "delete-delay"    # "20s": how long the containers take to stop once deleted (default 300ms)

# -- failures a real GPU host shows
FAIL_REASON = PREFIX + "fail-reason"      # "UnexpectedAdmissionError" | "Evicted" | ...: phase Failed, and stays
FAIL_MESSAGE = PREFIX + "fail-message"    # status.message of that Failed pod (default: the kubelet's for the reason)
CRASH = PREFIX + "crash"                  # "Error" (exit 1) | "OOMKilled" (exit 137): exits, restarts with back-off
CRASH_AFTER = PREFIX + "crash-after"      # "2s": how long each run lasts before it exits (default 1s)
CRASH_MESSAGE = PREFIX + "crash-message"  # the log tail FallbackToLogsOnError puts in lastState.terminated.message
IMAGE_PULL = PREFIX + "image-pull"        # "fail": ErrImagePull, then ImagePullBackOff, alternating with back-off
WAITING_REASON = PREFIX + "waiting-reason"    # "CreateContainerConfigError" | "InvalidImageName": waits for ever
WAITING_MESSAGE = PREFIX + "waiting-message"  # the message shown with it
STARTUP_FAILS = PREFIX + "startup-fails"  # "true": the startup probe never passes; killed after its budget, restarts

# A pod carrying this finalizer is not stopped by the test kubelet once deleted: it stays Terminating, containers
# running, counted by the scheduler, until the test removes the finalizer (a real kubelet stops it regardless).
HOLD_FINALIZER = "ailab.test/hold"

CRASH_BACKOFF_INITIAL, CRASH_BACKOFF_MAX = 10, 300  # kubelet.go initialCrashLoopBackOff, MaxCrashLoopBackOff
IMAGE_PULL_FAILURES = (0, 10, 30, 70, 150, 310)      # s after the first failure; then every 300 s (see below)


def crash_backoff(restart_count):
    """Seconds the kubelet waits before restarting a container that exited with ``restart_count`` restarts
    behind it (0 after the first exit: restarted at once; then 10, 20, 40 ... capped at 300)."""
    if restart_count < 1:
        return 0
    return min(CRASH_BACKOFF_INITIAL * 2 ** (restart_count - 1), CRASH_BACKOFF_MAX)


def startup_budget(container):
    """initialDelaySeconds + failureThreshold x periodSeconds of the container's startup probe (API defaults
    0, 3, 10; 30 without a probe): how long the test kubelet lets a startup-fails container run before the kill."""
    probe = (container or {}).get("startupProbe") or {}
    return (probe.get("initialDelaySeconds") or 0) + (probe.get("failureThreshold") or 3) * (
        probe.get("periodSeconds") or 10)


def image_pull_reason(elapsed):
    """The waiting reason an image-pull=fail container shows ``elapsed`` s after its first failed pull
    (status.startTime): ErrImagePull for the 10 s after each failed pull, ImagePullBackOff in between."""
    failures = list(IMAGE_PULL_FAILURES)
    while failures[-1] + 300 <= elapsed:
        failures.append(failures[-1] + 300)
    pulling = any(f <= elapsed < f + 10 for f in failures)  # the kubelet's next sync comes 10 s after a failure
    return "ErrImagePull" if pulling else "ImagePullBackOff"


def set_on_pod(kube, name, annotations, namespace=None):
    """Set (value) or remove (None) knobs on one live pod: only that pod changes, its ReplicaSet's template does not."""
    kube.client.resources.get(api_version="v1", kind="Pod").patch(
        name=name, namespace=namespace or kube.namespace, content_type="application/merge-patch+json",
        body={"metadata": {"annotations": annotations}})
