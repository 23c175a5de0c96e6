# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Neo4j's schema (constraints and indexes) from a Cypher file, applied idempotently (docs/neo4j.md).

``parse()`` reads the file and refuses anything but named ``CREATE ... CONSTRAINT|INDEX <name> IF NOT EXISTS`` and
``DROP CONSTRAINT|INDEX <name> IF EXISTS`` statements, naming the file and line, before anything is sent.
``apply()`` lists the schema (``SHOW CONSTRAINTS`` / ``SHOW INDEXES``), runs every statement in ONE transaction of
Neo4j's HTTP API (``/db/<database>/tx``) and commits it, or rolls it back in check mode; ``changed`` is the listing
before against the listing after (check mode: Neo4j's own "has no effect" notification of each statement). The file
is additive: what it no longer mentions stays (applications create their own indexes); a ``DROP ... IF EXISTS``
line removes an object.

Plain Python (stdlib only): the module runs it on the GPU host, which reaches the Service's ClusterIP; the tests run
it against a real Neo4j server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import re
import socket

from http.client import HTTPConnection, HTTPException
from urllib.parse import urlsplit

_NAME = r"(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_RE = re.compile(r"^CREATE\s+(?:(?:RANGE|TEXT|POINT|FULLTEXT|VECTOR|LOOKUP)\s+)?(CONSTRAINT|INDEX)\b(.*)$",
                        re.I | re.S)
_DROP_RE = re.compile(r"^DROP\s+(CONSTRAINT|INDEX)\b(.*)$", re.I | re.S)
_CREATE_NAMED_RE = re.compile(r"^\s+" + _NAME + r"\s+IF\s+NOT\s+EXISTS\s", re.I)
_DROP_NAMED_RE = re.compile(r"^\s+" + _NAME + r"\s+IF\s+EXISTS\s*$", re.I)
# Neo4j's notification that a statement changed nothing (IF NOT EXISTS met an equivalent object, IF EXISTS none).
NO_EFFECT = ("Neo.ClientNotification.Schema.IndexOrConstraintAlreadyExists",
             "Neo.ClientNotification.Schema.IndexOrConstraintDoesNotExist")


class SchemaError(ValueError):
    """The schema file is not acceptable, or Neo4j refused a statement; the message names file and line."""


class Neo4jError(RuntimeError):
    """Neo4j could not be reached or refused a request; ``code`` is Neo4j's status code when it gave one."""

    def __init__(self, message, code=None):
        super(Neo4jError, self).__init__(message)
        self.code = code


class Statement(object):
    def __init__(self, text, line, action, kind, name):
        self.text = text
        self.line = line
        self.action = action    # create | drop
        self.kind = kind        # constraint | index
        self.name = name

    def as_dict(self):
        return {"line": self.line, "statement": self.text, "action": self.action, "kind": self.kind, "name": self.name}


def _split(text):
    """(statement text without comments, line of its first character) for each ';'-terminated statement.
    Quotes ('..', "..") and backticks are kept whole; // and /* */ comments are dropped."""
    out, buf, start, line, i, quote = [], [], None, 1, 0, None
    while i < len(text):
        char = text[i]
        if quote:
            buf.append(char)
            if char == "\\" and quote != "`" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = len(text) if end < 0 else end + 2
            line += text.count("\n", i, end)
            buf.append(" ")
            i = end
            continue
        elif char == ";":
            if "".join(buf).strip():
                out.append(("".join(buf).strip(), start))
            buf, start = [], None
        else:
            if char in "'\"`":
                quote = char
            if start is None and not char.isspace():
                start = line
            buf.append(char)
        if char == "\n":
            line += 1
        i += 1
    if "".join(buf).strip():
        out.append(("".join(buf).strip(), start))
    return out


def _unquote(name):
    return name[1:-1] if name.startswith("`") else name


