"""ailab.gpu_lab.validate_role_specs on its own: several roles' meta/argument_specs.yml checked against the play's
variables in one task, the way ansible-core checks one role's when it starts (the deploy playbook's lab role runs it
with failed_when: false and reports through deploy_validate; tests/functional/test_deploy_early_check.py).

REAL: ansible-playbook with the collection's action plugin and the roles' own spec files; nothing emulated.
"""

from __future__ import annotations

import json

from tests.conftest import run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  connection: local
  vars: %s
  tasks:
    - name: Check the specs
      ailab.gpu_lab.validate_role_specs:
        roles: %s
      register: checked
      ignore_errors: true   # the result keeps failed: true
    - name: Show what the check returned
      ansible.builtin.debug:
        msg: "RESULT {{ checked | to_json }}"
"""


def _check(tmp_path, variables, roles):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY % (json.dumps(variables), json.dumps(roles)))
    out = run_playbook(playbook, "-i", "localhost,").stdout
    line = next(line for line in out.splitlines() if '"msg": "RESULT ' in line)
    return json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"][len("RESULT "):])


def test_each_role_is_checked_against_its_own_spec_and_named_in_the_result(tmp_path):
    result = _check(tmp_path, {"qdrant_image_pull_policy": "always", "vllm_port": 8000, "open_webui_wait_timeout": "{{ 60 * 5 }}"},
                    ["ailab.gpu_lab.qdrant", "vllm", "open_webui"])
    assert result["failed"] is True
    by_role = {r["item"]: r["argument_errors"] for r in result["results"]}
    assert list(by_role) == ["qdrant", "vllm", "open_webui"]
    assert by_role["qdrant"] == ["value of qdrant_image_pull_policy must be one of: Always, IfNotPresent, Never, got: always"]
    assert by_role["vllm"] == [] and by_role["open_webui"] == []   # a templated value is checked once rendered
    assert "role ailab.gpu_lab.qdrant: value of qdrant_image_pull_policy" in result["msg"]


def test_passing_specs_and_a_missing_spec_file(tmp_path):
    passed = _check(tmp_path, {}, ["qdrant", "litellm"])
    assert passed["failed"] is False and passed["msg"] == "the argument specs of 2 roles passed", passed
    missing = _check(tmp_path, {}, ["qdrant", "no_such_role"])
    assert missing["failed"] is True
    assert "role ailab.gpu_lab.no_such_role: cannot read" in missing["msg"]
    assert "roles/no_such_role/meta/argument_specs.yml" in missing["msg"]
