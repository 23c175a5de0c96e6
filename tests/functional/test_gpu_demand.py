"""The GPU follows the demand (docs/gpu_demand.md): a request through the gateway hands the GPU over.

Real: the LiteLLM proxy (pinned, with the config our litellm_config code renders from the example catalog, the
litellm role's router settings and the hook the litellm role mounts: roles/litellm/files/gpu_demand_hook.py), the
on-demand service (roles/gpu_demand/files/gpu_demand_server.py on the LiteLLM venv's Python, authenticated with a
ServiceAccount token bound to the swap's least-privilege RBAC), the control plane, the gpu_swap playbook.
Simulated: the inference servers (tests/support/openai_backend.py, started and stopped by a ReadyGate as their pods
become Ready or go), the hosted fallback (always up), kwok pods, nvidia-smi (a script printing an idle RTX 4090).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs
from tests.support.gpu_demand_service import MODELS, gateway_with_hook, service_for
from tests.support.gpu_swap_lab import READY_DELAY, Lab, ReadyGate
from tests.support.openai_backend import OpenAIBackend

class _SwapClock:
    """What host_check uses of a Swap: its clock, sleep, notes and phase report."""
    clock, sleep, notes = staticmethod(time.monotonic), staticmethod(time.sleep), []

    def phase(self, *args, **kwargs):
        pass


GAMING_SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "provision" / "files" / "gpu-lab-gaming"


@pytest.fixture
def stand_ins():
    vllm, ollama = OpenAIBackend(name="vllm"), OpenAIBackend(name="ollama")  # started by the gates
    cloud = OpenAIBackend(name="cloud").start()
    yield SimpleNamespace(vllm=vllm, ollama=ollama, cloud=cloud)
    for backend in (vllm, ollama, cloud):
        backend.stop()


def answered_by(status, body):
    text = body["choices"][0]["message"]["content"] if status == 200 else ""
    return text[1:text.index("]")] if text.startswith("[") else f"error {status}: {str(body)[:300]}"


def test_a_request_hands_the_gpu_over_and_residency_and_the_lock_hold(kube, tmp_path, stand_ins):
    lab = Lab(kube, tmp_path, owner="ollama", models=MODELS,
              pod_annotations={"ollama": {READY_DELAY: "4s"}}).setup()
    gates = [ReadyGate(kube, "vllm", [stand_ins.vllm]).start(), ReadyGate(kube, "ollama", [stand_ins.ollama]).start()]
    backends = {"vllm": stand_ins.vllm.url, "ollama": stand_ins.ollama.url}
    service = service_for(kube, lab, tmp_path, backends, hold_budget=60, residency=8)
    proxy = None
    try:
        proxy = gateway_with_hook(tmp_path / "gw", stand_ins, service)
        # 1. Ollama owns the GPU; a request for the vLLM alias takes it, held until vLLM answers.
        started = time.monotonic()
        status, body = proxy.chat("qwen2.5-7b", "which backend?", timeout=120)
        took = time.monotonic() - started
        assert answered_by(status, body) == "vllm", service.log()[-3000:]
        assert took < 60, f"held {took:.1f} s, beyond the hold budget"
        state = lab.state()
        assert (state["owner"], state["model"], state["owner_trigger"]) == ("vllm", "qwen2.5-7b", "request"), state
        assert lab.replicas() == {"ollama": 0, "vllm": 1}
        # 2. Inside vLLM's minimum residency a request for the Ollama alias gets its fallback, and nothing moves.
        status, body = proxy.chat("llama3.1-8b", "and now?", timeout=60)
        assert answered_by(status, body) == "cloud", (status, body)
        assert lab.state()["owner"] == "vllm" and lab.replicas() == {"ollama": 0, "vllm": 1}
        # An embedding request never hands the GPU over (the hook does not even ask).
        assert service.ensure("nomic-embed")[1]["action"] == "serve"
        # 3. After the residency the Ollama alias takes the GPU (Ollama is slow to get Ready: 4 s), and a playbook
        #    swap that starts meanwhile is refused, naming the service as the lock's holder.
        time.sleep(max(0.0, 8.5 - (time.monotonic() - started - took)))
        held = {}
        request = threading.Thread(target=lambda: held.update(answer=proxy.chat("llama3.1-8b", "hi", timeout=120)))
        request.start()
        kube.wait_for(lambda: lab.state().get("intent_phase"), timeout=30, what="the on-demand swap's intent")
        out = lab.swap("none", check=False, gpu_swap_lock_timeout=1)
        assert out.returncode != 0
        holder = lab.lease()["spec"]["holderIdentity"]
        assert "another gpu_swap holds the lock" in out.stdout and holder in out.stdout, out.stdout[-3000:]
        request.join(timeout=120)
        assert answered_by(*held["answer"]) == "ollama", (held, service.log()[-3000:])
        state = lab.state()
        assert (state["owner"], state["owner_trigger"]) == ("ollama", "request") and not state.get("intent_phase")
        metrics = service.metrics()
        assert 'gpu_lab_swaps_total{from="ollama",result="ok",to="vllm:qwen2.5-7b",trigger="request"} 1.0' in metrics
        assert 'gpu_lab_swaps_total{from="vllm:qwen2.5-7b",result="refused",to="ollama",trigger="request"} 1.0' in metrics
        # the owner gauge follows the record (set by the hand-over, then by every poll)
        kube.wait_for(lambda: 'gpu_lab_gpu_owner{owner="ollama"} 1.0' in service.metrics(), timeout=5,
                      what="gauge gpu_lab_gpu_owner on ollama")
        # Only the lab's keys ask: without the service token nothing is decided.
        assert service.ensure("qwen2.5-7b", token="wrong")[0] == 401
    finally:
        if proxy is not None:
            proxy.stop()
        service.stop()
        for gate in gates:
            gate.stop()


def test_idle_return_and_gaming_mode(kube, tmp_path, stand_ins):
    """The idle return hands an unused GPU to idle_owner; the host's gaming signal (provision's gpu-lab-gaming script,
    which the GameMode unit runs, docs/provision.md) hands it to none, no request takes it back, and the end of the
    game returns it. The signal's time has second resolution: off within the same second as on still counts."""
    lab = Lab(kube, tmp_path, owner="vllm", models=MODELS).setup()
    gates = [ReadyGate(kube, "vllm", [stand_ins.vllm]).start(), ReadyGate(kube, "ollama", [stand_ins.ollama]).start()]
    backends = {"vllm": stand_ins.vllm.url, "ollama": stand_ins.ollama.url}
    service = service_for(kube, lab, tmp_path, backends, residency=0, idle_after=2, idle_owner="ollama")

    def signal(state):
        """The host's signal, by provision's own script as its systemd unit runs it (kubectl for `k3s kubectl`)."""
        env = dict(os.environ, GPU_LAB_NAMESPACE=kube.namespace, KUBECONFIG=kube.kubeconfig,
                   GPU_LAB_KUBECTL=str(Path(sys.executable).parent / "kubectl"))
        done = subprocess.run(["/bin/sh", str(GAMING_SCRIPT), state], env=env, capture_output=True, text=True,
                              check=False, timeout=30)
        assert done.returncode == 0, done.stderr
    try:
        # Idle: nobody asked vLLM for 2 s (a record from before owner_since counts from the service's start).
        kube.wait_for(lambda: lab.state().get("owner") == "ollama", timeout=60, what="the idle return to ollama")
        assert lab.state()["owner_trigger"] == "idle" and lab.replicas() == {"ollama": 1, "vllm": 0}
        # A game starts: the GPU goes to none, the owner it had is remembered.
        signal("on")
        kube.wait_for(lambda: lab.state().get("owner") == "none", timeout=60, what="gaming mode: owner none")
        state = lab.state()
        assert (state["owner_trigger"], state["gaming_return_to"]) == ("gamemode", "ollama"), state
        assert lab.replicas() == {"ollama": 0, "vllm": 0}
        # While the game runs no request takes the GPU back (the hosted fallback would answer through the gateway).
        status, answer = service.ensure("qwen2.5-7b")
        assert status == 200 and answer["action"] == "fallback" and "gaming mode" in answer["reason"], answer
        assert answer["use"] == "cloud-fallback"
        time.sleep(3)   # nor does the idle return (idle_owner ollama): the game holds the GPU
        assert lab.state()["owner"] == "none"
        # The game ends: the GPU goes back to the owner it had.
        signal("off")
        kube.wait_for(lambda: lab.state().get("owner") == "ollama" and not lab.state().get("gaming_return_to"),
                      timeout=60, what="the end of the game: back to ollama")
        assert lab.state()["owner_trigger"] == "gamemode" and lab.replicas() == {"ollama": 1, "vllm": 0}
        metrics = service.metrics()
        assert 'gpu_lab_swaps_total{from="vllm:qwen2.5-7b",result="ok",to="ollama",trigger="idle"} 1.0' in metrics
        assert 'gpu_lab_swaps_total{from="ollama",result="ok",to="none",trigger="gamemode"} 1.0' in metrics
        assert 'gpu_lab_swaps_total{from="none",result="ok",to="ollama",trigger="gamemode"} 1.0' in metrics
    finally:
        service.stop()
        for gate in gates:
            gate.stop()