def parse(text, source="schema"):
    """The statements of a schema file, each checked; raises SchemaError naming ``source`` and every bad line."""
    if not isinstance(text, str):
        raise SchemaError("%s: not text" % source)
    statements, problems, created = [], [], {}
    for body, line in _split(text):
        where = "%s line %d" % (source, line)
        short = " ".join(body.split())
        short = short if len(short) <= 80 else short[:77] + "..."
        create, drop = _CREATE_RE.match(body), _DROP_RE.match(body)
        if create:
            named = _CREATE_NAMED_RE.match(create.group(2) + " ")
            if not named or named.group(1).upper() in ("IF", "FOR", "ON"):
                problems.append("%s: `%s` must name the %s and say IF NOT EXISTS (CREATE %s <name> IF NOT EXISTS "
                                "...): the file is applied on every deploy, and a name lets a later DROP remove it"
                                % (where, short, create.group(1).lower(), create.group(1).upper()))
                continue
            item = Statement(body, line, "create", create.group(1).lower(), _unquote(named.group(1)))
            if (item.kind, item.name) in created:
                problems.append("%s: %s %s is created again (first at line %d)"
                                % (where, item.kind, item.name, created[(item.kind, item.name)]))
                continue
            created[(item.kind, item.name)] = line
        elif drop:
            named = _DROP_NAMED_RE.match(drop.group(2))
            if not named:
                problems.append("%s: `%s` must be DROP %s <name> IF EXISTS (the file is applied on every deploy)"
                                % (where, short, drop.group(1).upper()))
                continue
            item = Statement(body, line, "drop", drop.group(1).lower(), _unquote(named.group(1)))
        else:
            problems.append("%s: `%s` is not a schema statement; the file holds only CREATE ... CONSTRAINT/INDEX "
                            "<name> IF NOT EXISTS and DROP CONSTRAINT/INDEX <name> IF EXISTS statements, each ending "
                            "with ';'" % (where, short))
            continue
        statements.append(item)
    if problems:
        raise SchemaError("; ".join(problems))
    return statements


def file_errors(path, var="neo4j_schema_file"):
    """The problems of the schema file at ``path`` (a controller path; "" = no file): [] when fine. The deploy
    playbook's early check runs this (plugins/module_utils/deploy.py, the neo4j role's input rule)."""
    if not path:
        return []
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except (IOError, OSError) as exc:
        return ["%s: cannot read %s (%s); write the Cypher file there or set %s: ''" % (
            var, path, getattr(exc, "strerror", None) or exc, var)]
    except UnicodeDecodeError as exc:
        return ["%s: %s is not UTF-8 text (%s)" % (var, path, exc)]
    try:
        parse(text, "%s %s" % (var, path))
    except SchemaError as exc:
        return [str(exc)]
    return []


