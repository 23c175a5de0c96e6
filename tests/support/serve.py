"""Run a started test server in the foreground until SIGTERM/SIGINT (the CLI entry of each server)."""

from __future__ import annotations

import signal
import threading


def run_in_foreground(server, banner, port_file=None):
    """Write the bound port to ``port_file`` (if given), print ``banner``, wait for a signal, stop ``server``."""
    if port_file:
        with open(port_file, "w", encoding="utf-8") as handle:
            handle.write(str(server.port))
    print(banner, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0
