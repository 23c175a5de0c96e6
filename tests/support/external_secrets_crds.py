"""External Secrets Operator's CRDs, as upstream generates them from its API types (tools/external-secrets-crds.sh
fetches the pinned release from the Go module proxy), and a check of objects against their schemas.

``schema_problems`` does what the API server does with a custom resource's body before it stores it: the
openAPIV3Schema of the served version validated with jsonschema (types, enums, patterns, required), and every
field the schema does not declare reported (the API server's ``fieldValidation=Strict``, the default of
``kubectl apply``: "unknown field"). The tests also apply the objects to the real API server with the CRDs
installed (tests/functional/test_secrets_external.py), which is the final word.
"""

from __future__ import annotations

import functools
import os
import subprocess

import jsonschema
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = {"ExternalSecret": "external-secrets.io_externalsecrets.yaml",
         "ClusterSecretStore": "external-secrets.io_clustersecretstores.yaml"}


@functools.lru_cache(maxsize=None)
def crd_dir() -> str:
    proc = subprocess.run(["bash", os.path.join(REPO, "tools", "external-secrets-crds.sh")], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("tools/external-secrets-crds.sh failed (it needs Go and the Go module proxy): "
                           + proc.stderr[-2000:])
    return proc.stdout.strip()


def crd_files() -> list[str]:
    return [os.path.join(crd_dir(), name) for name in KINDS.values()]


@functools.lru_cache(maxsize=None)
def crd(kind: str) -> dict:
    with open(os.path.join(crd_dir(), KINDS[kind]), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def schema(kind: str, version: str) -> dict:
    for entry in crd(kind)["spec"]["versions"]:
        if entry["name"] == version and entry.get("served"):
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{kind} {version} is not a served version of {crd(kind)['metadata']['name']}")


def _unknown_fields(node, node_schema, path):
    if isinstance(node, dict) and node_schema.get("type") == "object":
        props = node_schema.get("properties")
        extra = node_schema.get("additionalProperties")
        if props is None and extra is None:  # free-form (metadata, x-kubernetes-preserve-unknown-fields)
            return []
        problems = []
        for key, value in node.items():
            if props is not None and key in props:
                problems += _unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                problems += _unknown_fields(value, extra, f"{path}.{key}")
            else:
                problems.append(f"{path}.{key}: unknown field")
        return problems
    if isinstance(node, list) and isinstance(node_schema.get("items"), dict):
        return [p for i, item in enumerate(node) for p in _unknown_fields(item, node_schema["items"], f"{path}[{i}]")]
    return []


def schema_problems(obj: dict) -> list[str]:
    """Problems of ``obj`` against the CRD schema of its kind and version (empty: valid)."""
    group, _sep, version = obj["apiVersion"].rpartition("/")
    assert group == crd(obj["kind"])["spec"]["group"], obj["apiVersion"]
    spec_schema = schema(obj["kind"], version)
    validator = jsonschema.Draft7Validator(spec_schema, format_checker=jsonschema.FormatChecker())
    problems = ["%s: %s" % ("/".join(map(str, err.absolute_path)) or "(object)", err.message)
                for err in validator.iter_errors(obj)]
    return problems + _unknown_fields(obj, spec_schema, "")
