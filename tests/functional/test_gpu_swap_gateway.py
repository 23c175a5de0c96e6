"""The gateway serves throughout every GPU swap: the REAL LiteLLM proxy in front of backends that
answer only while their Deployment has a Ready pod in the REAL control plane.

Real: LiteLLM (the pinned proxy with the config our litellm_config code renders from the example
catalog and the litellm role's router settings), the control plane, the gpu_swap playbook, which
checks the new owner through this very proxy (fallbacks disabled).
Simulated: the inference servers (tests/support/openai_backend.py, started/stopped by a
ReadyGate as their pods become Ready or go), the hosted fallback (always up), kwok pods,
nvidia-smi (a script).
"""

from __future__ import annotations

import collections
import time
from types import SimpleNamespace

import pytest

from tests.support.gpu_swap_lab import READY_DELAY, GatewayClient, Lab, ReadyGate
from tests.support.litellm_proxy import MASTER_KEY, LiteLLMProxy, gateway_env, write_gateway_config
from tests.support.openai_backend import OpenAIBackend

ALIASES = ("qwen2.5-7b", "llama3.1-8b")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    vllm, ollama = OpenAIBackend(name="vllm"), OpenAIBackend(name="ollama")  # started by the gates
    cloud = OpenAIBackend(name="cloud").start()
    config, _ = write_gateway_config(tmp_path_factory.mktemp("gateway"), vllm=vllm, ollama=ollama, cloud=cloud)
    proxy = LiteLLMProxy(config, env=gateway_env()).start()
    yield SimpleNamespace(proxy=proxy, vllm=vllm, ollama=ollama, cloud=cloud)
    proxy.stop()
    for backend in (vllm, ollama, cloud):
        backend.stop()


def test_gateway_serves_throughout_every_transition(kube, tmp_path, gateway):
    lab = Lab(kube, tmp_path, owner="ollama",
              pod_annotations={"vllm": {READY_DELAY: "4s"}, "ollama": {READY_DELAY: "2s"}})
    gates = [ReadyGate(kube, "vllm", [gateway.vllm]).start(), ReadyGate(kube, "ollama", [gateway.ollama]).start()]
    client = GatewayClient(gateway.proxy, ALIASES)
    reports = []
    try:
        lab.setup()
        kube.wait_for(lambda: gates[1].up, timeout=30, what="the ollama stand-in to be up")
        client.start()
        time.sleep(1)
        for target in ("vllm:qwen2.5-7b", "none", "ollama"):
            client.phase = f"swapping to {target}"
            out = lab.swap(target, gpu_swap_verify_gateway=True, gpu_swap_gateway_url=gateway.proxy.url,
                           gpu_swap_gateway_api_key=MASTER_KEY, gpu_swap_gateway_timeout=90)
            assert MASTER_KEY not in out.stdout
            reports.extend("  %s: %s" % (target, line.strip().strip('",')) for line in out.stdout.splitlines()
                           if "request through the gateway:" in line or "s orchestration" in line)
            client.phase = f"{target} owns the GPU"
            settled = client.phase
            kube.wait_for(lambda: all(sum(1 for e in client.log if e[0] == settled and e[1] == alias) >= 3
                                      for alias in ALIASES), timeout=120, what=f"3 requests per alias once {target} owns")
    finally:
        client.stop()
        for gate in gates:
            gate.stop()
    print("\nrequests through the real LiteLLM proxy during the swaps (phase, alias -> answered by, count):")
    print(client.table())
    print("the swaps' own report:")
    print("\n".join(reports))
    errors = [entry for entry in client.log if entry[2] != 200]
    assert not errors, f"the gateway answered with errors: {errors[:5]}\n{client.table()}"
    served = collections.Counter((phase, alias, backend) for phase, alias, _, backend in client.log)
    # While an owner is settled, its alias is served by it; with none, the hosted fallback answers both.
    assert served[("vllm:qwen2.5-7b owns the GPU", "qwen2.5-7b", "vllm")] > 0
    assert served[("vllm:qwen2.5-7b owns the GPU", "llama3.1-8b", "cloud")] > 0
    assert served[("none owns the GPU", "qwen2.5-7b", "cloud")] > 0 and served[("none owns the GPU", "llama3.1-8b", "cloud")] > 0
    assert served[("ollama owns the GPU", "llama3.1-8b", "ollama")] > 0
    assert not [e for e in client.log if e[0] == "none owns the GPU" and e[3] in ("vllm", "ollama")]
