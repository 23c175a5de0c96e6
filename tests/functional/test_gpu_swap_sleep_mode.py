"""The fast path of the GPU hand-over (vLLM sleep mode) against the real control plane.

Real: kube-apiserver, controller-manager (the Deployment, ReplicaSet and Endpoints controllers), scheduler, with a
node of 2 nvidia.com/gpu slots (time-slicing replicas 2); the swap core (``gpu_swap.Swap``) driven step by step as
the role's block/rescue and the in-cluster swap service drive it (tests/support/gpu_swap_sleep.py).
Simulated: pods run nothing (kwok); vLLM is tests/support/vllm_backend.py, which implements vLLM v0.11's /sleep,
/wake_up, /is_sleeping and /metrics as vLLM's source has them, and fails as vLLM was reported to fail (a sleep while
a request decodes, or a request to a sleeping engine, kills the engine and the server); its GPU memory is EMULATED.
Not here (a real GPU): the memory nvidia-smi shows after the sleep, the wake's real duration (docs/gpu_swap.md).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs

from tests.support.gpu_swap_sleep import SleepLab, drive_swap
from tests.support.vllm_backend import VLLMBackend

MODEL = "qwen2.5-7b"


def chat(vllm, results):
    """A client request that reached vLLM through its Service before the swap took vLLM out of it."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "a long answer"}]}).encode()
    request = urllib.request.Request(vllm.v1 + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            results.append(response.status)
    except Exception as exc:  # noqa: BLE001 - the test asserts on what the client saw
        results.append(repr(exc))


def pod_uids(lab, name):
    return sorted(p["metadata"]["uid"] for p in lab.pods(name))


def settled(lab, owner, asleep):
    """The record, the lock and the Deployments after a fast-path hand-over."""
    data = lab.state()
    problems = [k for k in data if k.startswith("intent_")]
    if data.get("owner") != owner or data.get(gs.VLLM_ASLEEP_KEY, "") != asleep:
        problems.append(f"recorded {data}")
    if ((lab.lease() or {}).get("spec") or {}).get("holderIdentity"):
        problems.append("lock held")
    want = {"ollama": 1 if owner == "ollama" else 0, "vllm": 1 if owner == "vllm" or asleep else 0}
    if lab.replicas() != want:
        problems.append(f"replicas {lab.replicas()}, want {want}")
    if not lab.ready(owner):
        problems.append(f"{owner} not Ready")
    return problems


@pytest.fixture
def vllm():
    with VLLMBackend(served_models=[MODEL]) as server:
        yield server


def test_vllm_to_ollama_and_back_moves_the_vram_not_the_pod(kube, tmp_path, vllm):
    lab = SleepLab(kube, tmp_path, owner="vllm", model=MODEL).setup()
    uids = pod_uids(lab, "vllm")
    assert lab.route_label() == ["on"] and lab.vllm_endpoints(), "vLLM's pod is in its Service"
    awake_mib = vllm.gpu_memory_mib

    # a request is decoding when the hand-over starts: the swap must wait for it (a sleep now kills the engine)
    vllm.set_delay(2.0)
    results = []
    client = threading.Thread(target=chat, args=(vllm, results))
    client.start()
    time.sleep(0.3)
    report = drive_swap(lab, "ollama", vllm.url)
    client.join()
    vllm.set_delay(0)
    assert report["fast_path"] is True
    assert vllm.engine_dead is None and results == [200], (vllm.engine_dead, results)
    sleeps = [running for _t, call, running in vllm.calls if call == "sleep"]
    assert sleeps == [0], "vLLM was put to sleep once, with no request running"
    problems = settled(lab, "ollama", "level1")
    assert not problems, problems
    assert pod_uids(lab, "vllm") == uids, "the fast path deleted or replaced vLLM's pod"
    assert lab.route_label() == ["off"]
    kube.wait_for(lambda: not lab.vllm_endpoints(), timeout=30, what="the Endpoints controller to drop vLLM's pod")
    assert vllm.sleep_level == 1 and vllm.gpu_memory_mib == vllm.context_mib < awake_mib  # emulated memory
    phases = [p["name"] for p in report["phases"]]
    assert "drain vLLM (vllm:num_requests_running == 0)" in phases

    ollama_uids = pod_uids(lab, "ollama")
    again = drive_swap(lab, "ollama", vllm.url)  # already there: nothing to do, vLLM's sleep is no reason to swap
    assert again["noop"] is True

    vllm.requests.clear()
    report = drive_swap(lab, f"vllm:{MODEL}", vllm.url)
    assert report["fast_path"] is True
    problems = settled(lab, "vllm", "")
    assert not problems, problems
    assert pod_uids(lab, "vllm") == uids, "the fast path deleted or replaced vLLM's pod"
    assert ollama_uids and not lab.pods("ollama"), "Ollama was stopped"
    assert vllm.sleep_level == 0 and vllm.gpu_memory_mib == awake_mib
    warmups = [r for r in vllm.requests if r["path"] == "/v1/chat/completions"]
    assert [r["model"] for r in warmups] == [MODEL], "one warm-up request before vLLM is routed again"
    assert lab.route_label() == ["on"]
    kube.wait_for(lab.vllm_endpoints, timeout=30, what="the Endpoints controller to list vLLM's pod again")
    assert vllm.engine_dead is None


def test_a_wake_that_fails_rolls_back_to_ollama_with_vllm_asleep_and_a_game_still_stops_vllm(kube, tmp_path, vllm):
    lab = SleepLab(kube, tmp_path, owner="vllm", model=MODEL).setup()
    uids = pod_uids(lab, "vllm")
    drive_swap(lab, "ollama", vllm.url)
    vllm.fail_wake = True  # POST /wake_up answers 500 (vllm-project/vllm#36753)
    with pytest.raises(gs.SwapError, match=r"answered POST /wake_up with 500"):
        drive_swap(lab, f"vllm:{MODEL}", vllm.url)
    problems = settled(lab, "ollama", "level1")
    assert not problems, problems
    assert pod_uids(lab, "vllm") == uids and lab.route_label() == ["off"]
    assert vllm.sleep_level == 1 and vllm.engine_dead is None
    assert not [r for r in vllm.requests if r["path"] == "/v1/chat/completions"], "no request reached the sleeping vLLM"

    vllm.fail_wake = False
    report = drive_swap(lab, "none", vllm.url)  # a game: vLLM's CUDA context must go too, so its pod stops
    assert report["fast_path"] is False
    problems = settled(lab, "none", "")
    assert not problems or problems == ["none not Ready"], problems
    assert lab.replicas() == {"ollama": 0, "vllm": 0} and not lab.pods("vllm")


def test_a_run_that_dies_after_vllm_slept_is_rolled_back_by_the_next_run(kube, tmp_path, vllm):
    """The run dies after stop (vLLM asleep and out of its Service, intent phase stopped); the next run's recovery
    (step begin, as deploy's recover entry point and the swap service run it) wakes vLLM and routes it again. A
    recovering run that cannot reach vLLM (no vllm_url: the controller does not reach the ClusterIP) restarts it."""
    lab = SleepLab(kube, tmp_path, owner="vllm", model=MODEL).setup()
    uids = pod_uids(lab, "vllm")
    params = lab.params(vllm.url, lease_duration=2)  # the dead run's lock expires 2 s after its last renewal
    cluster = lab.cluster()
    begun = gs.Swap(cluster, params).begin("ollama")
    gs.Swap(cluster, dict(params, holder=begun["holder"])).stop(begun["node"])
    assert lab.state()["intent_phase"] == "stopped" and vllm.sleep_level == 1 and lab.route_label() == ["off"]
    # ... the run dies here. The next run recovers before it does anything else:
    report = gs.Swap(cluster, lab.params(vllm.url)).begin(f"vllm:{MODEL}")
    assert report["recovered"]["action"] == "rollback" and report["noop"] is True
    problems = settled(lab, "vllm", "")
    assert not problems, problems
    assert vllm.sleep_level == 0 and lab.route_label() == ["on"] and pod_uids(lab, "vllm") == uids

    begun = gs.Swap(cluster, params).begin("ollama")
    gs.Swap(cluster, dict(params, holder=begun["holder"])).stop(begun["node"])
    # recovered from where vLLM cannot be reached: its Service's ClusterIP (the stand-in is not behind it)
    report = gs.Swap(cluster, lab.params("", delete_timeout=60)).begin(f"vllm:{MODEL}")
    assert report["recovered"]["action"] == "rollback"
    problems = settled(lab, "vllm", "")
    assert not problems, problems
    assert pod_uids(lab, "vllm") != uids, "vLLM out of reach is restarted (a fresh vLLM is awake), not left asleep"
    assert any("vLLM could not be woken" in note for note in report["notes"]), report["notes"]


def test_the_playbook_takes_the_fast_path_where_it_reaches_vllm_and_the_usual_path_where_it_does_not(kube, tmp_path,
                                                                                                      vllm):
    """ansible-playbook gpu_swap (the role's tasks, the module's steps on the controller, nvidia-smi's stand-in): with
    gpu_swap_vllm_url vLLM sleeps and wakes; without it the controller cannot reach the ClusterIP, so the swap stops
    and starts vLLM as usual and says why."""
    lab = SleepLab(kube, tmp_path, owner="vllm", model=MODEL).setup()
    uids = pod_uids(lab, "vllm")
    run = lab.swap("ollama", gpu_swap_vllm_url=vllm.url)
    assert "POST /sleep?level=1" in run.stdout and "drain vLLM" in run.stdout
    problems = settled(lab, "ollama", "level1")
    assert not problems, problems
    run = lab.swap(f"vllm:{MODEL}", gpu_swap_vllm_url=vllm.url)
    assert "wake vLLM" in run.stdout
    problems = settled(lab, "vllm", "")
    assert not problems, problems
    assert pod_uids(lab, "vllm") == uids and vllm.sleep_level == 0

    run = lab.swap("ollama")  # no gpu_swap_vllm_url: the ClusterIP does not answer here
    assert "this hand-over takes the usual path: this run cannot reach vLLM's sleep endpoints" in run.stdout
    problems = settled(lab, "ollama", "")
    assert not problems, problems
    assert not lab.pods("vllm") and vllm.sleep_level == 0, "vLLM was stopped, not put to sleep"


def test_the_vllm_role_renders_sleep_mode_and_refuses_it_without_two_gpu_slots(tmp_path):
    """The vllm role in state rendered (real ansible-playbook, the example lab's inventory): what sleep mode adds to
    the Deployment and the Service, the swap's annotation and route label by the names gpu_swap reads; and the early
    refusal naming both variables."""
    from tests.support.deploy_render import load_objects, render_roles  # pylint: disable=import-outside-toplevel
    objs = load_objects(render_roles(tmp_path / "on", ["vllm"], {"vllm_sleep_mode": True,
                                                                 "gpu_runtime_time_slicing_replicas": 2}))
    dep = next(o for o in objs if o["kind"] == "Deployment")
    svc = next(o for o in objs if o["kind"] == "Service")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["metadata"]["annotations"][gs.SLEEP_ANNOTATION] == "level1"
    assert "--enable-sleep-mode" in container["args"]
    assert {"name": "VLLM_SERVER_DEV_MODE", "value": "1"} in container["env"]
    assert container["resources"]["requests"]["memory"] == "24576Mi"  # 8Gi + vllm_sleep_host_memory 16Gi
    assert container["resources"]["limits"]["memory"] == "49152Mi"    # 32Gi + 16Gi
    assert dep["spec"]["template"]["metadata"]["labels"][gs.ROUTE_LABEL] == "on"
    assert gs.ROUTE_LABEL not in dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"][gs.ROUTE_LABEL] == "on"

    off = load_objects(render_roles(tmp_path / "off", ["vllm"]))
    dep = next(o for o in off if o["kind"] == "Deployment")
    assert gs.SLEEP_ANNOTATION not in dep["metadata"]["annotations"]
    assert "--enable-sleep-mode" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert gs.ROUTE_LABEL not in next(o for o in off if o["kind"] == "Service")["spec"]["selector"]

    output = render_roles(tmp_path / "refused", ["vllm"], {"vllm_sleep_mode": True}, expect_failure=True)
    assert "vllm_sleep_mode: true needs the GPU time-sliced into at least 2 slots" in output
    assert "gpu_runtime_time_slicing_replicas is 0: set gpu_runtime_time_slicing_replicas: 2" in output


def test_deploy_keeps_a_sleeping_vllm_at_one_replica(tmp_path):
    """The record says Ollama owns the GPU and vLLM sleeps (gpu_swap's fast path): the vllm role keeps its replica, so
    a deploy does not stop the sleeping vLLM (its next wake would become a reload)."""
    from tests.support.deploy_render import load_objects, render_roles  # pylint: disable=import-outside-toplevel
    for state, replicas in (({"owner": "ollama", "model": "", "node": "gpu-box", "vllm_asleep": "level1"}, 1),
                            ({"owner": "ollama", "model": "", "node": "gpu-box", "vllm_asleep": ""}, 0),
                            ({"owner": "vllm", "model": MODEL, "node": "gpu-box"}, 1)):
        objs = load_objects(render_roles(tmp_path / str(len(state)) / str(replicas), ["vllm"], {
            "vllm_sleep_mode": True, "gpu_runtime_time_slicing_replicas": 2, "lab_gpu_state": state}))
        assert next(o for o in objs if o["kind"] == "Deployment")["spec"]["replicas"] == replicas, state


def test_the_vllm_stand_in_speaks_vllms_names_and_gates_its_endpoints_as_vllm_does():
    """What the swap relies on in the stand-in, held to upstream facts: the gauges it exposes are vLLM's own names
    (tests/functional/data/metric_names.yml, read from vllm/v1/metrics/loggers.py); without VLLM_SERVER_DEV_MODE the
    sleep routes are not registered (404); without --enable-sleep-mode a sleep answers 200 but frees nothing."""
    import pathlib  # pylint: disable=import-outside-toplevel

    import yaml  # pylint: disable=import-outside-toplevel
    from ansible_collections.ailab.gpu_lab.plugins.module_utils.gpu_swap import http_call, metric_value
    names = yaml.safe_load((pathlib.Path(__file__).parent / "data" / "metric_names.yml").read_text())["vllm"]["gauges"]
    with VLLMBackend(served_models=[MODEL]) as server:
        text = http_call("GET", server.url + "/metrics")[1]
        exposed = sorted(set(line.split("{")[0] for line in text.splitlines() if line and not line.startswith("#")))
        assert exposed and set(exposed) <= set(names), (exposed, names)
        assert metric_value(text, gs.RUNNING_METRIC) == 0.0
    with VLLMBackend(served_models=[MODEL], dev_mode=False) as server:
        assert http_call("POST", server.url + "/sleep?level=1") == (404, '{"detail": "Not Found"}')
        assert http_call("GET", server.url + "/is_sleeping")[0] == 404
    with VLLMBackend(served_models=[MODEL], sleep_mode=False) as server:
        before = server.gpu_memory_mib
        assert http_call("POST", server.url + "/sleep?level=1") == (200, "")
        assert http_call("GET", server.url + "/is_sleeping") == (200, '{"is_sleeping": true}')
        assert server.gpu_memory_mib == before  # nothing was in the CuMem pool: nothing freed