def test_the_service_hands_over_on_the_sleep_mode_fast_path(kube, tmp_path):
    """With vLLM sleep mode (a 2-slot node, the annotation deploy sets), the service's hand-over (gpu_demand.hand_over,
    the one the HTTP service runs) takes the swap core's fast path: vLLM is drained and put to sleep, not deleted, and
    its way back is a wake. Emulated as in tests/functional/test_gpu_swap_sleep_mode.py (the vLLM stand-in implements
    /sleep, /wake_up, /is_sleeping as vLLM's source has them); Ollama's stand-in answers while its pod is Ready."""
    from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_demand as gd  # pylint: disable=import-outside-toplevel
    from tests.support.gpu_swap_sleep import SleepLab  # pylint: disable=import-outside-toplevel
    from tests.support.vllm_backend import VLLMBackend  # pylint: disable=import-outside-toplevel
    with VLLMBackend(served_models=["qwen2.5-7b"]) as vllm:
        ollama = OpenAIBackend(name="ollama")
        lab = SleepLab(kube, tmp_path, owner="vllm", model="qwen2.5-7b").setup()
        gate = ReadyGate(kube, "ollama", [ollama]).start()
        try:
            uids = sorted(p["metadata"]["uid"] for p in lab.pods("vllm"))
            backends = {"vllm": vllm.url, "ollama": ollama.url}
            # nvidia-smi shows the sleeping vLLM's CUDA context (1.3 GiB used): free but that and the reserve passes
            host = {"nvidia_smi_path": str(lab.set_smi("driver-550-rtx4090-vllm-asleep")), "timeout": 2}
            result = gd.hand_over(lab.cluster(), lab.params(vllm.url), "ollama", "request", backends, host)
            assert result["ok"], result
            assert vllm.sleep_level == 1 and sorted(p["metadata"]["uid"] for p in lab.pods("vllm")) == uids
            state = lab.state()
            assert (state["owner"], state["owner_trigger"]) == ("ollama", "request") and not state.get("intent_phase")
            names = [p["name"] for p in result["phases"]]
            assert "drain vLLM (vllm:num_requests_running == 0)" in names
            assert "require the GPU memory released on the host (nvidia-smi)" in names
            # the same memory with no residual allowed (not the fast path) is refused: the check is real
            with pytest.raises(gs.SwapError, match="MiB of GPU memory required free"):
                gd.host_check(_SwapClock(), dict(gd.HOST_DEFAULTS, **host), fast_path=False)
            result = gd.hand_over(lab.cluster(), lab.params(vllm.url), "vllm:qwen2.5-7b", "request", backends, host)
            assert result["ok"], result
            assert vllm.sleep_level == 0 and sorted(p["metadata"]["uid"] for p in lab.pods("vllm")) == uids
            assert lab.state()["owner"] == "vllm" and vllm.engine_dead is None
        finally:
            gate.stop()
