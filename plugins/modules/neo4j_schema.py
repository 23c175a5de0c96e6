#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: neo4j_schema
short_description: Apply Neo4j constraints and indexes from a Cypher file, idempotently
version_added: 0.1.0
description:
  - Checks O(schema) first. Only named C(CREATE ... CONSTRAINT|INDEX <name> IF NOT EXISTS) and
    C(DROP CONSTRAINT|INDEX <name> IF EXISTS) statements, each ending with C(;); anything else fails naming O(source)
    and the line, before Neo4j is asked anything.
  - Lists the schema (C(SHOW CONSTRAINTS), C(SHOW INDEXES)), runs every statement in one transaction of Neo4j's HTTP
    API (C(/db/<database>/tx), part of the community server) and commits it; C(changed) is the listing before against
    the listing after. A statement Neo4j refuses fails the task naming the line, and nothing is committed.
  - The file is additive. Constraints and indexes it does not mention are kept (applications create their own);
    a C(DROP ... IF EXISTS) statement removes one.
author:
  - ailab maintainers (@ailab)
attributes:
  check_mode:
    support: full
    description: Runs the statements in a transaction that is rolled back; C(changed) comes from Neo4j's own
      C(has no effect) notification of each statement.
  diff_mode:
    support: full
    description: The schema listing before and after (in check mode, after is predicted from the statements).
options:
  schema:
    description: The Cypher text (e.g. C(lookup('ansible.builtin.file', neo4j_schema_file))).
    type: str
    required: true
  source:
    description: Where O(schema) comes from, as the error messages name it (the file's path).
    type: str
    default: schema
  url:
    description: Neo4j's HTTP base, e.g. C(http://10.43.0.12:7474).
    type: str
    required: true
  database:
    description: The database the schema belongs to.
    type: str
    default: neo4j
  user:
    description: Neo4j user.
    type: str
    default: neo4j
  password:
    description: Its password.
    type: str
    required: true
  timeout:
    description: Seconds each HTTP request may take.
    type: int
    default: 30
notes:
  - Runs where Neo4j's HTTP port is reachable; the neo4j role delegates it to the GPU host, which reaches the
    Service's ClusterIP (docs/neo4j.md, "How the schema reaches Neo4j").
seealso:
  - name: Neo4j Cypher manual, constraints and indexes
    description: The statements the file holds.
    link: https://neo4j.com/docs/cypher-manual/5/constraints/
"""

EXAMPLES = r"""
- name: Apply the lab's graph schema
  ailab.gpu_lab.neo4j_schema:
    schema: "{{ lookup('ansible.builtin.file', inventory_dir ~ '/neo4j/schema.cypher') }}"
    source: "{{ inventory_dir }}/neo4j/schema.cypher"
    url: http://10.43.0.12:7474
    password: "{{ neo4j_password }}"
"""

RETURN = r"""
statements:
  description: Each statement of the file with what Neo4j did with it.
  returned: always
  type: list
  elements: dict
  contains:
    line: {description: Line of the file where it starts., type: int, returned: always}
    statement: {description: The statement., type: str, returned: always}
    action: {description: create or drop., type: str, returned: always}
    kind: {description: constraint or index., type: str, returned: always}
    name: {description: The name it creates or drops., type: str, returned: always}
    effect: {description: "V(applied), or V(no effect) (Neo4j's notification).", type: str, returned: always}
before:
  description: The schema before, one line per constraint or index (C(<kind> <name>, <createStatement>)).
  returned: always
  type: list
  elements: str
after:
  description: The schema after (predicted in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ailab.gpu_lab.plugins.module_utils import neo4j_schema as ns


def main():
    module = AnsibleModule(
        argument_spec=dict(
            schema=dict(type="str", required=True),
            source=dict(type="str", default="schema"),
            url=dict(type="str", required=True),
            database=dict(type="str", default="neo4j"),
            user=dict(type="str", default="neo4j"),
            password=dict(type="str", required=True, no_log=True),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        statements = ns.parse(params["schema"], params["source"])
    except ns.SchemaError as exc:
        module.fail_json(msg=str(exc))
    client = ns.HttpCypher(params["url"], params["user"], params["password"], params["database"], params["timeout"])
    try:
        result = ns.apply(client, statements, module.check_mode, params["source"])
    except (ns.SchemaError, ns.Neo4jError) as exc:
        module.fail_json(msg=str(exc))
    if module._diff:
        result["diff"] = {"before": "\n".join(result["before"]) + "\n", "after": "\n".join(result["after"]) + "\n",
                          "before_header": "neo4j schema", "after_header": "neo4j schema"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
