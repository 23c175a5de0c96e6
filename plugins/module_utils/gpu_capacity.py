# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU capacity per node: what Kubernetes advertises and has handed out, and what the host sees.

Plain Python, importable without Ansible running. ``collect`` is what the gpu_capacity
module calls; the rest are small pure functions with unit tests of their own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

DEFAULT_RESOURCE = "nvidia.com/gpu"
_DONE_PHASES = ("Succeeded", "Failed")
_NVSMI_GPU_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu", "driver_version")
_NVSMI_APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
NVSMI_GPU_ARGS = ["--query-gpu=" + ",".join(_NVSMI_GPU_FIELDS), "--format=csv,noheader,nounits"]
NVSMI_APP_ARGS = ["--query-compute-apps=" + ",".join(_NVSMI_APP_FIELDS), "--format=csv,noheader,nounits"]


# The requests collect() makes (kube_client route name -> verb, raw path); gpu_swap's _ROUTES holds them too.
ROUTES = {
    "list_node": ("GET", "/api/v1/nodes"),
    "list_pod_for_all_namespaces": ("GET", "/api/v1/pods"),
    "list_replica_set_for_all_namespaces": ("GET", "/apis/apps/v1/replicasets"),
}


class CapacityError(Exception):
    """A finding that fails the task, worded for the operator."""


# ---------------------------------------------------------------- Kubernetes side
def parse_quantity(value):
    """Count of an extended resource from a Kubernetes quantity string (``"1"``, ``"2"``, ``"1k"``)."""
    if value is None or value == "":
        return 0
    text = str(value).strip()
    match = re.match(r"^(\d+)(k|M|G|Ki|Mi|Gi)?$", text)
    if not match:
        raise ValueError("not an integer quantity: %r (extended resources such as GPUs are whole numbers)" % (value,))
    mult = {None: 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30}[match.group(2)]
    return int(match.group(1)) * mult


def _container_request(container, resource):
    res = container.get("resources") or {}
    # For extended resources a limit without a request implies the same request.
    value = (res.get("requests") or {}).get(resource, (res.get("limits") or {}).get(resource))
    return parse_quantity(value)


def pod_request(pod, resource):
    """What the scheduler charges a pod: max(sum of containers, largest init container)."""
    spec = pod.get("spec") or {}
    main = sum(_container_request(c, resource) for c in spec.get("containers") or [])
    init = max([_container_request(c, resource) for c in spec.get("initContainers") or []] or [0])
    return max(main, init)


def workload_of(pod, replicaset_owners):
    """The workload that owns a pod: Deployment (through its ReplicaSet), StatefulSet, DaemonSet, Job..."""
    meta = pod.get("metadata") or {}
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller", True)]
    if not refs:
        return {"kind": "Pod", "name": meta.get("name")}
    ref = refs[0]
    if ref.get("kind") == "ReplicaSet":
        owner = replicaset_owners.get((meta.get("namespace"), ref.get("name")))
        if owner:
            return owner
    return {"kind": ref.get("kind"), "name": ref.get("name")}


def replicaset_owner_map(replicasets):
    """(namespace, ReplicaSet name) -> owning workload, for pods created by Deployments."""
    owners = {}
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller", True)]
        if refs:
            owners[(meta.get("namespace"), meta.get("name"))] = {"kind": refs[0].get("kind"), "name": refs[0].get("name")}
    return owners


def _node_ready(node):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (node.get("status") or {}).get("conditions") or [])


def _pending_reason(pod):
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason"), cond.get("message")
    return None, None


