"""Module ailab.gpu_lab.neo4j_schema and role ailab.gpu_lab.neo4j through real Ansible against a REAL Neo4j
community server.

What is real: Neo4j itself (the neo4j role's image version from Maven Central, tests/support/neo4j_server.py: its
HTTP API, auth, transactions, schema commands and notifications), ansible-playbook with the module's argument spec,
check mode and --diff; in the role test also the kube-apiserver and its controllers (the StatefulSet, its PVC, the
Secret the password is read from). EMULATED: the kubelet (kwok: the pod becomes Ready, no container runs), so the
role's schema step is pointed at the real server with neo4j_api_url instead of the Service's ClusterIP, and runs on
localhost instead of the GPU host. One server per test module (the community edition has one user database: each
test empties its schema first).
"""

from __future__ import annotations

import sys

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import neo4j_schema as ns
from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import run_module
from tests.support.neo4j_server import Neo4jServer
from tests.support.secrets_fixtures import GOOD_ENV, env_text, write_env, write_inventory
from tests.support.secrets_fixtures import PLAYBOOK as SECRETS_PLAYBOOK

SCHEMA = """\
// The lab's graph: documents, their chunks, the entities they mention.
CREATE CONSTRAINT document_id IF NOT EXISTS FOR (d:Document) REQUIRE d.id IS UNIQUE;
CREATE CONSTRAINT entity_name IF NOT EXISTS
  FOR (e:Entity) REQUIRE e.name IS UNIQUE;   /* entities are merged by name */
CREATE INDEX chunk_source IF NOT EXISTS FOR (c:Chunk) ON (c.source);
CREATE TEXT INDEX chunk_text IF NOT EXISTS FOR (c:Chunk) ON (c.text);
"""


@pytest.fixture(scope="module")
def neo4j(tmp_path_factory):
    server = Neo4jServer(str(tmp_path_factory.mktemp("neo4j"))).start()
    print("real Neo4j started in %.1f s" % server.startup_seconds)
    yield server
    server.stop()


@pytest.fixture
def client(neo4j):
    """A Cypher client on the server, the schema emptied first (the community edition has one user database)."""
    cypher = ns.HttpCypher(neo4j.url, "neo4j", neo4j.password)
    for row in cypher.query("SHOW CONSTRAINTS YIELD name"):
        cypher.query("DROP CONSTRAINT `%s`" % row["name"])
    for row in cypher.query("SHOW INDEXES YIELD name, type"):
        if row["type"] != "LOOKUP":
            cypher.query("DROP INDEX `%s`" % row["name"])
    return cypher


def _args(neo4j, schema, **extra):
    return dict({"schema": schema, "source": "inventory/lab/neo4j/schema.cypher", "url": neo4j.url,
                 "password": neo4j.password}, **extra)


def _names(client):
    return sorted(r["name"] for r in client.query("SHOW CONSTRAINTS YIELD name")) + sorted(
        r["name"] for r in client.query("SHOW INDEXES YIELD name, type, owningConstraint")
        if r["type"] != "LOOKUP" and not r["owningConstraint"])


def test_schema_applies_then_a_second_run_changes_nothing(neo4j, client):
    result, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA), diff=True)
    assert not result.get("failed"), out
    assert result["changed"] is True
    assert _names(client) == ["document_id", "entity_name", "chunk_source", "chunk_text"]
    assert [s["effect"] for s in result["statements"]] == ["applied"] * 4
    assert [s["line"] for s in result["statements"]] == [2, 3, 5, 6]
    # --diff: Neo4j's own createStatement of each new object, the password nowhere
    assert "CREATE CONSTRAINT `entity_name` FOR (n:`Entity`) REQUIRE (n.`name`) IS UNIQUE" in result["diff"]["after"]
    assert "entity_name" not in result["diff"]["before"]
    assert neo4j.password not in out

    again, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA), diff=True)
    assert not again.get("failed"), out
    assert again["changed"] is False
    assert [s["effect"] for s in again["statements"]] == ["no effect"] * 4
    assert again["before"] == again["after"] == result["after"]