class HttpCypher(object):
    """Cypher over Neo4j's HTTP API (the community server's transactional endpoint, /db/<database>/tx)."""

    def __init__(self, url, user, password, database="neo4j", timeout=30.0):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise Neo4jError("url %r is not an http://host:port address of Neo4j's HTTP connector" % url)
        self._host, self._port = parts.hostname, parts.port or 7474
        self.base = "%s/db/%s/tx" % (parts.path.rstrip("/"), database)
        self.url = url
        self.user = user
        self.timeout = timeout
        token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        self._headers = {"Authorization": "Basic " + token, "Content-Type": "application/json",
                         "Accept": "application/json"}

    def _request(self, method, path, statements=None):
        body = None if statements is None else json.dumps(
            {"statements": [{"statement": s} for s in statements]}).encode("utf-8")
        connection = HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=self._headers)
            response = connection.getresponse()
            status, raw, location = response.status, response.read(), response.getheader("Location")
        except (HTTPException, socket.error) as exc:
            raise Neo4jError("Neo4j at %s is not reachable: %s" % (self.url, exc))
        finally:
            connection.close()
        try:
            answer = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            raise Neo4jError("Neo4j at %s answered HTTP %s with no JSON: %s" % (self.url, status, raw[:200]))
        errors = answer.get("errors") or []
        if status == 401 or any(e.get("code", "").startswith("Neo.ClientError.Security.") for e in errors):
            said = errors[0] if errors else {"code": "HTTP %s" % status, "message": ""}
            raise Neo4jError("Neo4j at %s refused user %r (%s: %s): check the password (Secret key NEO4J_AUTH)"
                             % (self.url, self.user, said.get("code"), said.get("message")), said.get("code"))
        if status >= 400 and not errors:
            raise Neo4jError("Neo4j at %s answered HTTP %s to %s %s" % (self.url, status, method, path))
        # the transaction's address as Neo4j names it; only its path is used (the host is the one called)
        return answer, urlsplit(location).path if location else None

    @staticmethod
    def _raise(answer):
        errors = answer.get("errors") or []
        if errors:
            raise Neo4jError("%s: %s" % (errors[0].get("code"), errors[0].get("message")), errors[0].get("code"))

    def query(self, statement):
        """Rows (dicts by column) of one autocommitted statement."""
        answer, _location = self._request("POST", self.base + "/commit", [statement])
        self._raise(answer)
        result = answer["results"][0]
        return [dict(zip(result["columns"], row["row"])) for row in result["data"]]

    def begin(self):
        answer, location = self._request("POST", self.base, [])
        self._raise(answer)
        if not location:
            raise Neo4jError("Neo4j at %s opened no transaction (no Location header)" % self.url)
        return location

    def run(self, tx, statement):
        """Runs ``statement`` in transaction ``tx``; returns Neo4j's notification codes. On an error Neo4j has
        rolled the transaction back already."""
        answer, _location = self._request("POST", tx, [statement])
        self._raise(answer)
        return [n.get("code") for n in answer.get("notifications") or []]

    def commit(self, tx):
        answer, _location = self._request("POST", tx + "/commit", [])
        self._raise(answer)

    def rollback(self, tx):
        self._request("DELETE", tx)


def listing(client):
    """The schema as sorted lines '<kind> <name>: <createStatement>' (indexes a constraint owns appear as it)."""
    lines = ["constraint %s: %s" % (row["name"], row["createStatement"])
             for row in client.query("SHOW CONSTRAINTS YIELD name, createStatement")]
    lines += ["index %s: %s" % (row["name"], row["createStatement"])
              for row in client.query("SHOW INDEXES YIELD name, owningConstraint, createStatement")
              if not row["owningConstraint"]]
    return sorted(lines)


def _predicted(before, statements, effective):
    """Check mode's 'after': the listing less what the effective drops remove, plus the effective creates."""
    after = list(before)
    for item, applies in zip(statements, effective):
        if not applies:
            continue
        if item.action == "drop":
            prefix = "%s %s: " % (item.kind, item.name)
            after = [line for line in after if not line.startswith(prefix)]
        else:
            after.append("%s %s: %s" % (item.kind, item.name, " ".join(item.text.split())))
    return sorted(after)


def apply(client, statements, check_mode=False, source="schema"):
    """Runs the statements in one transaction (committed, or rolled back in check mode).

    Returns {changed, before, after, statements: [{line, statement, action, kind, name, effect}]} where effect is
    'applied' or 'no effect' (Neo4j's notification), and before/after are schema listings (after is predicted in
    check mode). A statement Neo4j refuses raises SchemaError naming the file's line; nothing is committed."""
    before = listing(client)
    report, effective = [], []
    if statements:
        tx = client.begin()
        for item in statements:
            try:
                codes = client.run(tx, item.text)
            except Neo4jError as exc:
                raise SchemaError("%s line %d: Neo4j refused `%s` (%s); nothing was changed"
                                  % (source, item.line, " ".join(item.text.split()), exc))
            applies = not any(code in NO_EFFECT for code in codes)
            effective.append(applies)
            report.append(dict(item.as_dict(), effect="applied" if applies else "no effect"))
        if check_mode:
            client.rollback(tx)
        else:
            client.commit(tx)
    if check_mode:
        after = _predicted(before, statements, effective)
        changed = any(effective)
    else:
        after = listing(client) if statements else before
        changed = after != before
    return {"changed": changed, "before": before, "after": after, "statements": report}