def summarize(nodes, pods, resource=DEFAULT_RESOURCE, replicasets=(), node=None):
    """Build the per-node report from Node, Pod and ReplicaSet objects (plain dicts, API JSON)."""
    names = [n["metadata"]["name"] for n in nodes]
    if node is not None and node not in names:
        raise CapacityError("node %r not found; the cluster has: %s. Check the node name (kubectl get nodes)."
                            % (node, ", ".join(names) or "no nodes"))
    owners = replicaset_owner_map(replicasets)
    holders = {}
    pending = []
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase in _DONE_PHASES:
            continue
        amount = pod_request(pod, resource)
        if not amount:
            continue
        meta = pod["metadata"]
        entry = {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": phase,
            "terminating": bool(meta.get("deletionTimestamp")),
            "workload": workload_of(pod, owners),
            "amount": amount,
        }
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            holders.setdefault(bound, []).append(entry)
        else:
            entry["reason"], entry["message"] = _pending_reason(pod)
            pending.append(entry)
    report_nodes = []
    totals = {"capacity": 0, "allocatable": 0, "requested": 0, "free": 0}
    for obj in nodes:
        name = obj["metadata"]["name"]
        if node is not None and name != node:
            continue
        status = obj.get("status") or {}
        capacity = status.get("capacity") or {}
        allocatable = status.get("allocatable") or {}
        held = sorted(holders.get(name, []), key=lambda h: (h["namespace"], h["name"]))
        requested = sum(h["amount"] for h in held)
        alloc = parse_quantity(allocatable.get(resource))
        entry = {
            "name": name,
            "ready": _node_ready(obj),
            "schedulable": not (obj.get("spec") or {}).get("unschedulable", False),
            "advertised": resource in capacity,
            "capacity": parse_quantity(capacity.get(resource)),
            "allocatable": alloc,
            "requested": requested,
            "free": max(0, alloc - requested),
            "holders": held,
            "labels": {k: v for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items() if k.startswith("nvidia.com/")},
            "extended_resources": sorted(k for k in capacity if "/" in k),
        }
        report_nodes.append(entry)
        for key in totals:
            totals[key] += entry[key]
    return {
        "resource": resource,
        "nodes": report_nodes,
        "totals": totals,
        "pending": sorted(pending, key=lambda h: (h["namespace"], h["name"])),
        "advertised": any(n["advertised"] for n in report_nodes),
    }


def _describe_holders(holders):
    if not holders:
        return "no pod holds it"
    parts = []
    for h in holders:
        state = "Terminating" if h["terminating"] else h["phase"]
        parts.append("%s/%s (%s %s, %s, %d)" % (h["namespace"], h["name"], h["workload"]["kind"], h["workload"]["name"], state, h["amount"]))
    return "held by " + ", ".join(parts)


def not_advertised_message(report):
    seen = sorted({r for n in report["nodes"] for r in n["extended_resources"]})
    return ("no node advertises %s: the NVIDIA device plugin is not running or has not registered the GPU (its pods "
            "need runtimeClassName nvidia-cdi (on NixOS; nvidia elsewhere) and the node label nvidia.com/gpu.present=true). Extended resources the "
            "nodes do advertise: %s%s" % (
                report["resource"], ", ".join(seen) or "none",
                " (under time-slicing the resource is often renamed, e.g. nvidia.com/gpu.shared: set resource_name)"
                if seen else ""))


def check_free(report, require_free, node=None):
    """None when ``require_free`` is met (on ``node``, or on some node); else a message naming the holders."""
    if require_free is None:
        return None
    if not report["advertised"]:
        return not_advertised_message(report)
    candidates = [n for n in report["nodes"] if node is None or n["name"] == node]
    if any(n["free"] >= require_free and n["ready"] for n in candidates):
        return None
    parts = []
    for n in candidates:
        parts.append("%s: %d of %d free%s, %s" % (n["name"], n["free"], n["allocatable"], "" if n["ready"] else " (node NotReady)",
                                                  _describe_holders(n["holders"])))
    where = "node %s" % node if node else "any node"
    terminating = [h for n in candidates for h in n["holders"] if h["terminating"]]
    hint = " Terminating pods still count until their objects are deleted." if terminating else ""
    return "%d %s required free on %s, not available. %s.%s" % (require_free, report["resource"], where, "; ".join(parts), hint)


