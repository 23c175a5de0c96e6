"""The fields of a rendered or built workload that the one pod shape writes (plugins/module_utils/deploy.py
``workload()``), for comparing a workload with what the builder makes of the same options
(tests/unit/test_deploy_pod_shape.py, tests/functional/test_deploy_pod_shape.py)."""

from __future__ import annotations

from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy

WORKLOAD_KINDS = deploy.WORKLOAD_KINDS


def containers(obj: dict) -> list[dict]:
    pod = obj["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def shape(obj: dict, resources: bool = True) -> dict:
    """Labels, selector, revision history, the pod's shared fields and each container's (with its resources)."""
    pod = obj["spec"]["template"]["spec"]
    fields = deploy.CONTAINER_SHAPE_FIELDS + (("resources",) if resources else ())
    return {
        "labels": obj["metadata"]["labels"], "pod_labels": obj["spec"]["template"]["metadata"]["labels"],
        "selector": obj["spec"]["selector"], "revisionHistoryLimit": obj["spec"].get("revisionHistoryLimit"),
        "pod": {key: pod.get(key) for key in deploy.POD_SHAPE_FIELDS},
        "containers": [dict({key: c.get(key) for key in fields}, name=c["name"]) for c in containers(obj)],
    }
