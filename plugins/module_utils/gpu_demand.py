# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU follows the demand: the logic of the in-cluster swap service (docs/gpu_demand.md).

Plain Python (stdlib only), importable without Ansible. The service (roles/gpu_demand/files/gpu_demand_server.py,
on the LiteLLM image, this code mounted from a ConfigMap) runs it with a ServiceAccount bound to exactly the swap's
least-privilege RBAC (gpu_swap.rbac_rules). Three things ask it for the GPU:

* a request through the gateway (the LiteLLM pre-call hook asks ``Demand.ensure(alias)``): an ``on_demand`` alias
  whose backend does not hold the GPU hands it over, and the request is held up to ``hold_budget`` seconds;
* the idle return (``Demand.tick``): after ``idle_after`` seconds without a request for the owner's aliases the
  GPU goes to ``idle_owner``;
* gaming mode (``Demand.tick``): the host's GameMode signal (ConfigMap ``gpu-lab-state`` keys ``gaming`` and
  ``gaming_at``, docs/provision.md "Gaming mode") hands the GPU to none and, when the game ends, back.

Every hand-over is the playbook's swap: ``gpu_swap.Swap`` steps in ``gpu_swap.SEQUENCE`` order (``hand_over``), the
same record, intent, Lease, pre-flight, fail-fast waits and rollback. A playbook swap and an on-demand one never
overlap: whoever holds the Lease, the other is refused naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import subprocess
import threading
import time

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as cat
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_capacity as cap
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs

TRIGGERS = ("request", "idle", "gamemode")
# The policy's defaults (roles/gpu_demand/defaults/main.yml passes each; docs/gpu_swap.md explains them).
POLICY_DEFAULTS = {
    "hold_budget": 120,     # seconds a gateway request waits for its backend to get the GPU
    "residency": 300,       # seconds an owner keeps the GPU before a request may take it (0: no minimum)
    "idle_after": 0,        # seconds without a request for the owner's aliases before the idle return (0: never)
    "idle_owner": "none",   # where the GPU goes when idle: none, ollama, vllm or vllm:<alias>
    "retry_after": 30,      # the Retry-After of a 503 when no fallback can answer
    "poll_interval": 1.0,   # how often the service reads the record (gaming signal, idle return)
}
HOST_DEFAULTS = {"nvidia_smi_path": "", "reserved_mib": 1024, "timeout": 30, "sleep_residual_mib": 1536}


class DemandError(Exception):
    """A configuration the service cannot run with."""


# ---------------------------------------------------------------- what each alias is (derived once, at deploy)
def alias_table(models, routes=None):
    """``{alias: {target, embedding, on_demand, fallbacks}}`` from the catalog: ``target`` is the swap target that
    serves the alias (``vllm:<alias>``, ``ollama``) or None for a hosted model; ``fallbacks`` the alias's route
    (else ``gpu_lab_routes.default``), as LiteLLM's router gets them."""
    entries = cat.validate_catalog(models or [], routes)
    routes = routes or {}
    default = list(routes.get("default") or [])
    out = {}
    for entry in entries:
        target = {"vllm": "vllm:%s" % entry["name"], "ollama": "ollama"}.get(entry["backend"])
        out[entry["name"]] = {"target": target, "embedding": entry.get("mode") == "embedding",
                              "on_demand": bool(entry.get("on_demand")),
                              "fallbacks": list(routes.get(entry["name"]) or default)}
    return out


# The gateway side: the hook's module (roles/litellm/files/gpu_demand_hook.py, mounted beside LiteLLM's config)
# and the callback the litellm role adds to litellm_settings.callbacks when the component is on.
HOOK_FILE = "gpu_demand_hook.py"
HOOK_CALLBACK = "gpu_demand_hook.handler"
TOKEN_KEY = "GPU_DEMAND_TOKEN"   # the key of Secret litellm-env both the hook and the service read


def gateway_litellm_settings(settings):
    """LiteLLM's ``litellm_settings`` with the hook's callback added (the litellm role, when gpu_demand is on)."""
    out = dict(settings or {})
    callbacks = list(out.get("callbacks") or [])
    out["callbacks"] = callbacks + ([HOOK_CALLBACK] if HOOK_CALLBACK not in callbacks else [])
    return out