# ---------------------------------------------------------------- host side (nvidia-smi)
_NVSMI_FAILURES = (
    (re.compile(r"couldn't communicate with the NVIDIA driver", re.I),
     "the NVIDIA driver is not loaded (nvidia-smi could not talk to it): check hardware.nvidia in the host's NixOS "
     "configuration and reboot after a driver change"),
    (re.compile(r"No devices were found", re.I), "the NVIDIA driver is loaded but sees no GPU"),
    (re.compile(r"Driver/library version mismatch", re.I),
     "the NVIDIA kernel module and user-space library differ (driver updated without reboot): reboot the host"),
    (re.compile(r"Insufficient Permissions", re.I), "nvidia-smi lacks permission to query the GPU: run as root (become: true)"),
)


def _value(text):
    """One CSV cell: strip, drop a unit, map the [N/A]-style markers to None."""
    text = text.strip()
    if not text or (text.startswith("[") and text.endswith("]")) or text in ("N/A", "Not Supported"):
        return None
    for unit in (" MiB", " %", " W", " MHz"):
        if text.endswith(unit):
            return text[: -len(unit)].strip()
    return text


def _int(text):
    value = _value(text)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _rows(text, fields):
    rows = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if line.lower().startswith("no running processes found"):
            continue
        cells = line.split(",")
        if cells[0].strip().lower() == fields[0]:
            continue  # the header line of output made without "noheader"
        extra = len(cells) - len(fields)
        if extra > 0:
            # A process name containing a comma: rejoin it (the only free-text field besides the GPU name).
            idx = fields.index("name") if "name" in fields else fields.index("process_name")
            cells = cells[:idx] + [",".join(cells[idx:idx + extra + 1])] + cells[idx + extra + 1:]
        elif extra < 0:
            raise CapacityError("unexpected nvidia-smi output line (expected %d fields: %s): %r" % (len(fields), ", ".join(fields), line))
        rows.append(dict(zip(fields, cells)))
    return rows


def parse_gpus(text):
    """Parse ``nvidia-smi --query-gpu=index,uuid,name,memory.*,utilization.gpu,driver_version --format=csv``."""
    gpus = []
    for row in _rows(text, _NVSMI_GPU_FIELDS):
        gpus.append({
            "index": _int(row["index"]),
            "uuid": _value(row["uuid"]),
            "name": _value(row["name"]),
            "memory_total_mib": _int(row["memory.total"]),
            "memory_used_mib": _int(row["memory.used"]),
            "memory_free_mib": _int(row["memory.free"]),
            "utilization_percent": _int(row["utilization.gpu"]),
            "driver_version": _value(row["driver_version"]),
        })
    return gpus


def parse_apps(text):
    """Parse ``nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv``."""
    return [{"gpu_uuid": _value(r["gpu_uuid"]), "pid": _int(r["pid"]), "process_name": _value(r["process_name"]),
             "used_memory_mib": _int(r["used_memory"])} for r in _rows(text, _NVSMI_APP_FIELDS)]


def nvidia_smi_failure(rc, stdout, stderr, path):
    """A clear message for a failed nvidia-smi run, or None if it ran."""
    if rc == 0:
        return None
    text = "%s\n%s" % (stdout or "", stderr or "")
    if rc == 127 or "No such file" in text or "not found" in text.lower() and "nvidia-smi" in text.lower():
        return ("%s not found on this host: no NVIDIA driver is installed here, or the module runs on the wrong host "
                "(run it on the GPU host, or use sources: [kubernetes] from the controller)" % path)
    for pattern, meaning in _NVSMI_FAILURES:
        if pattern.search(text):
            return "nvidia-smi failed (rc=%s): %s. Its output: %s" % (rc, meaning, text.strip()[:300])
    return "nvidia-smi failed (rc=%s): %s" % (rc, text.strip()[:300])


