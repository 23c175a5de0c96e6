"""A simulated GPU lab for the gpu_swap tests, the benchmark and the demo.

What is REAL: the Kubernetes control plane (kube-apiserver, controller-manager, scheduler; kwok
plays the kubelet, so pods become Running/Ready but run nothing), Ansible and the gpu_swap
playbook, and -- where a test asks for it -- the LiteLLM proxy.

What stands in:
- the GPU backends' Deployments are made here in the shape the deploy roles give them (labels
  of the contract, ``strategy: Recreate``, ``runtimeClassName: nvidia-cdi``,
  ``limits: nvidia.com/gpu: 1``, vLLM args from the catalog followed by the role's own), so the
  swap can be tested before or without the deploy playbook;
- the inference servers are local HTTP servers (tests/support/openai_backend.py,
  ollama_server.py) that a ``ReadyGate`` starts only while their Deployment has a Ready pod in
  the control plane and stops (connection refused) otherwise: the gateway sees what it would
  see on the real host;
- nvidia-smi is tests/support/nvidia_smi_fake.py's script printing a case of
  tests/unit/data/nvidia_smi_cases.yml (hand-written in NVIDIA's documented layout);
  ``Lab.set_smi`` switches the case.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import yaml

from tests.support.catalog_example import load_example_catalog
from tests.support.kube_ns import fingerprint
from tests.support.kubelet_knobs import DELETE_DELAY, HOLD, NEVER_READY, READY_DELAY  # noqa: F401 - re-exported
from tests.support.nvidia_smi_fake import write_fake_nvidia_smi

REPO = pathlib.Path(__file__).resolve().parents[2]
SMI_CASES = {c["id"]: c for c in yaml.safe_load((REPO / "tests/unit/data/nvidia_smi_cases.yml").read_text())}
SMI_FREE = "driver-550-rtx4090-idle"
SMI_GAME = "driver-550-game-running-invisible-to-compute-apps"
VENV_BIN = os.path.dirname(sys.executable)
PLAYBOOK = REPO / "playbooks" / "gpu_swap.yml"


def labels(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ai-lab",
            "app.kubernetes.io/component": "gpu-backend"}


def gpu_backend(name, namespace, replicas, args=None, model=None, pod_annotations=None, strategy="Recreate", node=None):
    """A GPU backend Deployment as the deploy roles make it (the parts the swap depends on); ``node``: pinned to
    that node by hostname, as gpu_swap pins it on a cluster of several GPU nodes."""
    container = {"name": name, "image": f"example.invalid/{name}:test",
                 "ports": [{"name": "http", "containerPort": 8000 if name == "vllm" else 11434}],
                 "resources": {"limits": {"nvidia.com/gpu": 1}}}
    if args:
        container["args"] = list(args)
    meta = {"name": name, "namespace": namespace, "labels": labels(name)}
    template_meta = {"labels": labels(name), "annotations": dict(pod_annotations or {})}
    if model is not None:
        meta["annotations"] = {"ailab.gpu-lab/model": model}
        template_meta["annotations"]["ailab.gpu-lab/model"] = model
    selector = {"nvidia.com/gpu.present": "true"}
    if node:
        selector["kubernetes.io/hostname"] = node
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "strategy": {"type": strategy},
                     "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"metadata": template_meta,
                                  "spec": {"runtimeClassName": "nvidia-cdi", "enableServiceLinks": False,
                                           "nodeSelector": selector,
                                           "terminationGracePeriodSeconds": 30, "containers": [container]}}}}


def vllm_args(models, model):
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog  # pylint: disable=import-outside-toplevel
    return catalog.vllm_args(models, model) + ["--host", "0.0.0.0", "--port", "8000", "--download-dir", "/models/hub"]


def service(name, namespace, port):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"name": "http", "port": port}]}}


class ReadyGate:
    """Runs ``servers`` only while Deployment ``name`` in ``kube.namespace`` has a Ready pod (polls the API).

    ``transitions`` records (monotonic time, "up"/"down") for the test's report.
    """

    def __init__(self, kube, name, servers, interval=0.1):
        self.kube = kube
        self.name = name
        self.servers = list(servers)
        self.interval = interval
        self.up = False
        self.transitions = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ready-gate-{name}", daemon=True)

    def ready(self):
        pods = self.kube.pods(label_selector=f"app.kubernetes.io/name={self.name}")
        return any(not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
            for p in pods)

    def _run(self):
        while not self._halt.is_set():
            try:
                ready = self.ready()
            except Exception:  # noqa: BLE001 - an API restart in a test: keep the last state
                ready = self.up
            if ready != self.up:
                for server in self.servers:
                    server.start() if ready else server.stop()
                self.up = ready
                self.transitions.append((time.monotonic(), "up" if ready else "down"))
            self._halt.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._halt.set()
        self._thread.join(timeout=5)
        for server in self.servers:
            server.stop()
        self.up = False


class GatewayClient(threading.Thread):
    """Sends chat requests to each alias in turn through the gateway; records who answered.

    The stand-in backends answer ``[<backend name>] <model>: ...``, so the reply names the backend.
    ``phase`` labels the requests sent from now on (the caller sets it around each swap).
    """

    def __init__(self, proxy, aliases):
        super().__init__(daemon=True)
        self.proxy = proxy
        self.aliases = list(aliases)
        self.phase = "start"
        self.log = []  # (phase, alias, status, backend)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            for alias in self.aliases:
                status, body = self.proxy.chat(alias, "are you there?", timeout=30)
                text = ""
                if status == 200 and isinstance(body, dict):
                    text = body["choices"][0]["message"]["content"] or ""
                backend = text[1:text.index("]")] if text.startswith("[") else f"error {status}: {str(body)[:120]}"
                self.log.append((self.phase, alias, status, backend))
            self._halt.wait(0.05)

    def stop(self):
        self._halt.set()
        self.join(timeout=60)

    def table(self):
        """One line per (phase, alias, backend) with the number of answers, in the order phases came."""
        order, counts = [], {}
        for phase, alias, _, backend in self.log:
            key = (phase, alias, backend)
            if key not in counts:
                order.append(key)
                counts[key] = 0
            counts[key] += 1
        return "\n".join(f"  {phase:<30} {alias:<12} -> {backend:<8} {counts[(phase, alias, backend)]:>4}"
                         for phase, alias, backend in order)


class Lab:
    """One test's lab: both GPU backends in ``kube.namespace``, an inventory, the playbook runner."""

    def __init__(self, kube, workdir, owner="ollama", model="qwen2.5-7b", models=None, routes=None,
                 pod_annotations=None, record=True, strategy="Recreate", node=None):
        """``node``: the GPU backends pinned to that node (e.g. a hollow GPU node, tests/support/hollow_node.py)
        and recorded as the owner's node; default: any node labelled nvidia.com/gpu.present, recorded gpu-box."""
        catalog = load_example_catalog()
        self.kube = kube
        self.ns = kube.namespace
        self.workdir = pathlib.Path(workdir)
        self.models = models if models is not None else catalog["gpu_lab_models"]
        self.routes = routes if routes is not None else catalog["gpu_lab_routes"]
        self.owner = owner
        self.model = model
        self.pod_annotations = pod_annotations or {}
        self.record = record
        self.strategy = strategy
        self.node = node
        self.smi = self._write_smi()
        self.vars = {}

    # -- objects
    def objects(self):
        vllm_model = self.model or next(m["name"] for m in self.models if m["backend"] == "vllm")
        objs = [
            gpu_backend("ollama", self.ns, 1 if self.owner == "ollama" else 0,
                        pod_annotations=self.pod_annotations.get("ollama"), strategy=self.strategy, node=self.node),
            gpu_backend("vllm", self.ns, 1 if self.owner == "vllm" else 0, args=vllm_args(self.models, vllm_model),
                        model=vllm_model, pod_annotations=self.pod_annotations.get("vllm"), strategy=self.strategy,
                        node=self.node),
            service("ollama", self.ns, 11434), service("vllm", self.ns, 8000), service("litellm", self.ns, 4000),
        ]
        if self.record:
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gpu-lab-state", "namespace": self.ns},
                         "data": {"owner": self.owner, "model": self.model if self.owner == "vllm" else "",
                                  "node": self.node or "gpu-box"}})
        return objs

    def setup(self):
        for obj in self.objects():
            self.kube.apply(obj)
        if self.owner != "none":
            self.kube.wait_for(lambda: self.ready(self.owner), timeout=60, what=f"{self.owner} Ready")
        # The Deployment controller writes the revision annotation (metadata, not status) on its first sync:
        # wait for it, so that a later "nothing was written" check sees only what the code under test wrote.
        self.kube.wait_for(lambda: all(self.settled(n) for n in ("ollama", "vllm")), timeout=60,
                           what="both Deployments synced by the Deployment controller")
        return self

    def release(self, name):
        """Remove the HOLD annotation from the live pods of ``name`` (they go on to Running/Ready)."""
        res = self.kube.client.resources.get(api_version="v1", kind="Pod")
        for pod in self.pods(name):
            res.patch(name=pod["metadata"]["name"], namespace=self.ns, content_type="application/merge-patch+json",
                      body={"metadata": {"annotations": {HOLD: None}}})

    def settled(self, name):
        dep = self.deployment(name)
        return (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") and \
            (dep.get("status") or {}).get("observedGeneration") == dep["metadata"]["generation"]

    # -- reading the cluster
    def state(self):
        return (self.kube.get("ConfigMap", "gpu-lab-state") or {}).get("data") or {}

    def lease(self):
        return self.kube.get("Lease", "gpu-lab-swap", api_version="coordination.k8s.io/v1")

    def replicas(self):
        return {n: self.kube.get("Deployment", n, api_version="apps/v1")["spec"]["replicas"] for n in ("ollama", "vllm")}

    def deployment(self, name):
        return self.kube.get("Deployment", name, api_version="apps/v1")

    def pods(self, name):
        return self.kube.pods(label_selector=f"app.kubernetes.io/name={name}")

    def ready(self, name):
        return any(not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
            for p in self.pods(name))

    def snapshot(self):
        """What gpu_swap may write (both Deployments, the state ConfigMap, the Lease, every Secret/Service/ConfigMap
        of the namespace), each as a fingerprint of what a client writes (kube_ns.fingerprint: status left out,
        which controllers keep updating), and the pod names: equal means no write."""
        seen = [(kind, o["metadata"]["name"], fingerprint(o))
                for kind, version in (("Deployment", "apps/v1"), ("ConfigMap", "v1"), ("Service", "v1"), ("Secret", "v1"),
                                      ("Lease", "coordination.k8s.io/v1"))
                for o in self.kube.list(kind, api_version=version)]
        return sorted(seen) + sorted(("Pod", p["metadata"]["name"], "") for p in self.kube.pods())

    def vllm_args(self):
        return self.deployment("vllm")["spec"]["template"]["spec"]["containers"][0].get("args")

    def owner_settled(self, owner, model=""):
        """The record says ``owner`` (and model), no intent is left, the lock is free, only the owner runs Ready."""
        data = self.state()
        lease = self.lease()
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        replicas = self.replicas()
        want = {"ollama": 1 if owner == "ollama" else 0, "vllm": 1 if owner == "vllm" else 0}
        problems = []
        if data.get("owner") != owner or data.get("model", "") != (model if owner == "vllm" else ""):
            problems.append(f"recorded {data.get('owner')}:{data.get('model')}")
        if any(k.startswith("intent_") for k in data):
            problems.append(f"intent left: {data}")
        if holder:
            problems.append(f"lock still held by {holder}")
        if replicas != want:
            problems.append(f"replicas {replicas}")
        if owner != "none" and not self.ready(owner):
            problems.append(f"{owner} not Ready")
        return problems

    # -- the host
    def _write_smi(self):
        return self.set_smi(SMI_FREE)

    def set_smi(self, case_id):
        """(Re)write the nvidia-smi stand-in to print case ``case_id`` of the cases file."""
        return write_fake_nvidia_smi(self.workdir, SMI_CASES[case_id])

    # -- the playbook
    def inventory(self, **extra):
        variables = {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "gpu_lab_models": self.models, "gpu_lab_routes": self.routes, "gpu_lab_namespace": self.ns,
            "gpu_lab_kubeconfig": self.kube.kubeconfig,
            "gpu_swap_nvidia_smi_path": self.smi, "gpu_swap_poll_interval": 0.2,
            "gpu_swap_delete_timeout": 60, "gpu_swap_ready_timeout": 60, "gpu_swap_lock_timeout": 30,
            "gpu_swap_host_timeout": 3, "gpu_swap_verify_gateway": False,
            # The Services' ClusterIPs are not reachable from this machine: tests that unload pass
            # gpu_swap_ollama_url of a local Ollama API server.
            "gpu_swap_unload_models": False,
            # No Hugging Face here: the weights test passes gpu_swap_hf_endpoint of a local hub (hf_server).
            "gpu_swap_vllm_pull": False,
        }
        variables.update(self.vars)
        variables.update(extra)
        path = self.workdir / "inventory.yml"
        path.write_text(yaml.safe_dump({"all": {"children": {"gpu_lab": {"hosts": {"gpu-box": variables}}}}}))
        return str(path)

    def env(self):
        env = dict(os.environ)
        env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONPATH=str(REPO))
        return env

    def argv(self, target, *args, **extra):
        return [os.path.join(VENV_BIN, "ansible-playbook"), str(PLAYBOOK), "-i", self.inventory(**extra),
                "-e", f"gpu_owner={target}", *args]

    def swap(self, target, *args, check=True, timeout=300, **extra):
        """Run the playbook; return the CompletedProcess (stdout+stderr in .stdout)."""
        proc = subprocess.run(self.argv(target, *args, **extra), cwd=str(REPO), env=self.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"gpu_swap to {target} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
        return proc

    def spawn(self, target, *args, **extra):
        """Start the playbook without waiting (for kill and concurrency tests)."""
        return subprocess.Popen(self.argv(target, *args, **extra), cwd=str(REPO), env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_phase(lab, phase, proc, timeout=180):
    """Wait until the running swap ``proc`` records ``phase`` (the test acts mid-swap)."""
    deadline = time.monotonic() + timeout
    while lab.state().get("intent_phase") != phase:
        assert proc.poll() is None, f"the swap ended before phase {phase}:\n{proc.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, f"phase {phase} never recorded: {lab.state()}"
        time.sleep(0.05)


@contextlib.contextmanager
def scaling_denied(kube, name):
    """A real ValidatingAdmissionPolicy (and its binding to ``kube.namespace``) that refuses to scale Deployment
    ``name`` above 0 (message ``test policy: <name> may not be scaled up``); active when the block starts."""
    policy_name = f"deny-{name}-{kube.namespace}"
    version = "admissionregistration.k8s.io/v1"
    kube.apply({"apiVersion": version, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": policy_name},
                "spec": {"failurePolicy": "Fail",
                         "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                                 "operations": ["UPDATE"],
                                                                 "resources": ["deployments", "deployments/scale"]}]},
                         "validations": [{"expression": f"object.metadata.name != '{name}' || object.spec.replicas == 0",
                                          "message": f"test policy: {name} may not be scaled up"}]}})
    kube.apply({"apiVersion": version, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": policy_name},
                "spec": {"policyName": policy_name, "validationActions": ["Deny"],
                         "matchResources": {"namespaceSelector": {"matchLabels": {
                             "kubernetes.io/metadata.name": kube.namespace}}}}})
    try:
        res = kube.client.resources.get(api_version="apps/v1", kind="Deployment")

        def denied():
            try:
                res.patch(name=name, namespace=kube.namespace, body={"spec": {"replicas": 2}},
                          content_type="application/merge-patch+json", query_params=[("dryRun", "All")])
            except Exception as exc:  # noqa: BLE001 - the policy's denial is what we wait for
                return "test policy" in str(exc)
            return False
        kube.wait_for(denied, timeout=30, what="the admission policy to be active")
        yield
    finally:
        kube.delete("ValidatingAdmissionPolicyBinding", policy_name, api_version=version)
        kube.delete("ValidatingAdmissionPolicy", policy_name, api_version=version)


def descendants(pid):
    """``pid`` and every process below it (from /proc parent links: Ansible's local connection starts
    modules in sessions of their own, so killing the process group would spare them)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def kill_run(proc):
    """SIGKILL a spawned playbook run and every process it started (a controller crash)."""
    for pid in descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def recap(output):
    """``{"ok": n, "changed": n, "failed": n, ...}`` of the PLAY RECAP line of host gpu-box."""
    for line in output.splitlines():
        if line.startswith("gpu-box") and "ok=" in line:
            return dict((k, int(v)) for k, v in (part.split("=") for part in line.split(":", 1)[1].split()))
    raise AssertionError("no PLAY RECAP in:\n" + output[-3000:])
