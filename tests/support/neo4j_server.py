"""The REAL Neo4j community server for the tests: the jars of the neo4j role's image version from Maven Central
(tools/neo4j-server.sh), run on the installed Java 17 with auth on, HTTP and Bolt on free loopback ports.

Nothing stands in: the server is Neo4j's own ``org.neo4j.server.CommunityEntryPoint`` (what the image's
``neo4j console`` runs) and the initial password is set as the image's entrypoint sets NEO4J_AUTH, with
``neo4j-admin dbms set-initial-password`` (``org.neo4j.cli.AdminTool``) before the first start.

Use: ``Neo4jServer(directory).start()`` (the ``neo4j`` fixture in tests/conftest.py), or
``python -m tests.support.servers start neo4j --dir DIR`` -> DIR/neo4j.url (JSON: http, bolt, user, password).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time

from tests.support.serve import ServerProcess, free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "neo4j"


def server_lib():
    """The server's jar directory, fetched once (tools/neo4j-server.sh prints it)."""
    out = subprocess.run(["bash", os.path.join(REPO, "tools", "neo4j-server.sh")], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return out.stdout.strip()


class Neo4jServer(ServerProcess):
    name = "Neo4j"
    health_path = "/db/neo4j/tx/commit"   # answers an authenticated statement (ready())
    poll_interval = 0.2
    stop_grace = 30.0

    def __init__(self, directory, password="lab-test-password-1"):
        self.directory = os.path.abspath(directory)
        self.home = os.path.join(self.directory, "home")
        super().__init__({"NEO4J_HOME": self.home, "NEO4J_CONF": os.path.join(self.home, "conf")},
                         startup_timeout=180.0, log_path=os.path.join(self.directory, "neo4j-server.log"))
        self.password = password
        self.bolt_port = free_port()
        self.startup_seconds = None
        self._classpath = None

    @property
    def http_port(self):
        return self.port

    def info(self):
        return {"http": self.url, "bolt": "bolt://127.0.0.1:%d" % self.bolt_port, "user": USER,
                "password": self.password, "startup_seconds": self.startup_seconds}

    def _conf(self, home):
        settings = {
            "server.directories.data": os.path.join(home, "data"),
            "server.directories.logs": os.path.join(home, "logs"),
            "server.directories.run": os.path.join(home, "run"),
            "server.directories.import": os.path.join(home, "import"),
            "server.http.listen_address": "127.0.0.1:%d" % self.http_port,
            "server.bolt.listen_address": "127.0.0.1:%d" % self.bolt_port,
            "server.https.enabled": "false",
            "dbms.security.auth_enabled": "true",
            "server.memory.heap.initial_size": "256m",
            "server.memory.heap.max_size": "512m",
            "server.memory.pagecache.size": "64m",
            "dbms.usage_report.enabled": "false",
        }
        os.makedirs(os.path.join(home, "conf"), exist_ok=True)
        with open(os.path.join(home, "conf", "neo4j.conf"), "w", encoding="utf-8") as handle:
            handle.writelines("%s=%s\n" % item for item in settings.items())

    def command(self):
        return ["java", "-Xss1m", "-XX:+UseSerialGC", "-cp", self._classpath, "org.neo4j.server.CommunityEntryPoint",
                "--home-dir=" + self.home, "--config-dir=" + os.path.join(self.home, "conf")]

    def start(self, wait=True):
        """Set the initial password (as the image's entrypoint does for NEO4J_AUTH), then start the server."""
        self._classpath = os.path.join(server_lib(), "*")
        self._conf(self.home)
        began = time.monotonic()
        subprocess.run(["java", "-cp", self._classpath, "org.neo4j.cli.AdminTool", "dbms", "set-initial-password",
                        self.password], env=self._env(), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        super().start(wait)
        self.startup_seconds = round(time.monotonic() - began, 1)
        return self

    def ready(self):
        """Neo4j answers an authenticated statement on its HTTP API (what the schema module calls)."""
        token = base64.b64encode(("%s:%s" % (USER, self.password)).encode()).decode()
        status, body = self.post(self.health_path, {"statements": [{"statement": "RETURN 1"}]},
                                 headers={"Authorization": "Basic " + token}, timeout=2)
        return status == 200 and isinstance(body, dict) and not body.get("errors")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--password", default="lab-test-password-1")
    args = parser.parse_args()
    # servers.py stop sends SIGTERM: leave the wait below (stopping Neo4j from the handler itself would wait for the
    # process a second time while the first wait holds Popen's lock), then stop the server on the way out.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    server = Neo4jServer(args.dir, args.password).start()
    try:
        with open(os.path.join(args.dir, "neo4j.url.tmp"), "w", encoding="utf-8") as handle:
            json.dump(server.info(), handle)
        os.replace(os.path.join(args.dir, "neo4j.url.tmp"), os.path.join(args.dir, "neo4j.url"))
        server.proc.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
