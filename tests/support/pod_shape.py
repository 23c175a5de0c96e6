"""The fields of a rendered or built workload that the one pod shape writes (plugins/module_utils/deploy.py
``workload()``), for comparing a workload with what the builder makes of the same options
(tests/unit/test_deploy_pod_shape.py, tests/functional/test_deploy_pod_shape.py)."""

from __future__ import annotations

from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy

WORKLOAD_KINDS = deploy.WORKLOAD_KINDS


def containers(obj: dict) -> list[dict]:
    pod = obj["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


# Added to every object of the render by deploy's one apply (its ApplySet membership), not by the pod shape.
APPLY_LABEL_PREFIX = "applyset.kubernetes.io/"


def shape(obj: dict, resources: bool = True) -> dict:
    """Labels (but the ApplySet's), selector, revision history, the pod's shared fields and each container's
    (with its resources)."""
    pod = obj["spec"]["template"]["spec"]
    labels = {k: v for k, v in obj["metadata"]["labels"].items() if not k.startswith(APPLY_LABEL_PREFIX)}
    fields = deploy.CONTAINER_SHAPE_FIELDS + (("resources",) if resources else ())
    return {
        "labels": labels, "pod_labels": obj["spec"]["template"]["metadata"]["labels"],
        "selector": obj["spec"]["selector"], "revisionHistoryLimit": obj["spec"].get("revisionHistoryLimit"),
        "pod": {key: pod.get(key) for key in deploy.POD_SHAPE_FIELDS},
        "containers": [dict({key: c.get(key) for key in fields}, name=c["name"]) for c in containers(obj)],
    }