def test_check_mode_writes_nothing_and_says_what_would_change(neo4j, client):
    run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA.split("CREATE INDEX")[0]))
    assert _names(client) == ["document_id", "entity_name"]

    planned, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA), check=True, diff=True)
    assert not planned.get("failed"), out
    assert planned["changed"] is True
    assert [s["effect"] for s in planned["statements"]] == ["no effect", "no effect", "applied", "applied"]
    assert "index chunk_text: CREATE TEXT INDEX chunk_text IF NOT EXISTS" in planned["diff"]["after"]
    assert "chunk_text" not in planned["diff"]["before"]
    assert _names(client) == ["document_id", "entity_name"]   # the transaction was rolled back

    run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA))
    unchanged, _out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA), check=True)
    assert unchanged["changed"] is False


def test_bad_file_is_refused_before_anything_changes(neo4j, client):
    bad = SCHEMA + "MATCH (n) DETACH DELETE n;\nCREATE INDEX unnamed_is_refused_too FOR (c:Chunk) ON (c.x);\n"
    result, _out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, bad))
    assert result["failed"]
    assert "inventory/lab/neo4j/schema.cypher line 7: `MATCH (n) DETACH DELETE n` is not a schema statement" \
        in result["msg"]
    assert "line 8: `CREATE INDEX unnamed_is_refused_too FOR (c:Chunk) ON (c.x)` must name the index and say IF " \
        "NOT EXISTS" in result["msg"]
    assert _names(client) == []

    # A statement only Neo4j can judge (a property type it does not know) fails the whole transaction: the
    # statements before it in the file are not committed either.
    refused = SCHEMA + "CREATE CONSTRAINT chunk_n IF NOT EXISTS FOR (c:Chunk) REQUIRE c.n IS :: NO_SUCH_TYPE;\n"
    result, _out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, refused))
    assert result["failed"]
    assert result["msg"].startswith("inventory/lab/neo4j/schema.cypher line 7: Neo4j refused `CREATE CONSTRAINT "
                                    "chunk_n")
    assert "Neo.ClientError.Statement.SyntaxError" in result["msg"] and "nothing was changed" in result["msg"]
    assert _names(client) == []


def test_the_file_is_additive_and_drop_if_exists_removes(neo4j, client):
    run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA))
    without_text_index = SCHEMA.replace("CREATE TEXT INDEX chunk_text IF NOT EXISTS FOR (c:Chunk) ON (c.text);\n", "")
    kept, _out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, without_text_index))
    assert kept["changed"] is False
    assert "chunk_text" in _names(client)   # an application's index is never dropped for not being in the file

    dropping = without_text_index + "DROP INDEX chunk_text IF EXISTS;\n"
    dropped, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, dropping), diff=True)
    assert dropped["changed"] is True, out
    assert "chunk_text" not in _names(client)
    assert "index chunk_text:" in dropped["diff"]["before"] and "index chunk_text:" not in dropped["diff"]["after"]
    again, _out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, dropping))
    assert again["changed"] is False


def test_wrong_password_is_named_and_never_printed(neo4j, client):
    result, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, SCHEMA, password="not-the-password"))
    assert result["failed"]
    assert "refused user 'neo4j' (Neo.ClientError.Security.Unauthorized" in result["msg"]
    assert "NEO4J_AUTH" in result["msg"]
    assert "not-the-password" not in out
    assert _names(client) == []


def test_the_example_inventorys_schema_applies(neo4j, client):
    schema = open(REPO + "/inventory/example/neo4j/schema.cypher", encoding="utf-8").read()
    result, out = run_module("ailab.gpu_lab.neo4j_schema", _args(neo4j, schema))
    assert result["changed"] is True, out
    assert _names(client) == ["chunk_id", "document_id", "entity_name", "chunk_source", "entity_names"]


def _role_play(tmp_path, kube, neo4j, schema_file):
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable},
             "roles": [{"role": "ailab.gpu_lab.neo4j",
                        "vars": {"neo4j_namespace": kube.namespace, "neo4j_kubeconfig": kube.kubeconfig,
                                 "neo4j_schema_file": str(schema_file), "neo4j_api_url": neo4j.url,
                                 "neo4j_api_host": "localhost", "neo4j_wait_timeout": 120}}]}]
    path = tmp_path / "neo4j-play.yml"
    path.write_text(yaml.safe_dump(play))
    return path


def _secrets_playbook(tmp_path, kube, env):
    env_file = write_env(str(tmp_path / "lab.env"), env_text(env))
    inventory = write_inventory(str(tmp_path), kube.kubeconfig, env_file, gpu_lab_namespace=kube.namespace,
                                gpu_lab_components={"neo4j": True})
    return run_playbook(SECRETS_PLAYBOOK, "-i", inventory)


