"""Data-driven tests of the .env parser (python-dotenv's parser plus our checks) and of the dotenv_parse filter.

Everything here is real: python-dotenv 1.2 parses, our module_utils adds line numbers,
duplicate/invalid-key refusal and strict expansion. Cases live in data/dotenv_cases.yml.
"""

from __future__ import annotations

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.ailab.gpu_lab.plugins.filter.dotenv import FilterModule
from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets as ds

CASES = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "data", "dotenv_cases.yml"), encoding="utf-8"))


def _text(case):
    if "text_bytes" in case:
        return case["text_bytes"].encode("latin-1")
    return case["text"]


def test_enough_cases():
    tricky = [c for c in CASES if "errors" in c or c["id"] not in ("simple",)]
    assert len(CASES) >= 30 and len([c for c in CASES if "errors" in c]) >= 15 and len(tricky) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_parse_case(case):
    result = ds.parse_dotenv(_text(case), source="t.env", interpolate=case.get("interpolate", True),
                             environ=case.get("environ", {}))
    assert [str(e) for e in result.errors] == case.get("errors", [])
    if "values" in case:
        assert result.values() == case["values"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_filter_case(case, monkeypatch):
    """The filter returns the same dict, or raises with every message (file:line) in it."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in case.get("environ", {}).items():
        monkeypatch.setenv(name, value)
    dotenv_parse = FilterModule().filters()["dotenv_parse"]
    if case.get("errors"):
        with pytest.raises(AnsibleFilterError) as info:
            dotenv_parse(_text(case), source="t.env", interpolate=case.get("interpolate", True))
        message = str(info.value)
        assert message.startswith("t.env: %d problem(s):" % len(case["errors"]))
        for expected in case["errors"]:
            assert expected in message
    else:
        assert dotenv_parse(_text(case), source="t.env", interpolate=case.get("interpolate", True)) == case["values"]


def test_agrees_with_dotenv_values_on_clean_cases():
    """On files without problems our result equals python-dotenv's own dotenv_values()."""
    import io

    from dotenv import dotenv_values

    for case in CASES:
        if case.get("errors") or case.get("environ") or "text" not in case:
            continue
        ours = ds.parse_dotenv(case["text"], interpolate=case.get("interpolate", True), environ={}).values()
        theirs = dict(dotenv_values(stream=io.StringIO(case["text"]), interpolate=case.get("interpolate", True)))
        assert ours == theirs, case["id"]


def test_messages_never_contain_values():
    secret = "sk-proj-Zq8VtUeR4pN7aW2xK9mL"
    text = "A=\"%s\" trailing\n%s\nB=%s\nB=%s\nC-%s=1\n" % (secret, secret, secret, secret, secret)
    result = ds.parse_dotenv(text, source="t.env", environ={})
    assert len(result.errors) == 4
    for problem in result.errors:
        assert secret not in str(problem) and secret[:8] not in str(problem)


def test_filter_rejects_non_text():
    dotenv_parse = FilterModule().filters()["dotenv_parse"]
    with pytest.raises(AnsibleFilterError, match="expects the text of a .env file"):
        dotenv_parse({"A": 1})
    assert dotenv_parse(None) == {}


def test_read_missing_file(tmp_path):
    result = ds.read_dotenv_file(str(tmp_path / "nope.env"))
    assert [str(e) for e in result.errors] == [
        "%s: cannot read the file (No such file or directory): create it from .env.example" % (tmp_path / "nope.env")]


def test_line_numbers_of_entries():
    result = ds.parse_dotenv("# c\n\nA=1\nB=\"x\ny\"\n\nexport C=3\n", environ={})
    assert [(k, result.entries[k].line) for k in result.order] == [("A", 3), ("B", 4), ("C", 7)]