def host_view(gpus, apps):
    """Attach processes to GPUs, and name the memory no listed compute process accounts for."""
    for gpu in gpus:
        procs = [a for a in apps if a["gpu_uuid"] == gpu["uuid"]]
        gpu["processes"] = procs
        listed = sum(p["used_memory_mib"] or 0 for p in procs)
        used = gpu["memory_used_mib"]
        # Graphics clients (a game, Xorg) and processes nvidia-smi cannot see are in memory.used, not in the apps list.
        gpu["unattributed_memory_mib"] = max(0, used - listed) if used is not None else None
    return {"gpus": gpus}


def check_host_free(host, require_mib):
    """None when every GPU has ``require_mib`` MiB free; else a message naming what holds the memory."""
    if require_mib is None:
        return None
    if not host["gpus"]:
        return "no GPU visible to nvidia-smi on this host"
    short = []
    for gpu in host["gpus"]:
        free = gpu["memory_free_mib"]
        if free is None or free < require_mib:
            procs = ", ".join("%s (pid %s, %s MiB)" % (p["process_name"], p["pid"], p["used_memory_mib"]) for p in gpu["processes"])
            short.append("GPU %s (%s): %s MiB free of %s MiB; compute processes: %s; memory not held by a listed compute "
                         "process (graphics clients such as a game, or other containers): %s MiB" % (
                             gpu["index"], gpu["name"], free, gpu["memory_total_mib"], procs or "none", gpu["unattributed_memory_mib"]))
    if not short:
        return None
    return "%d MiB of GPU memory required free on this host, not available. %s" % (require_mib, "; ".join(short))


# ---------------------------------------------------------------- orchestration
def collect(params, kube_list=None, run_command=None, sleep=time.sleep, clock=time.monotonic):
    """Gather the report; with ``wait_timeout`` poll until the requirements hold.

    ``kube_list(api, method, action, **kwargs)`` returns API JSON (``kube_client.Client.kube_list``);
    ``run_command(argv)`` returns (rc, out, err).
    Returns ``(report, failure_message_or_None)``.
    """
    sources = params.get("sources") or ["kubernetes"]
    resource = params.get("resource_name") or DEFAULT_RESOURCE
    node = params.get("node")
    started = clock()
    deadline = started + (params.get("wait_timeout") or 0)
    looks = 0
    while True:
        looks += 1
        report = {"resource": resource, "sources": list(sources), "looks": looks,
                  "waited_seconds": round(clock() - started, 2)}
        failures = []
        if "kubernetes" in sources:
            nodes = kube_list("CoreV1Api", "list_node", "list nodes")["items"]
            pods = kube_list("CoreV1Api", "list_pod_for_all_namespaces", "list pods in all namespaces",
                             field_selector="status.phase!=Succeeded,status.phase!=Failed")["items"]
            replicasets = []
            if any(r.get("kind") == "ReplicaSet" for p in pods for r in (p.get("metadata") or {}).get("ownerReferences") or []):
                replicasets = kube_list("AppsV1Api", "list_replica_set_for_all_namespaces", "list replicasets in all namespaces")["items"]
            report.update(summarize(nodes, pods, resource, replicasets, node))
            failure = check_free(report, params.get("require_free"), node)
            if failure:
                failures.append(failure)
        if "nvidia-smi" in sources:
            path = params.get("nvidia_smi_path") or "nvidia-smi"
            rc, out, err = run_command([path] + NVSMI_GPU_ARGS)
            problem = nvidia_smi_failure(rc, out, err, path)
            if problem:
                raise CapacityError(problem)
            gpus = parse_gpus(out)
            rc, out, err = run_command([path] + NVSMI_APP_ARGS)
            problem = nvidia_smi_failure(rc, out, err, path)
            if problem:
                raise CapacityError(problem)
            report["host"] = host_view(gpus, parse_apps(out))
            failure = check_host_free(report["host"], params.get("require_host_free_mib"))
            if failure:
                failures.append(failure)
        if not failures:
            return report, None
        if clock() >= deadline:
            waited = params.get("wait_timeout") or 0
            return report, " ".join(failures) + (" (still so after waiting %ss)" % waited if waited else "")
        sleep(params.get("wait_sleep") or 2)
