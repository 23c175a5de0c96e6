# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse a ``.env`` file with python-dotenv's own parser, validate it, and map its keys to Secrets.

Three layers, all plain Python (no Ansible, no Kubernetes here):

* :func:`parse_dotenv` runs ``dotenv.parser.parse_stream`` (python-dotenv's parser, so quoting,
  ``export``, comments, multi-line values and escapes behave exactly as python-dotenv does)
  and adds what python-dotenv lacks: the real line number of every entry and of every
  malformed line, refused duplicate keys, refused invalid key names, and ``${VAR}`` expansion
  (python-dotenv's own ``parse_variables``) that refuses references to undefined variables
  instead of silently producing an empty string.
* :func:`secret_layout` derives, from what is enabled in the inventory and from the model
  catalog, which Secrets exist and where each of their keys comes from (``.env``, generated,
  or a fixed value). docs/secrets.md documents the same table.
* :func:`validate` checks the parsed file against the layout: required keys missing, empty
  values, placeholders copied from ``.env.example``, keys used by nothing.

No message produced here ever contains a value from the file: only file names, line
numbers and key names (and not even the key, when the "key" could be a pasted secret).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import io
import os
import re
import secrets
import string

try:
    from dotenv.parser import parse_stream
    from dotenv.variables import Variable, parse_variables
    HAS_DOTENV = True
    DOTENV_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without python-dotenv
    HAS_DOTENV = False
    DOTENV_IMPORT_ERROR = exc

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEWLINE_RE = re.compile(r"\r\n|\n|\r")
_KEY_PREFIX_RE = re.compile(r"^[^\S\r\n]*(?:export[^\S\r\n]+)?([A-Za-z_][A-Za-z0-9_]*)[^\S\r\n]*=[^\S\r\n]*(.?)")

COMPONENTS = ("litellm", "litellm_postgres", "qdrant", "open_webui", "grafana", "gpu_demand", "neo4j", "searxng",
              "llama_stack")

# .env keys read by the provision playbook: written to a 0600 file on the host, NEVER to Kubernetes.
PROVISION_KEYS = {
    "TAILSCALE_AUTH_KEY": "the Tailscale auth key file on the host (provision playbook)",
    "K3S_TOKEN": "the k3s token file on the host (provision playbook)",
}

# Whole-value patterns that are obviously not a real secret (copied from .env.example or a tutorial).
_PLACEHOLDER_PATTERNS = [
    re.compile(r"^<.*>$", re.S),
    re.compile(r"^\{\{.*\}\}$", re.S),
    re.compile(r"^(changeme|change[-_ ]?me|replace[-_ ]?me|placeholder|todo|fixme|tbd|secret|password|"
               r"passw0rd|none|null|undefined|example|dummy|test|\.\.\.|…)$", re.I),
    re.compile(r"(replace|change)[-_ ]?(me|this)", re.I),
    re.compile(r"^(your|my)[-_ ].*", re.I),
    re.compile(r"x{6,}", re.I),
    re.compile(r"\*{3,}"),
]


class DotenvProblem(object):
    """One error or warning: where (file, line) and what, never a value."""

    def __init__(self, source, line, message, key=None):
        self.source = source
        self.line = line
        self.message = message
        self.key = key

    def __str__(self):
        if self.line is None:
            return "%s: %s" % (self.source, self.message)
        return "%s:%d: %s" % (self.source, self.line, self.message)

    def __repr__(self):
        return "DotenvProblem(%r)" % str(self)


class DotenvError(ValueError):
    """Raised with the full list of problems (each a :class:`DotenvProblem`)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(DotenvError, self).__init__("\n".join(str(p) for p in self.problems))


class DotenvEntry(object):
    """A parsed ``KEY=value`` line: the (expanded) value and the line the key is on."""

    def __init__(self, key, value, line, raw_value=None):
        self.key = key
        self.value = value
        self.line = line
        self.raw_value = raw_value if raw_value is not None else value


class ParseResult(object):
    """Entries in file order (key -> :class:`DotenvEntry`) plus the problems found."""

    def __init__(self, source):
        self.source = source
        self.entries = {}
        self.order = []
        self.errors = []
        self.warnings = []

    def values(self):
        return dict((k, self.entries[k].value) for k in self.order)

    def error(self, line, message, key=None):
        self.errors.append(DotenvProblem(self.source, line, message, key))

    def warn(self, line, message, key=None):
        self.warnings.append(DotenvProblem(self.source, line, message, key))


def _require_dotenv():
    if not HAS_DOTENV:
        raise ImportError("python-dotenv is required to parse .env files (pip install python-dotenv): %s" % DOTENV_IMPORT_ERROR)


def _real_line(original):
    """python-dotenv marks a binding where its leading blank lines start; return the line of its first token."""
    text = original.string
    lead = len(text) - len(text.lstrip())
    return original.line + len(_NEWLINE_RE.findall(text[:lead]))


def _describe_malformed(original_string):
    """Explain a line python-dotenv could not parse, without quoting any of it (it may hold a secret)."""
    stripped = original_string.strip()
    match = _KEY_PREFIX_RE.match(original_string.lstrip("\r\n"))
    if match:
        key, first = match.group(1), match.group(2)
        if first in ("'", '"'):
            return key, ("cannot parse the value of %s: a %s-quoted value must close its quote and have nothing but "
                         "a comment after it (unterminated quote, or text after the closing quote?)"
                         % (key, "single" if first == "'" else "double"))
        return key, "cannot parse the line of %s" % key
    if stripped.startswith("="):
        return None, "cannot parse this line: '=' without a key before it"
    if stripped[:1] in ("'", '"'):
        return None, "cannot parse this line: a quoted key must be closed and followed by '='"
    return None, "cannot parse this line: expected KEY=value (spaces in the key, or a stray word after the key?)"


def _redacted_token(token):
    """A hint for a token that may be a pasted secret: its first two characters and its length."""
    return "starts with %r, %d characters" % (token[:2], len(token))


def parse_dotenv(text, source=".env", interpolate=True, environ=None):
    """Parse ``.env`` text with python-dotenv and check it; returns a :class:`ParseResult`.

    ``environ`` is the environment consulted by ``${VAR}`` expansion for names not defined
    earlier in the file (python-dotenv uses ``os.environ``; values in the file win).
    Nothing is raised for problems in the file: they are collected in ``result.errors``.
    """
    _require_dotenv()
    if environ is None:
        environ = os.environ
    result = ParseResult(source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.error(None, "is not valid UTF-8 (byte offset %d): save it as UTF-8" % exc.start)
            return result
    if text is None:
        text = ""
    resolved = {}
    first_seen = {}
    for binding in parse_stream(io.StringIO(text)):
        line = _real_line(binding.original)
        if binding.error:
            key, message = _describe_malformed(binding.original.string)
            last = binding.original.line + len(_NEWLINE_RE.findall(binding.original.string.rstrip("\r\n")))
            if last > line:
                message += " (this statement runs from line %d to line %d: an opening quote swallowed the lines " \
                           "after it)" % (line, last)
            result.error(line, message, key)
            continue
        key = binding.key
        if key is None:  # comment or blank
            continue
        if not KEY_RE.match(key):
            if binding.value is None:
                result.error(line, "no '=' on this line and it is not a valid key name (%s): a value without a key?"
                             % _redacted_token(key))
            else:
                result.error(line, "invalid key name (%s): use letters, digits and '_', not starting with a digit"
                             % _redacted_token(key))
            continue
        if key in first_seen:
            result.error(line, "%s is already defined on line %d: duplicate keys are refused (python-dotenv would "
                         "silently keep the last one); delete one of them" % (key, first_seen[key]), key)
            continue
        first_seen[key] = line
        value = binding.value
        raw = value
        if value is not None and interpolate:
            env = dict(environ)
            env.update(resolved)
            parts = []
            for atom in parse_variables(value):
                if isinstance(atom, Variable) and atom.default is None and env.get(atom.name) is None:
                    result.error(line, "%s references ${%s}, which is not defined above this line nor in the environment: "
                                 "define it earlier in the file or give a default (${%s:-default}); python-dotenv expands "
                                 "${...} in every value, even single-quoted ones" % (key, atom.name, atom.name), key)
                parts.append(atom.resolve(env))
            value = "".join(parts)
        resolved[key] = value
        result.entries[key] = DotenvEntry(key, value, line, raw)
        result.order.append(key)
    return result


def dotenv_parse(text, source=".env", interpolate=True, environ=None):
    """The filter's contract: text -> {key: value}; raises :class:`DotenvError` listing every problem."""
    result = parse_dotenv(text, source=source, interpolate=interpolate, environ=environ)
    if result.errors:
        raise DotenvError(result.errors)
    return result.values()


def read_dotenv_file(path, interpolate=True, environ=None, source=None):
    """Read and parse a file; a missing or unreadable file is one error of the result."""
    source = source or path
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        result = ParseResult(source)
        result.error(None, "cannot read the file (%s): create it from .env.example" % (exc.strerror or exc))
        return result
    return parse_dotenv(data, source=source, interpolate=interpolate, environ=environ)


def is_placeholder(value, example_value=None):
    """True when ``value`` is obviously not a real secret: the ``.env.example`` value or a known placeholder form."""
    if value is None:
        return False
    if example_value is not None and value == example_value and value != "":
        return True
    stripped = value.strip()
    return any(p.search(stripped) for p in _PLACEHOLDER_PATTERNS)


# --------------------------------------------------------------------------- layout

class KeySpec(object):
    """Where one key of one Secret comes from.

    ``policy``: ``env`` (from .env only), ``env_or_generate`` (from .env when set there, else
    the existing Secret's value, else generated once), ``literal`` (a fixed, non-secret value).
    """

    def __init__(self, key, env=None, policy="env", required=False, reason="", literal=None, generator=None):
        self.key = key
        self.env = env if env is not None else key
        self.policy = policy
        self.required = required
        self.reason = reason
        self.literal = literal
        self.generator = generator

    def as_dict(self):
        return {"key": self.key, "env": self.env if self.policy != "literal" else None, "source": self.policy,
                "required": self.required, "reason": self.reason}


class SecretSpec(object):
    def __init__(self, name, namespace, component, keys):
        self.name = name
        self.namespace = namespace
        self.component = component
        self.keys = keys

    def as_dict(self):
        return {"name": self.name, "namespace": self.namespace, "component": self.component,
                "keys": [k.as_dict() for k in self.keys]}


_ALNUM = string.ascii_letters + string.digits


def generate_token(length=40, prefix=""):
    """A random value from the OS CSPRNG: letters and digits only (safe in URLs, shells and YAML)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _index in range(length))


GENERATORS = {
    "LITELLM_MASTER_KEY": lambda: generate_token(48, "sk-"),
    "LITELLM_SALT_KEY": lambda: generate_token(48),
    "POSTGRES_PASSWORD": lambda: generate_token(40),
    "QDRANT__SERVICE__API_KEY": lambda: generate_token(48),
    "WEBUI_SECRET_KEY": lambda: generate_token(48),
    "admin-password": lambda: generate_token(32),
    "GPU_DEMAND_TOKEN": lambda: generate_token(48),
    "NEO4J_AUTH": lambda: "neo4j/" + generate_token(40),   # the image's form: user neo4j, its password
    "SEARXNG_SECRET": lambda: generate_token(48),
    "LITELLM_KEY_": lambda: generate_token(48, "sk-"),   # every gateway key (LITELLM_KEY_<NAME>), like the master key
}


LITELLM_KEY_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
OPEN_WEBUI_KEY_NAME = "open-webui"
LLAMA_STACK_KEY_NAME = "llama-stack"   # Llama Stack's own gateway key (the litellm role's litellm_llama_stack_key)


def litellm_key_secret(name):
    """Where the gateway key ``name`` lives: ``(Secret name, its key, the .env key)``; the litellm role's Deployment
    references the same (templates/gateway.yaml.j2), its custom_auth hook reads env ``LITELLM_KEY_<NAME>``."""
    return "litellm-key-" + name, "api-key", "LITELLM_KEY_" + name.upper().replace("-", "_")


def _litellm_key_specs(names, namespace, errors):
    specs, seen = [], set()
    for name in names:
        if not isinstance(name, str) or not LITELLM_KEY_NAME_RE.match(name):
            errors.append("litellm_keys: name %r is not lower-case letters, digits and '-' (it names Secret "
                          "litellm-key-<name>)" % (name,))
            continue
        if name in seen:
            errors.append("litellm_keys: name %r is listed twice" % name)
            continue
        seen.add(name)
        secret, key, env = litellm_key_secret(name)
        specs.append(SecretSpec(secret, namespace, "litellm",
                                [KeySpec(key, env=env, policy="env_or_generate", generator=GENERATORS[env[:12]],
                                         reason="gateway key %r (docs/litellm.md \"Keys\")" % name)]))
    return specs


def secret_layout(components, models=None, namespace="ai-lab", grafana_namespace=None, grafana_admin_user="admin",
                  hf_token_required=False, litellm_extra_keys=None, litellm_keys=None):
    """The Secrets to manage and the origin of each key; returns ``(specs, errors)`` (errors are strings).

    ``components``: mapping component -> bool (see :data:`COMPONENTS`); ``models``: the catalog
    (only ``name`` and ``api_key_env`` are read here; the catalog itself is validated elsewhere).
    """
    errors = []
    components = dict(components or {})
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        errors.append("unknown component(s) %s: known are %s" % (", ".join(unknown), ", ".join(COMPONENTS)))
    specs = []
    if components.get("litellm"):
        keys = [KeySpec("LITELLM_MASTER_KEY", policy="env_or_generate", reason="LiteLLM master key",
                        generator=GENERATORS["LITELLM_MASTER_KEY"]),
                KeySpec("LITELLM_SALT_KEY", policy="env_or_generate", reason="LiteLLM salt key (encrypts stored credentials; never change it)",
                        generator=GENERATORS["LITELLM_SALT_KEY"])]
        seen = set(k.key for k in keys)
        for index, model in enumerate(models or []):
            if not isinstance(model, dict):
                continue
            env = model.get("api_key_env")
            if env in (None, ""):
                continue
            label = "model %r" % model.get("name", "#%d" % index)
            if not isinstance(env, str) or not KEY_RE.match(env):
                errors.append("gpu_lab_models: %s has api_key_env %r, which is not a valid variable name "
                              "(letters, digits and '_', not starting with a digit)" % (label, env))
                continue
            if env in seen:
                for spec_key in keys:
                    if spec_key.key == env and spec_key.policy == "env":
                        spec_key.reason += ", %s" % label
                continue
            seen.add(env)
            keys.append(KeySpec(env, policy="env", required=True, reason="api_key_env of %s" % label))
        for env in litellm_extra_keys or []:
            if not isinstance(env, str) or not KEY_RE.match(env):
                errors.append("litellm extra key %r is not a valid variable name" % (env,))
                continue
            if env in seen:
                continue
            seen.add(env)
            keys.append(KeySpec(env, policy="env", required=True, reason="extra LiteLLM environment key"))
        if components.get("gpu_demand"):
            # the gateway's hook sends it, the on-demand swap service checks it (both read litellm-env)
            keys.append(KeySpec("GPU_DEMAND_TOKEN", policy="env_or_generate",
                                reason="bearer token of the gpu_demand hook (docs/gpu_demand.md)",
                                generator=GENERATORS["GPU_DEMAND_TOKEN"]))
        specs.append(SecretSpec("litellm-env", namespace, "litellm", keys))
        names = [OPEN_WEBUI_KEY_NAME] if components.get("open_webui") else []
        names += [LLAMA_STACK_KEY_NAME] if components.get("llama_stack") else []
        for entry in litellm_keys or []:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if name == OPEN_WEBUI_KEY_NAME:
                errors.append("litellm_keys: the name open-webui is Open WebUI's own key: set litellm_open_webui_key "
                              "instead")
                continue
            if name == LLAMA_STACK_KEY_NAME:
                errors.append("litellm_keys: the name llama-stack is Llama Stack's own key: set "
                              "litellm_llama_stack_key instead")
                continue
            names.append(name)
        specs.extend(_litellm_key_specs(names, namespace, errors))
    elif components.get("gpu_demand"):
        errors.append("gpu_demand is enabled but litellm is not: the on-demand swap service is asked by the gateway; "
                      "enable litellm or disable gpu_demand")
    if components.get("litellm_postgres"):
        if not components.get("litellm"):
            errors.append("litellm_postgres is enabled but litellm is not: enable litellm or disable its Postgres")
        specs.append(SecretSpec("litellm-postgres", namespace, "litellm_postgres",
                                [KeySpec("POSTGRES_PASSWORD", policy="env_or_generate", reason="LiteLLM Postgres password",
                                         generator=GENERATORS["POSTGRES_PASSWORD"])]))
    specs.append(SecretSpec("hf-token", namespace, "huggingface",
                            [KeySpec("HF_TOKEN", policy="env", required=bool(hf_token_required),
                                     reason="Hugging Face token (gated repositories)")]))
    if components.get("qdrant"):
        specs.append(SecretSpec("qdrant-api-key", namespace, "qdrant",
                                [KeySpec("QDRANT__SERVICE__API_KEY", policy="env_or_generate", reason="Qdrant API key",
                                         generator=GENERATORS["QDRANT__SERVICE__API_KEY"])]))
    if components.get("neo4j"):
        specs.append(SecretSpec("neo4j-auth", namespace, "neo4j",
                                [KeySpec("NEO4J_AUTH", policy="env_or_generate",
                                         reason="Neo4j's neo4j/<password> (docs/neo4j.md)",
                                         generator=GENERATORS["NEO4J_AUTH"])]))
    if components.get("open_webui"):
        specs.append(SecretSpec("open-webui-secret", namespace, "open_webui",
                                [KeySpec("WEBUI_SECRET_KEY", policy="env_or_generate", reason="Open WebUI session secret",
                                         generator=GENERATORS["WEBUI_SECRET_KEY"])]))
    if components.get("searxng"):
        # server.secret_key of SearXNG (its env override SEARXNG_SECRET), never in its settings ConfigMap
        specs.append(SecretSpec("searxng-secret", namespace, "searxng",
                                [KeySpec("SEARXNG_SECRET", policy="env_or_generate", reason="SearXNG server secret_key",
                                         generator=GENERATORS["SEARXNG_SECRET"])]))
    if components.get("grafana"):
        specs.append(SecretSpec("grafana-admin", grafana_namespace or namespace, "grafana",
                                [KeySpec("admin-user", policy="literal", literal=grafana_admin_user, reason="Grafana admin user name"),
                                 KeySpec("admin-password", env="GRAFANA_ADMIN_PASSWORD", policy="env_or_generate",
                                         reason="Grafana admin password", generator=GENERATORS["admin-password"])]))
    return specs, errors


def _all_known_env_keys():
    known = set(PROVISION_KEYS)
    specs, _errors = secret_layout(dict((c, True) for c in COMPONENTS))
    for spec in specs:
        for key in spec.keys:
            if key.policy != "literal":
                known.add(key.env)
    return known


_COMPONENT_OF_ENV = {
    "LITELLM_MASTER_KEY": "litellm", "LITELLM_SALT_KEY": "litellm", "POSTGRES_PASSWORD": "litellm_postgres",
    "QDRANT__SERVICE__API_KEY": "qdrant", "WEBUI_SECRET_KEY": "open_webui", "GRAFANA_ADMIN_PASSWORD": "grafana",
    "GPU_DEMAND_TOKEN": "gpu_demand", "NEO4J_AUTH": "neo4j", "SEARXNG_SECRET": "searxng",
}


def validate(parsed, specs, example=None):
    """Check a :class:`ParseResult` against the layout; returns ``(errors, warnings, values)``.

    ``example``: the parsed ``.env.example`` (a :class:`ParseResult` or a dict), whose values
    count as placeholders. ``values``: env key -> value for every key the layout uses.
    Errors and warnings are :class:`DotenvProblem` objects (file:line when known).
    """
    errors = list(parsed.errors)
    warnings = list(parsed.warnings)
    example_values = {}
    if example is not None:
        example_values = example.values() if isinstance(example, ParseResult) else dict(example)
    entries = parsed.entries
    used = {}
    for spec in specs:
        for key in spec.keys:
            if key.policy != "literal":
                used.setdefault(key.env, []).append((spec, key))
    values = {}
    for env in sorted(used, key=lambda e: (entries[e].line if e in entries else 10 ** 9, e)):
        pairs = used[env]
        target = ", ".join("%s/%s" % (s.name, k.key) for s, k in pairs)
        required = any(k.required for _s, k in pairs)
        entry = entries.get(env)
        if entry is None:
            if required:
                reasons = "; ".join(k.reason for _s, k in pairs if k.required)
                errors.append(DotenvProblem(parsed.source, None, "%s is required (%s, for Secret %s) but is not set: add "
                                            "%s=<value> to the file (see .env.example)" % (env, reasons, target, env), env))
            continue
        if entry.value is None:
            errors.append(DotenvProblem(parsed.source, entry.line, "%s has no '=' and so no value (needed for Secret %s): "
                                        "write %s=<value>, or delete the line%s" % (
                                            env, target, env, "" if required else " to have it generated or omitted"), env))
            continue
        if entry.value.strip() == "":
            errors.append(DotenvProblem(parsed.source, entry.line, "%s is empty (needed for Secret %s): set a value, or "
                                        "delete the line%s" % (env, target, "" if required else
                                                               " to have it generated or omitted"), env))
            continue
        if is_placeholder(entry.value, example_values.get(env)):
            errors.append(DotenvProblem(parsed.source, entry.line, "%s still holds a placeholder (the value from "
                                        ".env.example, or one like <...>/changeme/xxxxxx): put the real value, or delete "
                                        "the line%s" % (env, "" if required else " to have it generated or omitted"), env))
            continue
        if env == "NEO4J_AUTH" and not (entry.value.startswith("neo4j/") and len(entry.value) >= 14):
            errors.append(DotenvProblem(parsed.source, entry.line, "NEO4J_AUTH must be neo4j/<password> with a password "
                                        "of at least 8 characters (the Neo4j image's form; user neo4j), or delete the "
                                        "line to have it generated", env))
            continue
        if entry.value != entry.value.strip():
            warnings.append(DotenvProblem(parsed.source, entry.line, "%s has leading or trailing whitespace inside its "
                                          "quotes; it is kept as written" % env, env))
        values[env] = entry.value
    known = None
    for env in parsed.order:
        if env in used or env in PROVISION_KEYS:
            continue
        line = entries[env].line
        if env in _COMPONENT_OF_ENV:
            warnings.append(DotenvProblem(parsed.source, line, "%s is ignored: component %s is not enabled"
                                          % (env, _COMPONENT_OF_ENV[env]), env))
            continue
        if known is None:
            known = sorted(_all_known_env_keys() | set(used))
        close = difflib.get_close_matches(env, known, n=1, cutoff=0.8)
        hint = " (did you mean %s?)" % close[0] if close else ""
        warnings.append(DotenvProblem(parsed.source, line, "%s is not used by any enabled Secret and is ignored%s"
                                      % (env, hint), env))
    return errors, warnings, values
