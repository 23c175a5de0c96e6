"""The gpu_swap playbook against the real control plane.

Real: ansible-playbook with the gpu_swap role and module, kube-apiserver / controller-manager /
scheduler (Deployments, ReplicaSets, the scheduler's GPU accounting with Terminating pods,
admission policies), Leases and ConfigMaps in etcd.
Simulated: pods run nothing (kwok makes them Running/Ready, with per-pod delays from the
``kwok.ailab.test/*`` annotations); the GPU backends' Deployments are made by
tests/support/gpu_swap_lab.py in the deploy roles' shape; nvidia-smi is a script printing
hand-written output in NVIDIA's documented layout (tests/support/nvidia_smi_fake.py); in the
gateway-failure test the gateway is a local OpenAI-compatible stand-in (the real LiteLLM proxy
is in test_gpu_swap_gateway.py).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils.gpu_swap import SWAP_FIELD_MANAGER

from tests.support.catalog_example import load_example_catalog
from tests.support.gpu_swap_lab import (DELETE_DELAY, HOLD, NEVER_READY, READY_DELAY, SMI_GAME, Lab, gpu_backend, kill_run,
                                        recap, scaling_denied, wait_phase)
from tests.support.hf_server import HFServer
from tests.support.ollama_server import OllamaServer
from tests.support.openai_backend import OpenAIBackend

CATALOG = load_example_catalog()
SECOND_VLLM = dict(CATALOG["gpu_lab_models"][0], name="mistral-7b", source="mistralai/Mistral-7B-Instruct-v0.3",
                   revision="e0bc86c23ce5aae1db576c8cca6f06f1f73af2db", vllm_args={"max_model_len": 4096})
MODELS = CATALOG["gpu_lab_models"] + [SECOND_VLLM]


def lab_for(kube, tmp_path, **kwargs):
    return Lab(kube, tmp_path, models=kwargs.pop("models", MODELS), **kwargs).setup()


def assert_settled(lab, owner, model=""):
    problems = lab.owner_settled(owner, model)
    assert not problems, problems


def test_every_transition_ends_right_and_repeats_change_nothing(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    qwen_args = lab.vllm_args()
    with OllamaServer(local=["tinyllama:1b"]) as ollama:
        ollama.load("tinyllama:1b")
        lab.swap("vllm:qwen2.5-7b", gpu_swap_unload_models=True, gpu_swap_ollama_url=ollama.url)
        unloads = [body for method, path, body in ollama.requests if path == "/api/generate"]
    assert unloads == [{"model": "tinyllama:1b", "keep_alive": 0, "stream": False}] and not ollama.loaded
    assert_settled(lab, "vllm", "qwen2.5-7b")
    assert lab.vllm_args() == qwen_args  # already the model's args: untouched
    lab.swap("vllm:mistral-7b")          # model A -> B
    assert_settled(lab, "vllm", "mistral-7b")
    args = lab.vllm_args()
    assert args[:6] == ["--model", "mistralai/Mistral-7B-Instruct-v0.3", "--revision",
                        "e0bc86c23ce5aae1db576c8cca6f06f1f73af2db", "--served-model-name", "mistral-7b"]
    assert "--max-model-len" in args and args[args.index("--max-model-len") + 1] == "4096"
    assert args[-6:] == ["--host", "0.0.0.0", "--port", "8000", "--download-dir", "/models/hub"]  # the role's own args kept
    assert lab.deployment("vllm")["metadata"]["annotations"]["ailab.gpu-lab/model"] == "mistral-7b"
    # the swap's changes to the Deployment carry its own field manager, the one deploy leaves these fields to
    # (here the model change: args and annotations; the test lab's own apply holds the replicas it set)
    swap_owned = json.dumps([m.get("fieldsV1") for m in lab.deployment("vllm")["metadata"]["managedFields"]
                             if m["manager"] == SWAP_FIELD_MANAGER])
    assert '"f:args"' in swap_owned and "ailab.gpu-lab/model" in swap_owned
    before = lab.snapshot()
    again = lab.swap("vllm")             # bare vllm keeps the model served now: nothing to do
    assert recap(again.stdout)["changed"] == 0 and "nothing to do" in again.stdout
    assert lab.snapshot() == before, "a swap to the current owner wrote to the cluster (or took the lock)"
    lab.swap("none")
    assert_settled(lab, "none")
    assert not lab.pods("ollama") and not lab.pods("vllm")
    lab.swap("vllm:qwen2.5-7b")          # none -> vllm
    assert_settled(lab, "vllm", "qwen2.5-7b")
    assert lab.vllm_args() == qwen_args
    lab.swap("ollama")                   # vllm -> ollama
    assert_settled(lab, "ollama")
    lab.swap("none")
    out = lab.swap("ollama")             # none -> ollama, with the report of each phase
    assert_settled(lab, "ollama")
    for phase in ("begin (validate, lock, record intent)", "wait until pods are deleted", "wait for Ready",
                  "record the owner, release the lock", "none -> ollama:"):
        assert phase in out.stdout


def test_status_and_check_mode_change_nothing(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    before = lab.snapshot()
    status = lab.swap("status")
    assert "GPU owner: ollama on node gpu-box" in status.stdout and "no swap in progress" in status.stdout
    plan = lab.swap("vllm:mistral-7b", "--check", "--diff")
    for line in ("swap ollama -> vllm:mistral-7b on node gpu-box (check mode: nothing is changed)",
                 "unload Ollama's models (keep_alive: 0)",
                 "scale Deployment ollama to 0 and wait until its pods are deleted",
                 "set vLLM's model mistral-7b (args and served name from the catalog)"):
        assert line in plan.stdout
    assert recap(plan.stdout)["failed"] == 0
    assert lab.snapshot() == before, "check mode wrote to the cluster"
    assert_settled(lab, "ollama")


@pytest.mark.parametrize("target, fragments", [
    ("vllm:qwen", ["gpu_owner=vllm:qwen: 'qwen' is not a vllm model of the catalog",
                   "Valid targets: status, none, ollama, vllm, vllm:qwen2.5-7b, vllm:mistral-7b"]),
    ("steam", ["gpu_owner='steam' is not a swap target"]),
])
def test_unknown_target_fails_before_anything_changes(kube, tmp_path, target, fragments):
    lab = lab_for(kube, tmp_path, owner="ollama")
    before = lab.snapshot()
    out = lab.swap(target, check=False)
    assert out.returncode != 0
    for fragment in fragments:
        assert fragment in out.stdout
    assert lab.snapshot() == before


def test_vllm_weights_are_pulled_before_the_swap_and_a_model_the_hub_lacks_fails_with_ollama_serving(kube, tmp_path):
    """Emulated: the Hugging Face Hub (tests/support/hf_server.py); real: model_pull (huggingface_hub) on the
    "GPU host" (this machine), the control plane, the playbook."""
    with HFServer() as hub:
        commit = hub.repos["ailab-test/tiny-model"].order[0]
        models = CATALOG["gpu_lab_models"] + [
            dict(SECOND_VLLM, name="tiny-vllm", source="ailab-test/tiny-model", revision=commit),
            dict(SECOND_VLLM, name="gone-vllm", source="ailab-test/not-on-the-hub", revision="0" * 40)]
        lab = lab_for(kube, tmp_path, owner="ollama", models=models)
        cache = tmp_path / "hub-cache"
        pull = {"gpu_swap_vllm_pull": True, "gpu_swap_vllm_pull_become": False,
                "gpu_swap_vllm_cache_dir": str(cache), "gpu_swap_hf_endpoint": hub.url}
        before = lab.snapshot()
        out = lab.swap("vllm:gone-vllm", check=False, **pull)
        assert out.returncode != 0
        assert "repository ailab-test/not-on-the-hub at %s" % hub.url in out.stdout and "not found (HTTP 404)" in out.stdout
        assert lab.snapshot() == before, "a failed download must come before the lock, the intent and the stop"
        assert_settled(lab, "ollama")

        lab.swap("vllm:tiny-vllm", **pull)
        assert_settled(lab, "vllm", "tiny-vllm")
        weights = cache / "models--ailab-test--tiny-model" / "snapshots" / commit / "model.safetensors"
        assert weights.stat().st_size > 0, "the swap started vLLM on a model whose weights are not on the volume"
        lab.swap("ollama", **pull)
        sent = len(hub.requests)
        lab.swap("vllm:tiny-vllm", **pull)                # complete pinned snapshot: nothing is fetched
        assert hub.requests[sent:] == []
        assert_settled(lab, "vllm", "tiny-vllm")


def test_gateway_check_without_a_gateway_url_fails_before_anything_changes(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    before = lab.snapshot()
    out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_verify_gateway=True)
    assert out.returncode != 0 and "set gpu_swap_gateway_url" in out.stdout and "Nothing was changed" in out.stdout
    assert lab.snapshot() == before


def test_terminating_pods_delay_the_target_until_they_are_gone(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"ollama": {DELETE_DELAY: "6s"}})
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append((time.monotonic(), {p["metadata"]["name"]: bool(p["metadata"].get("deletionTimestamp"))
                                            for p in lab.pods("ollama")}, [p["metadata"]["name"] for p in lab.pods("vllm")]))
            time.sleep(0.1)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out = lab.swap("vllm:qwen2.5-7b")
    finally:
        stop.set()
        watcher.join()
    assert_settled(lab, "vllm", "qwen2.5-7b")
    terminating = [t for t, ollama, _ in seen if ollama and all(ollama.values())]
    assert terminating and terminating[-1] - terminating[0] > 4, "the ollama pod was never seen Terminating for long"
    overlap = [(t, o, v) for t, o, v in seen if o and v]
    assert not overlap, f"a vLLM pod existed while an Ollama pod (Terminating) still held the GPU: {overlap[:3]}"
    waited = [line for line in out.stdout.splitlines() if "wait until pods are deleted" in line][0]
    assert float(waited.split("(")[1].split(" s waiting")[0]) > 4, waited


def test_rolling_update_deadlocks_on_one_gpu_and_the_swap_never_relies_on_it(kube, tmp_path):
    """The Pending case the real scheduler produces: a template change of a RollingUpdate GPU Deployment."""
    kube.apply(gpu_backend("roller", kube.namespace, 1, strategy="RollingUpdate"))
    kube.wait_for(lambda: kube.pods("app.kubernetes.io/name=roller", running=True), timeout=60, what="roller Running")
    changed = gpu_backend("roller", kube.namespace, 1, pod_annotations={"changed": "1"}, strategy="RollingUpdate")
    kube.apply(changed)

    def stuck():
        return [p for p in kube.pods("app.kubernetes.io/name=roller") for c in (p["status"].get("conditions") or [])
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"]
    pending = kube.wait_for(stuck, timeout=60, what="the surge pod to be Unschedulable")[0]
    message = [c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled"][0]["message"]
    assert "nvidia.com/gpu" in message
    assert len(kube.pods("app.kubernetes.io/name=roller", running=True)) == 1  # the old pod keeps the GPU: deadlock
    kube.delete("Deployment", "roller", api_version="apps/v1", grace_period_seconds=0)
    kube.wait_for(lambda: not kube.pods("app.kubernetes.io/name=roller"), timeout=60, what="roller gone")
    # Even with RollingUpdate GPU backends the swap cannot deadlock: it scales to 0 before changing a template.
    lab = lab_for(kube, tmp_path, owner="vllm", model="qwen2.5-7b", strategy="RollingUpdate")
    out = lab.swap("vllm:mistral-7b")
    assert "uses RollingUpdate" in out.stdout
    assert_settled(lab, "vllm", "mistral-7b")


# ------------------------------------------------------------------ failure injection
def assert_rolled_back(lab, returncode, stdout, failed_at, reason, owner="ollama", model=""):
    """The run failed naming the task and the reason, said the previous owner is back, and it is."""
    assert returncode != 0, stdout[-3000:]
    assert "failed at" in stdout and failed_at in stdout, stdout[-4000:]
    assert reason in stdout, stdout[-4000:]
    assert f"The previous owner {target_text(owner, model)} is back" in stdout, stdout[-4000:]
    assert_settled(lab, owner, model)


def target_text(owner, model):
    return f"vllm:{model}" if owner == "vllm" else owner


def test_target_never_ready_restores_the_previous_owner(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {NEVER_READY: "true"}})
    out = lab.swap("vllm:qwen2.5-7b", check=False, gpu_swap_ready_timeout=5)
    assert_rolled_back(lab, out.returncode, out.stdout, "Start the new owner", "timed out after 5s: Deployment")
    assert "has no Ready pod" in out.stdout and "gpu_swap_ready_timeout" in out.stdout


def test_api_error_mid_swap_restores_the_previous_owner(kube, tmp_path):
    """A real admission policy denies scaling vLLM up: the API answers 422 in the middle of the swap."""
    lab = lab_for(kube, tmp_path, owner="ollama")
    with scaling_denied(kube, "vllm"):
        out = lab.swap("vllm:qwen2.5-7b", check=False)
    assert_rolled_back(lab, out.returncode, out.stdout, "Start the new owner", "test policy: vllm may not be scaled up")
    assert "scale Deployment" in out.stdout


def test_control_plane_blip_mid_swap_is_waited_for(kube, control_plane, tmp_path):
    """kube-apiserver restarted while the swap waits for Ready: the swap rides it out and completes."""
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {READY_DELAY: "15s"}})
    proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_api_retry_timeout=90)
    wait_phase(lab, "starting", proc)
    control_plane.restart_apiserver()
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-5000:]
    assert_settled(lab, "vllm", "qwen2.5-7b")


def test_control_plane_down_longer_than_the_retry_window_restores_the_previous_owner(kube, control_plane, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {READY_DELAY: "20s"}})
    # The restore waits for Ollama's pod while the scheduler and kwok reconnect to the restarted API server (client-go's
    # watch backoff): under a loaded machine that once took more than the harness's 60 s (rehearsal 13), so this run
    # gets the 180 s a real swap's default (load budget + 120 s) would give it at least.
    proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_api_retry_timeout=2, gpu_swap_ready_timeout=180)
    wait_phase(lab, "starting", proc)
    control_plane.restart_apiserver(down_seconds=6)
    output = proc.communicate(timeout=300)[0]
    assert_rolled_back(lab, proc.returncode, output, "Start the new owner", "is unreachable")


def test_gpu_memory_held_on_the_host_restores_the_previous_owner(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    lab.set_smi(SMI_GAME)  # a game holds 9 GiB that no compute process accounts for
    out = lab.swap("vllm:qwen2.5-7b", check=False)
    assert_rolled_back(lab, out.returncode, out.stdout, "Require the GPU memory released", "MiB of GPU memory required free on this host")
    assert "graphics clients such as a game" in out.stdout


def test_gateway_request_failing_restores_the_previous_owner(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="vllm", model="qwen2.5-7b")
    with OpenAIBackend(name="gateway-stand-in") as gateway:
        gateway.set_failure(500)
        out = lab.swap("ollama", check=False, gpu_swap_verify_gateway=True, gpu_swap_gateway_url=gateway.url,
                       gpu_swap_gateway_api_key="sk-test-gateway-key", gpu_swap_gateway_timeout=3)
        asked = gateway.models_requested()
    assert "llama3.1-8b" in asked  # the first Ollama chat model of the catalog was asked for
    assert_rolled_back(lab, out.returncode, out.stdout, "Start the new owner", "did not answer a request to llama3.1-8b",
                       owner="vllm", model="qwen2.5-7b")
    assert "sk-test-gateway-key" not in out.stdout
    assert gateway.requests[0]["authorization"] == "Bearer sk-test-gateway-key"


def test_gateway_answering_passes_with_the_key_from_the_secret(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama")
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "litellm-env"},
                "stringData": {"LITELLM_MASTER_KEY": "sk-from-the-secret-123"}})
    with OpenAIBackend(name="gateway-stand-in") as gateway:
        out = lab.swap("vllm:qwen2.5-7b", "-vvv", gpu_swap_verify_gateway=True, gpu_swap_gateway_url=gateway.url)
        assert gateway.requests[-1]["model"] == "qwen2.5-7b"
        assert gateway.requests[-1]["authorization"] == "Bearer sk-from-the-secret-123"
    assert "sk-from-the-secret-123" not in out.stdout
    assert "request through the gateway" in out.stdout
    assert_settled(lab, "vllm", "qwen2.5-7b")


def test_killed_run_is_recovered_by_deploys_entry_point_and_by_the_next_swap(kube, tmp_path):
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {READY_DELAY: "30s"}})
    proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_lease_duration=4)
    wait_phase(lab, "starting", proc)
    kube.wait_for(lambda: lab.replicas()["vllm"] == 1, timeout=60, what="vLLM scaled up")
    kill_run(proc)  # the controller dies mid-swap: ansible-playbook and the running step

    state = lab.state()
    assert state["intent_from"] == "ollama" and state["intent_to"] == "vllm:qwen2.5-7b"
    assert lab.replicas() == {"ollama": 0, "vllm": 1}
    status = lab.swap("status")
    assert "swap in progress: ollama -> vllm:qwen2.5-7b (phase starting; the next gpu_swap or deploy run will rollback it)" \
        in status.stdout
    # What deploy runs before touching the GPU backends (roles/gpu_swap/tasks/recover.yml):
    play = tmp_path / "recover.yml"
    play.write_text("- hosts: gpu_lab\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role: {name: ailab.gpu_lab.gpu_swap, tasks_from: recover}\n"
                    "    - ansible.builtin.assert: {that: [gpu_swap_recovered.recovered.action == 'rollback']}\n")
    rec = subprocess.run([lab.argv("status")[0], str(play), "-i", lab.inventory()], env=lab.env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=300)
    assert rec.returncode == 0, rec.stdout[-4000:]
    assert_settled(lab, "ollama")
    # Killed again; this time the next gpu_swap run itself rolls back, then does the swap asked for.
    proc = lab.spawn("vllm:qwen2.5-7b", gpu_swap_lease_duration=4)
    wait_phase(lab, "starting", proc)
    kill_run(proc)
    out = lab.swap("none")
    assert "rollback to ollama (recovering the run interrupted in phase starting)" in out.stdout
    assert "swap ollama -> none on node gpu-box" in out.stdout
    assert_settled(lab, "none")


def test_two_swaps_at_once_cannot_both_proceed(kube, tmp_path):
    # The first swap's vLLM pod is held Pending (kwok hold) until the second run has been refused.
    lab = lab_for(kube, tmp_path, owner="ollama", pod_annotations={"vllm": {HOLD: "true"}})
    first = lab.spawn("vllm:qwen2.5-7b")
    wait_phase(lab, "starting", first)
    second = lab.swap("none", check=False, gpu_swap_lock_timeout=1)
    assert second.returncode != 0
    assert "another gpu_swap holds the lock (Lease" in second.stdout and "two swaps never run at once" in second.stdout
    kube.wait_for(lambda: lab.pods("vllm"), what="the first swap's vLLM pod")
    lab.release("vllm")
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 0, output[-4000:]
    assert_settled(lab, "vllm", "qwen2.5-7b")


def test_two_gpu_nodes_the_catalog_entry_or_the_inventory_names_the_node(kube, tmp_path):
    from tests.support.controlplane import gpu_node  # pylint: disable=import-outside-toplevel
    kube.add_node(gpu_node("gpu-box-2"))
    models = CATALOG["gpu_lab_models"] + [dict(SECOND_VLLM, node="gpu-box-2")]
    lab = lab_for(kube, tmp_path, owner="ollama", models=models)
    lab.swap("vllm:mistral-7b")  # the catalog entry says where it runs
    assert_settled(lab, "vllm", "mistral-7b")
    assert lab.state()["node"] == "gpu-box-2"
    assert [p["spec"]["nodeName"] for p in lab.pods("vllm")] == ["gpu-box-2"]
    assert lab.deployment("vllm")["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "gpu-box-2"
    lab.swap("ollama", gpu_swap_node="gpu-box")  # explicit in the inventory / -e
    assert_settled(lab, "ollama")
    assert lab.state()["node"] == "gpu-box"
    assert [p["spec"]["nodeName"] for p in lab.pods("ollama")] == ["gpu-box"]


def test_bad_target_fails_without_asking_any_cluster(tmp_path):
    """No cluster at all (the kubeconfig does not exist): the target is still checked first."""
    class _NoCluster:  # the playbook only reads kubeconfig and namespace from it
        kubeconfig, namespace = str(tmp_path / "absent-kubeconfig"), "ai-lab"
    lab = Lab(_NoCluster(), tmp_path, models=MODELS)
    out = lab.swap("vllm:qwen", check=False)
    assert out.returncode != 0 and "gpu_owner=vllm:qwen: 'qwen' is not a vllm model of the catalog" in out.stdout
    assert "kubeconfig" not in out.stdout.split("gpu_owner=vllm:qwen")[1][:200]
