"""What PromQL expressions of our rules and dashboards refer to, for the metric-name checks.

The syntax itself is checked by the REAL promtool (``promtool check rules``); this module only
pulls out the metric names an expression selects, so tests can compare them with what the real
LiteLLM proxy exposes and with the vLLM/DCGM/kube-state-metrics name lists in
tests/functional/data/metric_names.yml. It is a small tokenizer, not a parser: it removes string
literals, label matchers ``{...}``, ranges ``[...]`` and the label lists of ``by``/``without``/
``on``/``ignoring``/``group_left``/``group_right``, then keeps identifiers that are not called
as functions and are not keywords. ``{__name__=~"re"}`` selectors are returned as regexes.
"""

from __future__ import annotations

import re

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2", "start", "end"}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": "ai-lab",
                "$node": ".*", "$model": ".*", "$alias": ".*"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def substitute_grafana_vars(expr: str) -> str:
    """Replace Grafana's template variables by values a plain Prometheus accepts."""
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r} (known: {', '.join(GRAFANA_VARS)})")
    return expr


def metric_selectors(expr: str) -> tuple[set[str], set[str]]:
    """Return (metric names, __name__ regexes) selected by ``expr``."""
    regexes = set(re.findall(r'__name__\s*=~\s*"([^"]*)"', expr))
    plain = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set(plain)
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"[0-9]*[smhdwy]", word):   # durations after offset
            continue
        names.add(word)
    return names, regexes
