# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-demand swap service (docs/gpu_demand.md): HTTP in front of module_utils/gpu_demand.py.

Runs in the lab on the LiteLLM image (Python, prometheus_client), with the collection's module_utils mounted from
a ConfigMap under /opt/gpu-demand/ansible_collections/ailab/gpu_lab/plugins/module_utils and its ServiceAccount's
token (in-cluster auth, kube_client). Endpoints, on one port:

  POST /v1/ensure   {"model": "<alias>"}  -> {"action": serve|fallback|unavailable, "use", "reason", "retry_after"}
                    (Authorization: Bearer $GPU_DEMAND_TOKEN: the gateway's hook; held up to the hold budget)
  GET  /v1/status   the owner, gaming mode, the policy
  GET  /metrics     gpu_lab_swaps_total, gpu_lab_swap_duration_seconds, gpu_lab_swap_hold_seconds, gpu_lab_gpu_owner
  GET  /healthz     200 once the record was read

A background loop reads the record every poll_interval: the gaming signal and the idle return (Demand.tick).
"""

import argparse
import hmac
import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_demand as gd
from ansible_collections.ailab.gpu_lab.plugins.module_utils import gpu_swap as gs
from ansible_collections.ailab.gpu_lab.plugins.module_utils import kube_client as kc

LOG = logging.getLogger("gpu-demand")
SWAP_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
HOLD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


def metrics():
    """The service's metrics (names in docs/gpu_swap.md; the monitoring role's alert and panel read them)."""
    registry = CollectorRegistry()
    swaps = Counter("gpu_lab_swaps", "GPU hand-overs by the on-demand service, by from, to, trigger and result",
                    ["from", "to", "trigger", "result"], registry=registry)
    duration = Histogram("gpu_lab_swap_duration_seconds", "Seconds a successful hand-over took",
                         ["from", "to", "trigger"], buckets=SWAP_BUCKETS, registry=registry)
    hold = Histogram("gpu_lab_swap_hold_seconds", "Seconds a gateway request was held for a hand-over",
                     ["outcome"], buckets=HOLD_BUCKETS, registry=registry)
    owner = Gauge("gpu_lab_gpu_owner", "1 for the GPU backend that holds the GPU (the record), 0 for the others",
                  ["owner"], registry=registry)

    def observe(kind, **labels):
        if kind == "swap":
            swaps.labels(labels["from"], labels["to"], labels["trigger"], labels["result"]).inc()
            if labels["result"] == "ok":
                duration.labels(labels["from"], labels["to"], labels["trigger"]).observe(labels["seconds"])
        elif kind == "hold":
            hold.labels(labels["outcome"]).observe(labels["seconds"])
        elif kind == "owner":
            for name in gs.OWNERS:
                owner.labels(name).set(1 if name == labels["owner"] else 0)
    return registry, observe


def handler(demand, registry, token):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request in the pod's log, at debug level
            LOG.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status, body, content_type="application/json"):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):  # noqa: N802 - http.server naming
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, {"ok": True})
            elif self.path == "/v1/status":
                self._send(200, demand.status())
            else:
                self._send(404, {"error": "no such endpoint: %s" % self.path})

        def do_POST(self):  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path != "/v1/ensure":
                self._send(404, {"error": "no such endpoint: %s" % self.path})
                return
            given = (self.headers.get("Authorization") or "").partition("Bearer ")[2].strip()
            if not token or not hmac.compare_digest(given.encode(), token.encode()):
                self._send(401, {"error": "a valid bearer token (Secret key GPU_DEMAND_TOKEN) is required"})
                return
            try:
                alias = json.loads(raw or b"{}")["model"]
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": "body must be JSON with the request's model alias: {\"model\": \"...\"}"})
                return
            try:
                answer = demand.ensure(alias)
            except (gs.SwapError, OSError) as exc:   # the record could not be read: serve as without the service
                answer = {"action": "serve", "model": alias, "reason": "the service cannot read the record: %s" % exc}
            LOG.info("ensure %s: %s (%s)", alias, answer["action"], answer.get("reason"))
            self._send(200, answer)
    return Handler


def loop(demand, halt):
    while not halt.is_set():
        try:
            result = demand.tick()
            if result:
                LOG.info("%s hand-over %s -> %s: %s", result.get("trigger"), result.get("from"), result.get("to"),
                         "ok" if result["ok"] else result["error"])
        except (gs.SwapError, OSError, ValueError) as exc:
            LOG.warning("poll: %s", exc)
        halt.wait(demand.policy["poll_interval"])


def build(config, sa_dir=kc.SA_DIR, environ=None):
    """The Demand of a config, connected in-cluster (or through $KUBECONFIG outside a pod, for debugging)."""
    registry, observe = metrics()
    params = {"kubeconfig": (environ or os.environ).get("KUBECONFIG")}
    cluster = gs.Cluster(kc.transport(params, environ=environ, sa_dir=sa_dir), config["namespace"],
                         retry_timeout=float(config.get("api_retry_timeout") or 30))
    return gd.Demand(cluster, config, observe=observe), registry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/gpu-demand/config.json")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sa-dir", default=kc.SA_DIR, help="ServiceAccount token directory (tests pass their own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("GPU_DEMAND_LOG", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    with open(args.config) as handle:
        config = json.load(handle)
    try:
        demand, registry = build(config, sa_dir=args.sa_dir)
        demand.cluster.state()
    except (gd.DemandError, gs.SwapError, kc.KubeError) as exc:
        LOG.error("cannot start: %s", exc)
        return 2
    token = os.environ.get("GPU_DEMAND_TOKEN", "")
    if not token:
        LOG.warning("GPU_DEMAND_TOKEN is empty: every /v1/ensure is refused (401); the gaming signal and the idle "
                    "return still work")
    halt = threading.Event()
    threading.Thread(target=loop, args=(demand, halt), name="poll", daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), handler(demand, registry, token))
    server.daemon_threads = True
    LOG.info("gpu-demand on %s:%s, namespace %s, on-demand aliases: %s", args.host, args.port, config["namespace"],
             ", ".join(demand.status()["on_demand"]) or "none")
    try:
        server.serve_forever()
    finally:
        halt.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