def service_config(models, routes, namespace, backends, swap=None, policy=None, host=None):
    """The service's config.json (the gpu_demand role renders it with filter ``gpu_demand_config``; tests start the
    service with the same function): every alias's target, on_demand and fallbacks from the catalog, the swap's
    parameters (``swap``: the gpu_swap role's names without the prefix), the policy and the host check. Nothing secret:
    the token comes from the environment (Secret key GPU_DEMAND_TOKEN). Raises DemandError on a bad policy."""
    swap = dict(swap or {})
    swap["models"] = list(models or [])
    if (backends or {}).get("vllm"):
        swap.setdefault("vllm_url", backends["vllm"])   # the fast path's sleep/wake (vLLM sleep mode) goes there too
    swap.setdefault("ready_timeout", 0)
    config = {"namespace": namespace, "aliases": alias_table(models, routes), "swap": swap,
              "policy": dict(POLICY_DEFAULTS, **(policy or {})), "backends": dict(backends or {}),
              "host": dict(HOST_DEFAULTS, **(host or {}))}
    problems = policy_problems(config["policy"], swap["models"])
    if problems:
        raise DemandError("; ".join(problems))
    return config


def policy_problems(policy, models):
    """Sentences naming each bad policy value (gpu_demand_* variables), [] when fine."""
    errors = []
    try:
        gs.parse_target(policy["idle_owner"], models)
    except gs.SwapError as exc:
        errors.append("gpu_demand_idle_owner: %s" % exc)
    for key in ("hold_budget", "residency", "idle_after", "retry_after", "poll_interval"):
        value = policy[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            errors.append("gpu_demand_%s: %r is not a number of seconds >= 0" % (key, value))
    return errors


def holds(data, target):
    """Whether the record says ``target`` (``vllm:<alias>``, ``ollama``) holds the GPU, with no swap in progress."""
    if not target or (data or {}).get("intent_phase"):
        return False
    owner = gs.owner_of(data)
    return bool(owner) and gs.target_name(owner) == target


def decide(entry, data, now, policy, busy=None):
    """What a request for an alias gets, from the record alone (pure): ``(action, reason, retry_after)``.

    ``action``: ``serve`` (send it as it is), ``swap`` (hand the GPU over first) or ``refuse`` (no hand-over now:
    a fallback answers, or 503). ``busy``: the target of this service's running hand-over, if any."""
    if entry is None:
        return "serve", "not an alias of the catalog (LiteLLM answers it)", 0
    if entry["embedding"]:
        return "serve", "an embedding request never hands the GPU over", 0
    if not entry["target"]:
        return "serve", "a hosted model needs no GPU", 0
    if holds(data, entry["target"]):
        return "serve", "%s holds the GPU" % entry["target"], 0
    if not entry["on_demand"]:
        return "refuse", "on_demand is off for this alias: the GPU moves only with the gpu_swap playbook", 0
    if data.get("gaming") == "on":
        return "refuse", "gaming mode holds the GPU (since %s): no request takes it back" % data.get("gaming_at"), \
            policy["retry_after"]
    if busy and busy != entry["target"]:
        return "refuse", "a hand-over to %s is in progress" % busy, policy["retry_after"]
    if data.get("intent_phase") and busy != entry["target"]:
        return "refuse", "a swap %s -> %s (holder %s) is in progress" % (
            data.get("intent_from"), data.get("intent_to"), data.get("intent_holder")), policy["retry_after"]
    owner = gs.owner_of(data) or {"owner": "none"}
    since = gs.parse_time(data.get("owner_since")) if data.get("owner_since") else None
    if owner["owner"] != "none" and since is not None and policy["residency"] > 0:
        left = since + policy["residency"] - now
        if left > 0:
            return "refuse", "%s holds the GPU since %s and keeps it for the minimum residency of %ss" % (
                gs.target_name(owner), data.get("owner_since"), policy["residency"]), int(left) + 1
    return "swap", "%s -> %s" % (gs.target_name(owner), entry["target"]), 0


def servable_fallback(table, entry, data):
    """The first fallback of ``entry`` that can answer now without a hand-over (hosted, or its backend holds the
    GPU), or None."""
    for alias in (entry or {}).get("fallbacks") or []:
        other = table.get(alias)
        if other is not None and (not other["target"] or holds(data, other["target"])):
            return alias
    return None


# ---------------------------------------------------------------- the hand-over, in the swap's own order
def http_json(method, url, body=None, timeout=30.0):
    """One JSON request to an in-cluster Service (``gpu_swap.http_call``, the swap core's own HTTP): ``(status, parsed
    body or text)``; raises OSError when the server cannot be reached."""
    status, text = gs.http_call(method, url, body, timeout)
    if status is None:
        raise OSError(text)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def ollama_unload(url, timeout, http=http_json, clock=time.monotonic, sleep=time.sleep):
    """Unload every model Ollama has loaded (``keep_alive: 0``) and wait until ``/api/ps`` lists none; the message
    of what went wrong, or None (the stop frees the memory anyway: the swap notes it and goes on)."""
    try:
        status, body = http("GET", url + "/api/ps", timeout=10)
        loaded = [m.get("name") or m.get("model") for m in (body or {}).get("models") or []] if status == 200 else []
        for name in loaded:
            http("POST", url + "/api/generate", {"model": name, "keep_alive": 0, "stream": False}, timeout=30)
        deadline = clock() + timeout
        while loaded and clock() < deadline:
            sleep(0.5)
            status, body = http("GET", url + "/api/ps", timeout=10)
            loaded = [m.get("name") or m.get("model") for m in (body or {}).get("models") or []]
        return "still loaded after %ss: %s" % (timeout, ", ".join(loaded)) if loaded else None
    except (OSError, ValueError, AttributeError) as exc:
        return "Ollama at %s: %s" % (url, exc)


def backend_verifier(url, owner, model, timeout, http=http_json):
    """``Swap.start``'s ``verify``: one 1-token request straight to the new owner's Service (not through the gateway:
    the gateway is holding the very requests waiting for this hand-over)."""
    if owner == "vllm":
        path, body = "/v1/chat/completions", {"model": model, "max_tokens": 1,
                                              "messages": [{"role": "user", "content": "gpu_demand check"}]}
    else:
        path, body = "/api/chat", {"model": model, "stream": False, "options": {"num_predict": 1},
                                   "messages": [{"role": "user", "content": "gpu_demand check"}]}

    def verify(swap):
        last = []

        def answered():
            try:
                status, answer = http("POST", url + path, body, timeout=30)
            except OSError as exc:
                last[:] = ["cannot reach %s: %s" % (url, exc)]
                return False
            last[:] = ["HTTP %s: %s" % (status, str(answer)[:200])]
            return status == 200
        waited = swap.wait(answered, timeout, lambda: "%s at %s did not answer a 1-token request to %s: %s" % (
            owner, url, model, last[0] if last else "no answer"))
        return (last[0] if last else ""), waited
    return verify


def host_check(swap, host, run=run_command, fast_path=False):
    """The host-check step: the GPU memory on the node, from nvidia-smi in this pod (the NVIDIA runtime mounts it,
    no GPU requested), must be free but ``reserved_mib`` (and, on the sleep-mode fast path, the sleeping vLLM's CUDA
    context, ``sleep_residual_mib``, as the role allows it); it sees what Kubernetes cannot (a game)."""
    if not host.get("nvidia_smi_path"):
        swap.notes.append("no host check: nvidia_smi_path is not set (gpu_demand_host_check: false)")
        return
    t0 = swap.clock()
    params = {"sources": ["nvidia-smi"], "nvidia_smi_path": host["nvidia_smi_path"]}
    try:
        report, _failure = cap.collect(params, run_command=run, sleep=swap.sleep, clock=swap.clock)
        gpus = report["host"]["gpus"]
        allowed = int(host["reserved_mib"]) + (int(host["sleep_residual_mib"]) if fast_path else 0)
        required = (min(g["memory_total_mib"] for g in gpus) - allowed) if gpus else 1
        report, failure = cap.collect(dict(params, require_host_free_mib=required, wait_timeout=host["timeout"],
                                           wait_sleep=1), run_command=run, sleep=swap.sleep, clock=swap.clock)
    except cap.CapacityError as exc:
        raise gs.SwapError(str(exc))
    if failure:
        raise gs.SwapError(failure)
    swap.phase("require the GPU memory released on the host (nvidia-smi)", t0)


def _pull(swap, begin, ctx):
    ctx["notes"].append("no download: deploy pulled every vLLM model of the catalog (vllm role); a target whose "
                        "weights are missing fails to start and is rolled back")


def _unload(swap, begin, ctx):
    if begin.get("ollama_unload") and ctx["backends"].get("ollama"):
        ctx["unload_error"] = ctx["ollama_unload"](ctx["backends"]["ollama"])


def _stop(swap, begin, ctx):
    swap.stop(begin["node"], unload_error=ctx.get("unload_error"))


def _host_check(swap, begin, ctx):
    ctx["host_check"](swap, bool(begin.get("fast_path")))


def _start(swap, begin, ctx):
    target = gs.parse_owner_text(begin["target"])
    verify = None
    if target["owner"] != "none" and ctx["backends"].get(target["owner"]):
        alias = gs.probe_alias(swap.models, target)
        model = cat.served_name(swap.models, alias) if target["owner"] == "vllm" else \
            (cat.find_model(swap.models, alias) or {}).get("source", alias)
        verify = ctx["verifier"](ctx["backends"][target["owner"]], target["owner"], model)
    ctx["result"] = swap.start(begin["target"], begin["node"], multi_node=begin.get("multi_node", False), verify=verify)


# Every step of gpu_swap.SEQUENCE after begin, as the service runs it (the role runs the same rows as tasks); a unit
# test holds this to SEQUENCE, so a step added there cannot be skipped here.
STEPS = {"pull": _pull, "unload": _unload, "stop": _stop, "host-check": _host_check, "start": _start}


def hand_over(cluster, params, target, trigger, backends, host, clock=time.monotonic, wall=time.time,
              sleep=time.sleep, http=http_json, run=run_command):
    """One swap to ``target`` by ``trigger``: begin, then every SEQUENCE step; any failure rolls back (the role's
    rescue). Returns ``{"ok", "noop", "from", "to", "seconds", "phases", "notes", "error", "restored"}``."""
    host = dict(HOST_DEFAULTS, **(host or {}))
    swap = gs.Swap(cluster, dict(params, trigger=trigger, verify_gateway=False), clock=clock, wall=wall, sleep=sleep)
    t0 = clock()
    begin = swap.begin(target)
    out = {"ok": True, "noop": bool(begin["noop"]), "from": begin["current"], "to": begin["target"], "error": None,
           "restored": None, "trigger": trigger}
    if not begin["noop"]:
        ctx = {"backends": backends, "notes": swap.notes,
               "ollama_unload": lambda url: ollama_unload(url, float(params.get("unload_timeout") or 60), http=http,
                                                          clock=clock, sleep=sleep),
               "host_check": lambda s, fast: host_check(s, host, run=run, fast_path=fast),
               "verifier": lambda url, owner, model: backend_verifier(
                   url, owner, model, float(params.get("verify_timeout") or 120), http=http)}
        step = None
        try:
            for row in gs.SEQUENCE:
                step = row["step"]
                if step in STEPS:
                    STEPS[step](swap, begin, ctx)
        except (gs.SwapError, OSError, ValueError) as exc:
            out.update(ok=False, error="%s (step %s)" % (exc, step))
            try:
                rolled = swap.rollback("gpu_demand step %s failed: %s" % (step, exc))
                out["restored"] = rolled.get("restored")
            except (gs.SwapError, OSError, ValueError) as again:
                out["error"] += "; the rollback ALSO failed: %s (the intent stays recorded: the next swap or deploy " \
                                "rolls it back)" % again
    out.update(seconds=round(clock() - t0, 3), phases=swap.phases, notes=swap.notes)
    return out


# ---------------------------------------------------------------- the service's state
class _Job(object):
    def __init__(self, target, trigger):
        self.target = target
        self.trigger = trigger
        self.done = threading.Event()
        self.result = None


class Demand(object):
    """The service: ``ensure`` for the gateway's hook (many threads), ``tick`` for the poll loop (one thread).

    ``config``: {namespace, aliases (alias_table), swap (gpu_swap parameters: models, deployments, timeouts),
    policy (POLICY_DEFAULTS), backends {ollama, vllm: in-cluster URL}, host (HOST_DEFAULTS)}. ``observe(kind, **labels)``
    receives ``swap`` (from, to, trigger, result, seconds), ``hold`` (outcome, seconds) and ``owner`` (owner)."""

    def __init__(self, cluster, config, observe=None, clock=time.monotonic, wall=time.time, sleep=time.sleep,
                 http=http_json, run=run_command):
        self.cluster = cluster
        self.aliases = config["aliases"]
        self.params = dict({"ready_timeout": 0}, **(config.get("swap") or {}))
        self.policy = dict(POLICY_DEFAULTS, **(config.get("policy") or {}))
        self.backends = dict(config.get("backends") or {})
        self.host = dict(HOST_DEFAULTS, **(config.get("host") or {}))
        self.observe = observe or (lambda kind, **labels: None)
        self.clock, self.wall, self.sleep, self.http, self.run = clock, wall, sleep, http, run
        self._lock = threading.Lock()
        self._job = None
        self._activity = {}          # target -> wall time of the last request served by it
        self._gaming_seen = None     # (gaming, gaming_at) of the last gaming signal handled
        self._retry_at = 0.0
        problems = policy_problems(self.policy, self.params.get("models") or [])
        if problems:
            raise DemandError("; ".join(problems))

    # -- hand-overs, one at a time
    def _run(self, job):
        try:
            result = hand_over(self.cluster, self.params, job.target, job.trigger, self.backends, self.host,
                               clock=self.clock, wall=self.wall, sleep=self.sleep, http=self.http, run=self.run)
        except (gs.SwapError, OSError, ValueError) as exc:   # refused before anything changed (lock, pre-flight)
            result = {"ok": False, "refused": True, "noop": False, "error": str(exc), "from": None, "to": job.target,
                      "seconds": 0.0, "trigger": job.trigger}
        outcome = "refused" if result.get("refused") else ("ok" if result["ok"] else "failed")
        if not result.get("noop"):
            self.observe("swap", trigger=job.trigger, result=outcome, seconds=result.get("seconds", 0.0),
                         **{"from": result.get("from") or "unknown", "to": job.target})
        if result["ok"]:
            self._activity[job.target] = self.wall()
            self.observe("owner", owner=gs.parse_owner_text(job.target)["owner"])
        job.result = result
        job.done.set()
        with self._lock:
            if self._job is job:
                self._job = None
        return result

    def start(self, target, trigger, background=True):
        """Start (or join) the hand-over to ``target``; returns the job, or None when another target's runs."""
        with self._lock:
            if self._job is not None:
                return self._job if self._job.target == target else None
            job = self._job = _Job(target, trigger)
        if background:
            threading.Thread(target=self._run, args=(job,), name="hand-over-%s" % target, daemon=True).start()
        else:
            self._run(job)
        return job

    def busy(self):
        job = self._job
        return job.target if job is not None else None

    # -- the gateway's question
    def ensure(self, alias):
        """Decide, and hold the caller up to hold_budget while its backend gets the GPU. Returns
        ``{"action": serve|fallback|unavailable, "model", "use", "reason", "retry_after", "waited"}``."""
        t0 = self.clock()
        entry = self.aliases.get(alias)
        data = self.cluster.state()[0]
        action, reason, retry = decide(entry, data, self.wall(), self.policy, busy=self.busy())
        if action == "serve":
            if entry and entry["target"]:
                self._activity[entry["target"]] = self.wall()
            return {"action": "serve", "model": alias, "reason": reason, "waited": 0.0}
        if action == "swap":
            job = self.start(entry["target"], "request")
            if job is None:
                action, reason, retry = "refuse", "a hand-over to %s is in progress" % self.busy(), \
                    self.policy["retry_after"]
            elif job.done.wait(self.policy["hold_budget"]) and job.result["ok"]:
                waited = self.clock() - t0
                self.observe("hold", outcome="served", seconds=waited)
                return {"action": "serve", "model": alias, "reason": "handed over: %s" % reason,
                        "waited": round(waited, 3)}
            elif job.done.is_set():
                reason, retry = "the hand-over failed: %s" % job.result["error"], self.policy["retry_after"]
            else:
                reason, retry = "the hand-over to %s takes longer than the hold budget (%ss); it goes on" % (
                    entry["target"], self.policy["hold_budget"]), self.policy["retry_after"]
            data = self.cluster.state()[0]
        use = servable_fallback(self.aliases, entry, data)
        waited = self.clock() - t0
        outcome = "fallback" if use else "unavailable"
        if action == "swap":
            self.observe("hold", outcome=outcome, seconds=waited)
        elif entry is not None and entry["on_demand"]:   # refused: gaming, residency, another hand-over
            self.observe("swap", trigger="request", result="refused", seconds=0.0,
                         **{"from": gs.target_name(gs.owner_of(data) or {"owner": "none"}), "to": entry["target"]})
        return {"action": outcome, "model": alias, "use": use, "reason": reason, "retry_after": int(retry or 0),
                "waited": round(waited, 3)}

    # -- the poll loop: owner gauge, gaming signal, idle return
    def tick(self):
        """One look at the record; starts (and waits for) a gaming or idle hand-over when one is due. Returns what
        it did (for logs and tests): None, or the hand-over's result."""
        data = self.cluster.state()[0]
        owner = gs.owner_of(data) or {"owner": "none", "model": ""}
        self.observe("owner", owner=owner["owner"])
        if data.get("intent_phase") or self._job is not None or self.wall() < self._retry_at:
            return None
        gaming, at = data.get("gaming"), data.get("gaming_at")
        if gaming in ("on", "off") and at and (gaming, at) != self._gaming_seen:
            return self._gaming(data, gaming, at, owner)
        idle_after = self.policy["idle_after"]
        if idle_after and gaming != "on":
            target = gs.target_name(gs.parse_target(self.policy["idle_owner"], self.params.get("models") or [], owner,
                                                    self.params.get("default_vllm_model")))
            current = gs.target_name(owner)
            if current != target:
                since = gs.parse_time(data.get("owner_since")) if data.get("owner_since") else None
                last = max(self._activity.get(current, 0.0), since or 0.0)
                if not last:          # nothing known (a record from before owner_since): count from now
                    self._activity[current] = last = self.wall()
                if self.wall() - last >= idle_after:
                    return self._finish(self.start(target, "idle", background=False))
        return None

    def _gaming(self, data, gaming, at, owner):
        if gaming == "on":
            if owner["owner"] != "none" and not data.get("gaming_return_to"):
                self.cluster.write_state({"gaming_return_to": gs.target_name(owner)})
            result = self._finish(self.start("none", "gamemode", background=False))
        else:
            back = data.get("gaming_return_to")
            result = None
            if back:
                result = self._finish(self.start(back, "gamemode", background=False))
                if result and result["ok"]:
                    self.cluster.write_state({"gaming_return_to": None})
        if result is None or result["ok"]:
            self._gaming_seen = (gaming, at)
        return result

    def _finish(self, job):
        result = job.result if job is not None else None
        if result is not None and not result["ok"]:
            self._retry_at = self.wall() + self.policy["retry_after"]
        return result

    def status(self):
        data = self.cluster.state()[0]
        owner = gs.owner_of(data) or {"owner": "none", "model": ""}
        return {"owner": gs.target_name(owner), "owner_since": data.get("owner_since"),
                "owner_trigger": data.get("owner_trigger"), "gaming": data.get("gaming", "off"),
                "gaming_return_to": data.get("gaming_return_to"), "busy": self.busy(), "policy": self.policy,
                "on_demand": sorted(a for a, e in self.aliases.items() if e["on_demand"])}
