"""An opt-in extra GPU node run by the REAL kubelet, for the few tests kwok cannot answer.

Three processes of ``hollow`` (tools/controlplane/hollow, built by tools/controlplane/build.sh next to
the control plane) make one node:

- ``hollow runtime``: the fake CRI runtime (``k8s.io/cri-client/pkg/fake``). Its containers live in
  this process, so it is kept across a kubelet restart and killed only by a node reboot. Its control
  socket marks a container exited (a crash).
- ``hollow gpu-plugin``: a fake NVIDIA device plugin on the real ``deviceplugin/v1beta1`` API: registers
  with the kubelet, advertises ``gpus`` healthy devices (``GPU-fake-0000``, ...) in ListAndWatch,
  answers Allocate with ``NVIDIA_VISIBLE_DEVICES``, re-registers after a kubelet restart.
- ``hollow kubelet``: kubemark's hollow kubelet (the real kubelet code: pod workers, admission, status
  manager, node status, eviction manager) whose ContainerManager has the kubelet's REAL device manager
  (its checkpoint, Allocate, capacity from the plugin). Probes are faked (Ready at once), cAdvisor is
  faked (1 CPU, 3840Mi), no cgroups.

Not started by default: a test asks for it (``with hollow_gpu_node(cp, tmp_path, "hollow-gpu") as node``
or ``control_plane.add_hollow_gpu_node(name, directory)``). The Node object is deleted when it stops, so
tests after it find only the default kwok node. Everything (kubelet root, device-plugin directory,
sockets, logs) lives under the test's directory; the only port is the kubelet's, a free one; so two
pytest workers, each with its own control plane, can each run one. What it covers and what it cannot:
docs/testing.md, "The real kubelet: a hollow GPU node (opt-in)".
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.support.serve import free_port, stop_process_group

GPU_RESOURCE = "nvidia.com/gpu"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the trailing NUL
# The longest socket the kubelet makes under its root dir: <root>/pod-resources/kubelet.sock
_LONGEST_SOCKET = "/root/pod-resources/kubelet.sock"
PROCESSES = ("runtime", "gpu-plugin", "kubelet")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class HollowGPUNode:  # pylint: disable=too-many-instance-attributes
    """One hollow GPU node ``name`` on control plane ``cp``; its files in ``directory``.

    ``start()`` runs the three processes and waits until the Node is Ready with ``gpus`` of ``resource``
    allocatable (reported by the kubelet from the plugin's ListAndWatch: the kubelet is never told a number).
    ``stop()`` ends them, deletes the Node and the node's state (logs are kept)."""

    def __init__(self, cp, name, directory, gpus=1, resource=GPU_RESOURCE, labels=None, binary=None):
        from tests.support.controlplane import bin_dir  # pylint: disable=import-outside-toplevel
        self.cp = cp
        self.name = name
        self.gpus = gpus
        self.resource = resource
        self.labels = {"nvidia.com/gpu.present": "true", "kubernetes.io/os": "linux", **(labels or {})}
        self.binary = binary or os.path.join(cp._bin or bin_dir(), "hollow")  # pylint: disable=protected-access
        if not os.path.isfile(self.binary):
            raise RuntimeError(f"{self.binary} is missing: the control plane was built before hollow was added; "
                               "run `make setup` or `bash tools/controlplane/build.sh`")
        self.dir = os.path.abspath(directory)
        self.port = None
        self.procs = {}
        self._short = None  # a short alias of self.dir for the unix sockets (sun_path is 108 bytes)
        self.base = None

    # -- paths (through the short alias: the kubelet's sockets must fit in sun_path)
    @property
    def root_dir(self):
        return os.path.join(self.base, "root")

    @property
    def device_plugin_dir(self):
        return os.path.join(self.base, "dp")

    @property
    def cri_socket(self):
        return os.path.join(self.base, "cri.sock")

    @property
    def control_socket(self):
        return os.path.join(self.base, "control.sock")

    @property
    def checkpoint(self):
        return os.path.join(self.dir, "dp", "kubelet_internal_checkpoint")

    def log_path(self, process):
        return os.path.join(self.dir, f"{process}.log")

    def log(self, process="kubelet"):
        try:
            with open(self.log_path(process), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def _alias(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        if len(self.dir) + len(_LONGEST_SOCKET) <= SUN_PATH_MAX:
            self.base = self.dir
            return
        self._short = tempfile.mkdtemp(prefix="hollow-")
        self.base = os.path.join(self._short, "n")
        os.symlink(self.dir, self.base)
        if len(self.base) + len(_LONGEST_SOCKET) > SUN_PATH_MAX:
            raise RuntimeError(f"no short enough directory for the kubelet's sockets ({self.base}): set TMPDIR shorter")

    # -- processes
    def _spawn(self, process, argv):
        env = dict(os.environ, TMPDIR=os.path.join(self.dir, "tmp"))  # kubemark makes a temp dir we do not use
        with open(self.log_path(process), "ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} start {process}\n".encode())
            log.flush()
            self.procs[process] = subprocess.Popen(  # pylint: disable=consider-using-with
                [self.binary, *argv], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)

    def _terminate(self, process, sig=signal.SIGTERM, grace=10.0):
        proc = self.procs.pop(process, None)
        if proc is None or proc.poll() is not None:
            return
        stop_process_group(proc, sig, grace)
        with open(self.log_path(process), "ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} stopped {process}\n".encode())

    def running(self, process):
        proc = self.procs.get(process)
        return proc is not None and proc.poll() is None

    def start_runtime(self):
        self._spawn("runtime", ["runtime", "--endpoint", f"unix://{self.cri_socket}",
                                "--control-socket", self.control_socket])

    def start_plugin(self):
        self._spawn("gpu-plugin", ["gpu-plugin", "--device-plugin-dir", self.device_plugin_dir,
                                   "--devices", str(self.gpus), "--resource", self.resource])

    def start_kubelet(self):
        """Start the kubelet (it waits for the runtime's socket itself)."""
        self._spawn("kubelet", [
            "kubelet", "--kubeconfig", self.cp.kubeconfig, "--name", self.name, "--root-dir", self.root_dir,
            "--runtime-endpoint", f"unix://{self.cri_socket}", "--device-plugin-dir", self.device_plugin_dir,
            "--kubelet-port", str(self.port), "--node-labels", ",".join(f"{k}={v}" for k, v in self.labels.items()),
            "--v=3"])

    def stop_kubelet(self):
        """SIGTERM the kubelet (as systemd stops it); the runtime's containers and the plugin stay."""
        self._terminate("kubelet")

    def stop_plugin(self):
        self._terminate("gpu-plugin")

    def stop_runtime(self):
        self._terminate("runtime")

    def restart_kubelet(self, while_down=None):
        """Restart the kubelet only (``systemctl restart k3s`` with the containers left running): the runtime and
        the device plugin keep running. ``while_down()`` runs while no kubelet runs (the API still does)."""
        self.stop_kubelet()
        if while_down is not None:
            while_down()
        self.start_kubelet()

    def reboot(self, plugin=True):
        """A node reboot: kubelet, plugin and runtime stop (every container is gone), the runtime and the kubelet
        come back; the device plugin too unless ``plugin=False`` (on k3s it is itself a DaemonSet pod, so it comes
        back late: the test calls ``start_plugin()`` when it wants)."""
        for process in ("kubelet", "gpu-plugin", "runtime"):
            self._terminate(process)
        self.start_runtime()
        self.start_kubelet()
        if plugin:
            self.start_plugin()

    # -- the runtime's control socket
    def _control(self, method, path):
        conn = _UnixHTTPConnection(self.control_socket)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200:
                raise RuntimeError(f"runtime control {method} {path}: {resp.status} {body}")
            return body
        finally:
            conn.close()

    def containers(self):
        """The runtime's containers: dicts with id, name, attempt, state (CONTAINER_RUNNING, ...), exitCode, pod,
        namespace."""
        return json.loads(self._control("GET", "/containers"))

    def crash_container(self, name, exit_code=137):
        """Mark the running containers named ``name`` exited with ``exit_code`` (the process died); returns how
        many. The kubelet finds out at its next relist (about 1 s) and restarts them as a real one would."""
        return int(self._control("POST", f"/exit?name={name}&code={int(exit_code)}").split()[-1])

    # -- the Node
    def node(self):
        return self.cp.client().resources.get(api_version="v1", kind="Node").get(name=self.name).to_dict()

    def allocatable(self):
        """The node's allocatable ``resource`` as reported by the kubelet ("0" while the plugin is away), or None."""
        try:
            return ((self.node().get("status") or {}).get("allocatable") or {}).get(self.resource)
        except Exception:  # pylint: disable=broad-except  # not registered yet
            return None

    def ready(self):
        try:
            conds = (self.node().get("status") or {}).get("conditions") or []
        except Exception:  # pylint: disable=broad-except
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def wait(self, predicate, timeout=120.0, what="the hollow node"):
        """Poll ``predicate()`` until truthy (returned); fail with the processes' log tails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            for process, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    raise RuntimeError(f"hollow {process} of node {self.name} exited ({proc.returncode}) "
                                       f"while waiting for {what}:\n{self.log(process)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (node {self.name}); "
                                     f"kubelet log:\n{self.log()[-3000:]}\nplugin log:\n{self.log('gpu-plugin')[-800:]}")
            time.sleep(0.2)

    def wait_ready(self, timeout=120.0):
        """Ready, with the plugin's ``gpus`` allocatable (when the plugin runs)."""
        want = str(self.gpus) if self.running("gpu-plugin") else None
        return self.wait(lambda: self.ready() and (want is None or self.allocatable() == want), timeout,
                         f"Ready with {self.resource}: {want}")

    def allocations(self):
        """How many Allocate calls the device plugin answered (its log), and which devices each time."""
        return [line.split(" ", 1)[1] for line in self.log("gpu-plugin").splitlines() if line.startswith("Allocate ")]

    def start(self, timeout=120.0):
        self._alias()
        for sub in ("root", "dp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.port = self.port or free_port()
        try:
            self.start_runtime()
            self.start_plugin()
            self.start_kubelet()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop the three processes, delete the Node (pods bound to it are the test's namespace's business), remove
        the node's state and the short alias; keep the logs in ``self.dir``."""
        from kubernetes.dynamic.exceptions import NotFoundError  # pylint: disable=import-outside-toplevel
        for process in ("kubelet", "gpu-plugin", "runtime"):
            self._terminate(process)
        try:
            self.cp.client().resources.get(api_version="v1", kind="Node").delete(name=self.name)
        except NotFoundError:
            pass
        except Exception as exc:  # pylint: disable=broad-except  # the control plane itself may be gone
            print(f"hollow node {self.name}: Node not deleted: {exc}")
        for sub in ("root", "dp", "tmp"):
            shutil.rmtree(os.path.join(self.dir, sub), ignore_errors=True)
        for sock in ("cri.sock", "control.sock"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, sock))
        if self._short:
            shutil.rmtree(self._short, ignore_errors=True)
            self._short = None
        hollow = getattr(self.cp, "_hollow", [])
        if self in hollow:
            hollow.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def hollow_gpu_node(cp, directory, name="hollow-gpu", **kwargs):
    """``with hollow_gpu_node(control_plane, tmp_path / "hollow", "hollow-gpu") as node:`` one started node."""
    node = HollowGPUNode(cp, name, directory, **kwargs)
    node.start()
    try:
        yield node
    finally:
        node.stop()
