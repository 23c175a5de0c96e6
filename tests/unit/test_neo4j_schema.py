"""The schema file's rules (plugins/module_utils/neo4j_schema.py parse(), file_errors()) and the neo4j role's input
rule in the deploy playbook's early check. Plain Python; cases in tests/unit/data/neo4j_schema_cases.yml. What Neo4j
does with the statements is tests/functional/test_neo4j_schema.py's, against the real server."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy, neo4j_schema
from tests.conftest import REPO

CASES = yaml.safe_load((Path(__file__).parent / "data" / "neo4j_schema_cases.yml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_schema_file_cases(case):
    if "error" in case:
        with pytest.raises(neo4j_schema.SchemaError) as raised:
            neo4j_schema.parse(case["text"], "lab/schema.cypher")
        for part in case["error"]:
            assert part in str(raised.value)
    else:
        got = [[s.line, s.action, s.kind, s.name] for s in neo4j_schema.parse(case["text"], "lab/schema.cypher")]
        assert got == case["statements"]


def test_the_example_inventorys_schema_file_is_valid():
    statements = neo4j_schema.parse((Path(REPO) / "inventory/example/neo4j/schema.cypher").read_text())
    assert [s.name for s in statements] == ["document_id", "chunk_id", "chunk_source", "entity_name", "entity_names"]


def test_the_neo4j_input_rule_reads_the_file_and_checks_the_clients(tmp_path):
    bad = tmp_path / "schema.cypher"
    bad.write_text("CREATE INDEX x IF NOT EXISTS FOR (n:X) ON (n.x);\nMATCH (n) RETURN n;\n")
    errors = deploy.role_input_errors("neo4j", {"neo4j_schema_file": str(bad),
                                                "neo4j_clients": [{"app.kubernetes.io/name": "mine"}, "mine", {}]})
    assert errors == [
        "neo4j_schema_file %s line 2: `MATCH (n) RETURN n` is not a schema statement; the file holds only CREATE ... "
        "CONSTRAINT/INDEX <name> IF NOT EXISTS and DROP CONSTRAINT/INDEX <name> IF EXISTS statements, each ending "
        "with ';'" % bad,
        "neo4j_clients[1]: 'mine' is not a matchLabels map of the client pods (label: value), e.g. "
        "{app.kubernetes.io/name: my-app}",
        "neo4j_clients[2]: {} is not a matchLabels map of the client pods (label: value), e.g. "
        "{app.kubernetes.io/name: my-app}"]
    missing = tmp_path / "nope.cypher"
    assert deploy.role_input_errors("neo4j", {"neo4j_schema_file": str(missing), "neo4j_clients": []}) == [
        "neo4j_schema_file: cannot read %s (No such file or directory); write the Cypher file there or set "
        "neo4j_schema_file: ''" % missing]
    assert deploy.role_input_errors("neo4j", {"neo4j_schema_file": "", "neo4j_clients": []}) == []
