"""Alert rules of the monitoring role, checked and unit-tested by the REAL promtool.

Real: ansible-playbook renders the monitoring role (``monitoring_state: rendered``) with the
example lab's variables; Debian's promtool (2.42) parses every rule (``promtool check rules``)
and runs the unit tests in tests/functional/data/alerts/*.test.yml (``promtool test rules``:
input series, evaluation over time, expected alerts with their labels and rendered
annotations). Nothing is emulated.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.deploy_render import load_objects, render_roles

DATA = Path(__file__).parent / "data" / "alerts"
TEST_FILES = sorted(DATA.glob("*.test.yml"))


def promtool(*args, cwd):
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run `make setup` (tools/system-deps.sh installs Debian's prometheus)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory):
    """The PrometheusRule the role renders, as a plain rule file rules.yml beside the test files."""
    out = render_roles(tmp_path_factory.mktemp("render"), ["monitoring"])
    rules = [o for o in load_objects(out / "monitoring") if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, rules
    work = tmp_path_factory.mktemp("promtool")
    (work / "rules.yml").write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))
    for test_file in TEST_FILES:
        shutil.copy(test_file, work / test_file.name)
    return work


def rule_names(rules_dir):
    groups = yaml.safe_load((rules_dir / "rules.yml").read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_accepts_every_rule(rules_dir):
    proc = promtool("check", "rules", "rules.yml", cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rule_names(rules_dir))} rules found" in proc.stdout


@pytest.mark.parametrize("test_file", [p.name for p in TEST_FILES])
def test_promtool_unit_tests_pass(rules_dir, test_file):
    proc = promtool("test", "rules", test_file, cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case(rules_dir):
    """Each rule is proven both ways: some input makes it fire, some input keeps it quiet."""
    fires, quiet = set(), set()
    for test_file in TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(rule_names(rules_dir))
    assert names, "no alert rules rendered"
    assert names - fires == set(), f"alerts never shown firing in a promtool test: {sorted(names - fires)}"
    assert names - quiet == set(), f"alerts never shown quiet in a promtool test: {sorted(names - quiet)}"
    assert (fires | quiet) - names == set(), f"tests name alerts that do not exist: {sorted((fires | quiet) - names)}"


def test_a_broken_expectation_fails_promtool(rules_dir):
    """The harness can fail: a wrong expected annotation makes the real promtool report FAILED."""
    source = (rules_dir / "gpu_memory.test.yml").read_text()
    assert "used 99%" in source
    (rules_dir / "broken.test.yml").write_text(source.replace("used 99%", "used 98%"))
    proc = promtool("test", "rules", "broken.test.yml", cwd=rules_dir)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr
