"""The REAL Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (upstream v1.37, built from their Go modules by tools/controlplane/build.sh) and
kwok, which plays the kubelet of fake nodes by kwok Stages (tests/support/controlplane_files/
kwok-stages.yaml; knobs in tests/support/kubelet_knobs.py): pods get Running/Ready, fail as a real
GPU host's kubelet reports failures (admission, eviction, crash loops, image pulls, startup probes),
and once deleted are reported terminal before they are removed; no container ever runs.

What is real: API validation and defaulting, admission (RuntimeClass, ServiceAccount,
NamespaceLifecycle, DefaultStorageClass, ...), server-side apply and field ownership, watches,
protobuf, RBAC, the Deployment/ReplicaSet/StatefulSet/Job/GC/namespace/endpoint/PV controllers,
and the scheduler (extended resources such as nvidia.com/gpu, Terminating pods holding them until
they are terminal, node selectors, volume binding).

What stands in for k3s (see docs/testing.md):
- nodes are kwok nodes (``gpu_node``), GPU capacity declared, no device plugin;
- RuntimeClasses ``nvidia``/``nvidia-cdi`` and the ``local-path`` StorageClass are created as
  k3s creates them; PVCs of that class are provisioned by ``_LocalPathProvisioner`` (hostPath PVs,
  as rancher's local-path-provisioner makes them, no directory is made);
- the HelmChart/HelmChartConfig CRDs exist as on k3s (schemas generated from helm-controller's Go
  types); no chart is ever installed, except that a HelmChart for kube-prometheus-stack makes
  ``_HelmStandIn`` install prometheus-operator's CRDs (generated from its Go types), which is
  the part of that chart other objects depend on.

Use: ``ControlPlane(directory).start()`` (pytest fixtures in tests/conftest.py), or
``python -m tests.support.servers start k8s --dir DIR`` (molecule, by hand) -> DIR/kubeconfig.

Opt-in, for the few tests that need the REAL kubelet: ``add_hollow_gpu_node(name, directory)`` adds a
node run by kubemark's hollow kubelet with the kubelet's real device manager, a fake CRI runtime and a fake
NVIDIA device plugin (tests/support/hollow_node.py); nothing of it runs unless a test asks.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import yaml

from tests.support.serve import free_port, stop_process_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "controlplane_files")
BIN_LINK = os.path.join(REPO, ".cache", "controlplane")  # symlink written by tools/controlplane/build.sh
SERVICE_CIDR = "10.43.0.0/16"  # k3s defaults
POD_CIDR = "10.42.0.1/24"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
LOCAL_PATH = "rancher.io/local-path"
DEFAULT_NODE = "gpu-box"  # the example lab's host


def bin_dir() -> str:
    """Directory holding ``controlplane``, ``kwok`` and ``crds/`` (built by tools/controlplane/build.sh)."""
    path = os.environ.get("AILAB_CONTROLPLANE_DIR") or BIN_LINK
    if not os.path.isfile(os.path.join(path, "controlplane")):
        raise RuntimeError(f"the control plane is not built ({path}/controlplane missing): "
                           "run `make setup` or `bash tools/controlplane/build.sh`")
    return os.path.realpath(path)


def gpu_node(name=DEFAULT_NODE, gpus=1, resource="nvidia.com/gpu", labels=None):
    """A kwok Node like a k3s GPU host after provision: ``gpus`` of ``resource`` (0: no GPU)."""
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                   "node-role.kubernetes.io/control-plane": "true", "type": "kwok"}
    if gpus:
        capacity[resource] = str(gpus)
        node_labels["nvidia.com/gpu.present"] = "true"
    node_labels.update(labels or {})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels, "annotations": {KWOK_ANNOTATION: "fake"}},
            "spec": {},
            "status": {"capacity": capacity, "allocatable": dict(capacity)}}


def k3s_objects():
    """What a fresh k3s server has that upstream Kubernetes lacks (and the stack relies on)."""
    return [
        # k3s creates these when it finds nvidia-container-runtime(.cdi) on its PATH.
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"},
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia-cdi"},
         "handler": "nvidia-cdi"},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "local-path",
                      "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": LOCAL_PATH, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"},
    ]


# ---- PKI -----------------------------------------------------------------------------------

def _write_pki(pki):
    """A CA, the apiserver's serving cert, an admin client cert (system:masters), the SA key pair."""
    # pylint: disable=import-outside-toplevel
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(pki, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def save(name, cert, private):
        with open(os.path.join(pki, name + ".crt"), "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.open(os.path.join(pki, name + ".key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as h:
            h.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))

    def name(common, org=None):
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("ailab-test-ca")).issuer_name(name("ailab-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    save("ca", ca, ca_key)

    def leaf(file, subject, usage, sans=None):
        private = key()
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        save(file, builder.sign(ca_key, hashes.SHA256()), private)

    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    leaf("apiserver", name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ("127.0.0.1", "10.43.0.1")])
    leaf("admin", name("ailab-test-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = key()
    with open(os.open(os.path.join(pki, "sa.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    with open(os.path.join(pki, "sa.pub"), "wb") as handle:
        handle.write(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))


def write_kubeconfig(path, server, pki, context=DEFAULT_NODE):
    """An admin kubeconfig (embedded CA and client certificate), mode 0600."""
    import base64  # pylint: disable=import-outside-toplevel

    def b64(file):
        with open(os.path.join(pki, file), "rb") as handle:
            return base64.b64encode(handle.read()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": context, "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": f"{context}-admin", "user": {"client-certificate-data": b64("admin.crt"),
                                                        "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}],
    }
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return path


# ---- the control plane ---------------------------------------------------------------------

class ControlPlane:
    """Start/stop the real control plane in ``directory`` (pki/, etcd/, logs, kubeconfig)."""

    def __init__(self, directory, nodes=None, objects=()):
        self.dir = os.path.abspath(directory)
        self.pki = os.path.join(self.dir, "pki")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.nodes = list(nodes if nodes is not None else [gpu_node()])
        self.objects = list(objects)
        self.procs = {}
        self.ports = {}
        self.server = None
        self.startup_seconds = None
        self._stop = threading.Event()
        self._addons = []
        self._bin = None
        self._client = None
        self._hollow = []

    # -- processes --
    def _spawn(self, name, argv):
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")  # pylint: disable=consider-using-with
        self.procs[name] = subprocess.Popen(  # pylint: disable=consider-using-with
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _log_tail(self, name, size=3000):
        try:
            with open(os.path.join(self.dir, f"{name}.log"), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-size:]
        except OSError:
            return ""

    def _wait_http(self, name, url, timeout, client_cert=True):
        ctx = ssl.create_default_context(cafile=os.path.join(self.pki, "ca.crt")) if url.startswith("https") else None
        if ctx is not None and client_cert:
            ctx.load_cert_chain(os.path.join(self.pki, "admin.crt"), os.path.join(self.pki, "admin.key"))
        if ctx is not None and not client_cert:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self._log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:  # nosec - loopback only
                    if resp.status == 200:
                        return
            except Exception as exc:  # pylint: disable=broad-except
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"{name} not healthy at {url} within {timeout}s ({last}):\n{self._log_tail(name)}")

    def _start_etcd(self, timeout):
        cp = os.path.join(self._bin, "controlplane")
        client, peer = self.ports.setdefault("etcd", free_port()), self.ports.setdefault("etcd-peer", free_port())
        self._spawn("etcd", [
            cp, "etcd", "--name", "default", "--data-dir", os.path.join(self.dir, "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level", "warn",
            "--quota-backend-bytes", str(2 * 1024 ** 3)])
        self._wait_http("etcd", f"http://127.0.0.1:{client}/health", timeout)

    def _start_apiserver(self, timeout):
        cp, pki = os.path.join(self._bin, "controlplane"), self.pki
        port = self.ports.setdefault("apiserver", free_port())
        self._spawn("kube-apiserver", [
            cp, "kube-apiserver", f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--profiling=false", "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none", "--event-ttl=30m"])
        self._wait_http("kube-apiserver", f"https://127.0.0.1:{port}/readyz", timeout)
        self.server = f"https://127.0.0.1:{port}"

    def _start_controllers(self):
        cp, pki, kc = os.path.join(self._bin, "controlplane"), self.pki, self.kubeconfig
        common = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                  "--bind-address=127.0.0.1", "--leader-elect=false", "--v=1"]
        self._spawn("kube-controller-manager", [
            cp, "kube-controller-manager", *common, f"--secure-port={self.ports.setdefault('kcm', free_port())}",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            "--use-service-account-credentials=false", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*", "--concurrent-deployment-syncs=5"])
        self._spawn("kube-scheduler", [
            cp, "kube-scheduler", *common, f"--secure-port={self.ports.setdefault('sched', free_port())}"])
        self._spawn("kwok", [
            os.path.join(self._bin, "kwok"), f"--kubeconfig={kc}",
            f"--config={os.path.join(FILES, 'kwok-stages.yaml')}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake", f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40"])

    def client(self):
        """A kubernetes DynamicClient on the admin kubeconfig (one per ControlPlane)."""
        # pylint: disable=import-outside-toplevel
        from kubernetes import config as kconfig, dynamic
        if self._client is None:
            self._client = dynamic.DynamicClient(kconfig.new_client_from_config(config_file=self.kubeconfig))
        return self._client

    def apply(self, obj):
        """Server-side apply ``obj`` (field manager ailab-test); returns the live object as a dict."""
        meta = obj.get("metadata") or {}
        res = self.client().resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        return res.server_side_apply(body=obj, name=meta["name"], namespace=meta.get("namespace"),
                                     field_manager="ailab-test", force_conflicts=True).to_dict()

    def install_crds(self, group, files=None):
        """Install the generated CRDs of ``group`` (helm | monitoring; or ``files``, e.g. External Secrets'
        from tests/support/external_secrets_crds.py) and wait until they are served."""
        files = files or sorted(glob.glob(os.path.join(self._bin or bin_dir(), "crds", group, "*.yaml")))
        if not files:
            raise RuntimeError(f"no generated CRDs for {group} in {self._bin}/crds: rebuild the control plane")
        names = []
        for path in files:
            with open(path, encoding="utf-8") as handle:
                for doc in yaml.safe_load_all(handle):
                    if doc:
                        self.apply(doc)
                        names.append(doc["metadata"]["name"])
        crds = self.client().resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        deadline = time.monotonic() + 60
        for crd_name in names:
            while True:
                conds = (crds.get(name=crd_name).to_dict().get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {crd_name} not Established within 60s")
                time.sleep(0.1)
        self.client().resources.invalidate_cache()  # discovery picks up the new kinds
        return names

    def start(self, timeout=180.0):
        t0 = time.monotonic()
        self._bin = bin_dir()
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(os.path.join(self.pki, "ca.crt")):
            _write_pki(self.pki)
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            write_kubeconfig(self.kubeconfig, self.server, self.pki)
            self._start_controllers()
            for obj in k3s_objects() + self.nodes:
                self.apply(obj)
            self.install_crds("helm")
            for obj in self.objects:
                self.apply(obj)
            self._wait_ready(timeout - (time.monotonic() - t0))
            addons = (_LocalPathProvisioner(self), _HelmStandIn(self))
            for addon in addons:  # once before returning: seeded objects see their effect at once
                addon.step()
            for addon in addons:
                thread = threading.Thread(target=addon.run, name=type(addon).__name__, daemon=True)
                thread.start()
                self._addons.append(thread)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, timeout):
        """Nodes Ready (kwok), the default ServiceAccount made (controller-manager), scheduler healthy."""
        deadline = time.monotonic() + max(timeout, 10)
        nodes = self.client().resources.get(api_version="v1", kind="Node")
        sas = self.client().resources.get(api_version="v1", kind="ServiceAccount")
        want = {n["metadata"]["name"] for n in self.nodes}
        while True:
            ready = {n.metadata.name for n in nodes.get().items
                     if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))}
            have_sa = bool(sas.get(namespace="default").items)
            if want <= ready and have_sa:
                break
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self._log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"control plane not ready: nodes ready {sorted(ready)} of {sorted(want)}, "
                                   f"default ServiceAccount {'made' if have_sa else 'missing'}\n"
                                   f"{self._log_tail('kwok')}\n{self._log_tail('kube-controller-manager')}")
            time.sleep(0.1)
        self._wait_http("kube-scheduler", f"https://127.0.0.1:{self.ports['sched']}/healthz", 30, client_cert=False)

    def restart_apiserver(self, down_seconds=0.0):
        """Stop kube-apiserver (SIGTERM), optionally stay down, start it again and wait for /readyz."""
        self._terminate("kube-apiserver")
        time.sleep(down_seconds)
        self._start_apiserver(120)

    def _terminate(self, name, grace=10.0):
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        stop_process_group(proc, grace=grace)

    def add_hollow_gpu_node(self, name, directory, **kwargs):
        """Opt-in: start an extra GPU node ``name`` run by the REAL kubelet (tests/support/hollow_node.py
        ``HollowGPUNode``; ``gpus``, ``resource``, ``labels``), its files in ``directory`` (the test's tmp dir).
        The caller stops it (``node.stop()``: processes ended, Node deleted); ``stop()`` of the control plane
        stops any left."""
        from tests.support.hollow_node import HollowGPUNode  # pylint: disable=import-outside-toplevel
        node = HollowGPUNode(self, name, directory, **kwargs)
        self._hollow.append(node)
        return node.start()

    def stop(self):
        for node in list(self._hollow):
            node.stop()
        self._stop.set()
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._terminate(name)
        for thread in self._addons:
            thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Addon:
    """A loop outside the cluster doing what a k3s add-on would, until the control plane stops.

    Subclasses define ``step()``: one pass over the cluster."""

    period = 0.2

    def __init__(self, cp):
        self.cp = cp

    def run(self):
        while not self.cp._stop.wait(self.period):  # pylint: disable=protected-access
            try:
                self.step()
            except Exception as exc:  # pylint: disable=broad-except  # apiserver restarts: try again next tick
                sys.stderr.write(f"{type(self).__name__}: {exc}\n")


class _LocalPathProvisioner(_Addon):
    """rancher.io/local-path's part: a hostPath PV on the selected node for each waiting PVC; a
    Released PV deleted (reclaimPolicy Delete). No directory is created: nothing mounts it."""

    def step(self):
        api = self.cp.client().resources
        pvcs = api.get(api_version="v1", kind="PersistentVolumeClaim")
        pvs = api.get(api_version="v1", kind="PersistentVolume")
        for pvc in pvcs.get().items:
            ann = pvc.metadata.annotations or {}
            if (pvc.status.phase != "Pending" or pvc.spec.volumeName
                    or ann.get("volume.kubernetes.io/storage-provisioner") != LOCAL_PATH
                    or not ann.get("volume.kubernetes.io/selected-node")):
                continue
            name = f"pvc-{pvc.metadata.uid}"
            ns, claim, node = pvc.metadata.namespace, pvc.metadata.name, ann["volume.kubernetes.io/selected-node"]
            pvs.create(body={
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": LOCAL_PATH,
                                                           "local.path.provisioner/selected-node": node}},
                "spec": {"capacity": {"storage": pvc.spec.resources.requests["storage"]},
                         "accessModes": list(pvc.spec.accessModes), "storageClassName": pvc.spec.storageClassName,
                         "persistentVolumeReclaimPolicy": "Delete", "volumeMode": pvc.spec.volumeMode or "Filesystem",
                         "hostPath": {"path": f"/var/lib/rancher/k3s/storage/{name}_{ns}_{claim}",
                                      "type": "DirectoryOrCreate"},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                                      "name": claim, "uid": pvc.metadata.uid},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
        for pv in pvs.get().items:
            ann = pv.metadata.annotations or {}
            if (ann.get("pv.kubernetes.io/provisioned-by") == LOCAL_PATH and pv.status.phase == "Released"
                    and pv.spec.persistentVolumeReclaimPolicy == "Delete"):
                pvs.delete(name=pv.metadata.name)


class _HelmStandIn(_Addon):
    """k3s's helm-controller never runs here. The one effect of a chart that our objects depend on is
    that kube-prometheus-stack installs prometheus-operator's CRDs: do that when its HelmChart exists."""

    period = 0.5

    def __init__(self, cp):
        super().__init__(cp)
        self.done = False

    def step(self):
        if self.done:
            return
        charts = self.cp.client().resources.get(api_version="helm.cattle.io/v1", kind="HelmChart")
        if any(c.spec.chart == "kube-prometheus-stack" for c in charts.get().items):
            self.cp.install_crds("monitoring")
            self.done = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seed", help="YAML file of extra objects; Nodes in it replace the default GPU node")
    args = parser.parse_args()
    nodes, objects = [gpu_node()], []
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            seeded = [d for doc in yaml.safe_load_all(handle) for d in (doc if isinstance(doc, list) else [doc]) if d]
        seeded_nodes = [o for o in seeded if o.get("kind") == "Node"]
        for node in seeded_nodes:  # kwok manages them and reports their conditions itself
            node.setdefault("metadata", {}).setdefault("annotations", {})[KWOK_ANNOTATION] = "fake"
            status = node.setdefault("status", {})
            status.pop("conditions", None)
            for key in ("capacity", "allocatable"):  # a kubelet always reports how many pods fit
                status.setdefault(key, {}).setdefault("pods", "110")
        nodes = seeded_nodes or nodes
        objects = [o for o in seeded if o.get("kind") != "Node"]
    cp = ControlPlane(args.dir, nodes=nodes, objects=objects)
    ready_file = os.path.join(cp.dir, "k8s.url")
    if os.path.exists(ready_file):
        os.unlink(ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cp.start()
    with open(ready_file, "w", encoding="utf-8") as handle:
        handle.write(cp.server)
    print(f"control plane {cp.server} ready in {cp.startup_seconds:.1f}s; kubeconfig {cp.kubeconfig}", flush=True)
    stop.wait()
    cp.stop()
    shutil.rmtree(os.path.join(cp.dir, "etcd"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