def test_secrets_playbook_generates_neo4j_auth_once_and_keeps_it(tmp_path, kube):
    first = _secrets_playbook(tmp_path, kube, GOOD_ENV)
    auth = kube.secrets()["neo4j-auth"]["NEO4J_AUTH"]
    assert auth.startswith("neo4j/") and len(auth) == 46 and auth[6:].isalnum()
    second = _secrets_playbook(tmp_path, kube, GOOD_ENV)
    assert kube.secrets()["neo4j-auth"]["NEO4J_AUTH"] == auth
    assert auth[6:] not in first.stdout + second.stdout


def _recap_changed(out):
    return int(out.split("PLAY RECAP", 1)[1].split("changed=", 1)[1].split()[0])


def test_role_applies_the_statefulset_then_the_schema_and_repeats_change_nothing(tmp_path, kube, neo4j, client):
    """The secrets playbook writes Secret neo4j-auth from .env; the role on its own: the objects through the one apply
    into the real API server, the password read from that Secret, the schema file applied to the real Neo4j; a second
    run and a check run change nothing, and the password is in no output."""
    # the Secret as the secrets playbook writes it, from .env NEO4J_AUTH (the real server's password)
    _secrets_playbook(tmp_path, kube, dict(GOOD_ENV, NEO4J_AUTH="neo4j/" + neo4j.password))
    assert kube.secrets()["neo4j-auth"] == {"NEO4J_AUTH": "neo4j/" + neo4j.password}
    schema_file = tmp_path / "schema.cypher"
    schema_file.write_text(SCHEMA)
    play = _role_play(tmp_path, kube, neo4j, schema_file)

    first = run_playbook(play, "-i", "localhost,", "--diff")
    assert _recap_changed(first.stdout) >= 2, first.stdout   # the objects, the schema
    assert _names(client) == ["document_id", "entity_name", "chunk_source", "chunk_text"]
    sts = kube.get("StatefulSet", "neo4j", api_version="apps/v1")
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["labels"]["backup-tier"] == "gfs"
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NEO4J_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "neo4j-auth", "key": "NEO4J_AUTH"}
    svc = kube.get("Service", "neo4j")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 7474, "bolt": 7687}
    assert neo4j.password not in first.stdout

    again = run_playbook(play, "-i", "localhost,", "--diff", "-vvv")
    assert _recap_changed(again.stdout) == 0, again.stdout
    assert neo4j.password not in again.stdout   # not even at -vvv (module arguments, lookups, the Secret's data)
    checked = run_playbook(play, "-i", "localhost,", "--check", "--diff")
    assert _recap_changed(checked.stdout) == 0, checked.stdout

    # a bad file stops the role before it applies anything
    schema_file.write_text(SCHEMA + "MATCH (n) DETACH DELETE n;\n")
    kube.delete("StatefulSet", "neo4j", api_version="apps/v1")
    bad = run_playbook(play, "-i", "localhost,", check=False)
    assert bad.returncode != 0
    assert "neo4j_schema_file %s line 7: `MATCH (n) DETACH DELETE n` is not a schema statement" % schema_file \
        in bad.stdout
    assert kube.get("StatefulSet", "neo4j", api_version="apps/v1") is None


def test_deploy_refuses_a_bad_schema_file_before_rendering_anything(tmp_path):
    """The deploy playbook's early check (lab role) runs the neo4j role's input rule with every other input: a bad
    statement in the file stops the run, naming the file and line, before the first object is written."""
    schema_file = tmp_path / "schema.cypher"
    schema_file.write_text(SCHEMA + "\nMERGE (n:Person {id: 1});\n")
    render = tmp_path / "rendered"
    proc = run_playbook(REPO + "/playbooks/deploy.yml", "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                        "-e", "gpu_lab_render_dir=%s" % render, "-e", "neo4j_schema_file=%s" % schema_file,
                        "-e", '{"gpu_lab_components": {"neo4j": true}}', check=False)
    assert proc.returncode != 0
    assert "neo4j_schema_file %s line 8: `MERGE (n:Person {id: 1})` is not a schema statement" % schema_file \
        in proc.stdout, proc.stdout[-3000:]
    assert not render.exists()
