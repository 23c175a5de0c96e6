"""secrets_source external-secrets (docs/secrets.md, "External Secrets"): the ExternalSecrets derive from the very
layout the .env path writes, and are valid against External Secrets Operator's CRDs (generated from its API types,
tools/external-secrets-crds.sh). The API server's word on them: tests/functional/test_secrets_external.py."""

import copy

import pytest

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets
from ansible_collections.ailab.gpu_lab.plugins.module_utils import external_secrets as es
from ansible_collections.ailab.gpu_lab.plugins.module_utils.lab_secrets import desired_labels
from tests.support.catalog_example import load_example_catalog
from tests.support.external_secrets_crds import schema_problems

ALL = dict((c, True) for c in dotenv_secrets.COMPONENTS)
LAYOUT = dict(components=ALL, models=load_example_catalog()["gpu_lab_models"], namespace="lab",
              grafana_namespace="monitoring", litellm_extra_keys=["LANGFUSE_SECRET_KEY"])


def test_same_secrets_keys_and_labels_as_the_dotenv_path():
    objects, errors = es.external_secrets("bitwarden", "gpu-lab/", "15m", **LAYOUT)
    assert errors == []
    specs, _errors = dotenv_secrets.secret_layout(**LAYOUT)
    by_name = {o["metadata"]["name"]: o for o in objects}
    # every Secret of the layout but hf-token (HF_TOKEN is optional there: not read from the store)
    assert sorted(by_name) == sorted(s.name for s in specs if s.name != "hf-token")
    for spec in specs:
        if spec.name == "hf-token":
            continue
        obj = by_name[spec.name]
        assert obj["metadata"]["namespace"] == spec.namespace
        assert obj["metadata"]["labels"] == desired_labels(spec)
        assert obj["spec"]["target"]["name"] == spec.name
        assert obj["spec"]["target"]["template"]["metadata"]["labels"] == desired_labels(spec)
        assert obj["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "bitwarden"}
        assert obj["spec"]["refreshInterval"] == "15m"
        fetched = {d["secretKey"]: d["remoteRef"]["key"] for d in obj["spec"]["data"]}
        literal = obj["spec"]["target"]["template"].get("data", {})
        # each key once, from the store under its .env name, or literal
        assert sorted(list(fetched) + list(literal)) == sorted(k.key for k in spec.keys)
        for key in spec.keys:
            if key.policy == "literal":
                assert literal[key.key] == key.literal
            else:
                assert fetched[key.key] == "gpu-lab/" + key.env
    assert by_name["grafana-admin"]["metadata"]["namespace"] == "monitoring"
    assert by_name["grafana-admin"]["spec"]["target"]["template"]["data"] == {"admin-user": "admin"}
    # SearXNG's secret_key comes from the store too, under its .env name
    assert [(d["secretKey"], d["remoteRef"]["key"]) for d in by_name["searxng-secret"]["spec"]["data"]] == [
        ("SEARXNG_SECRET", "gpu-lab/SEARXNG_SECRET")]
    litellm_keys = [d["secretKey"] for d in by_name["litellm-env"]["spec"]["data"]]
    assert {"LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "ANTHROPIC_API_KEY", "LANGFUSE_SECRET_KEY"} <= set(litellm_keys)


def test_hf_token_read_when_required():
    objects, _errors = es.external_secrets("bitwarden", **dict(LAYOUT, hf_token_required=True))
    hf = [o for o in objects if o["metadata"]["name"] == "hf-token"]
    assert [d["remoteRef"]["key"] for d in hf[0]["spec"]["data"]] == ["HF_TOKEN"]


def test_valid_against_the_external_secrets_crds():
    objects, _errors = es.external_secrets("bitwarden", "gpu-lab/", "0s", **dict(LAYOUT, hf_token_required=True))
    assert objects
    for obj in objects:
        assert schema_problems(obj) == [], obj["metadata"]["name"]


def test_the_schema_check_can_fail():
    """The check above is no echo: what the CRDs refuse is refused here."""
    obj, _errors = es.external_secrets("bitwarden", **LAYOUT)
    bad = copy.deepcopy(obj[0])
    bad["spec"]["secretStoreRef"]["kind"] = "Vault"
    bad["spec"]["target"]["creationPolicy"] = "Sometimes"
    bad["spec"]["data"][0]["remoteRef"]["keyy"] = "x"
    bad["spec"]["data"][1]["secretKey"] = "not a key!"
    problems = "\n".join(schema_problems(bad))
    assert "'Vault' is not one of ['SecretStore', 'ClusterSecretStore']" in problems
    assert "'Sometimes' is not one of" in problems
    assert ".spec.data[0].remoteRef.keyy: unknown field" in problems
    assert "'not a key!' does not match" in problems


def test_nothing_secret_in_the_objects():
    objects, _errors = es.external_secrets("bitwarden", **LAYOUT)
    text = repr(objects)
    for obj in objects:  # only key names and the store's name: no value, no generated token
        assert "stringData" not in obj["spec"] and "value" not in text


@pytest.mark.parametrize("store, prefix, interval, message", [
    ("", "", "1h", "secrets_external_secrets_store '' is not the name of a ClusterSecretStore"),
    ("Bitwarden Store", "", "1h", "secrets_external_secrets_store 'Bitwarden Store' is not the name"),
    ("bitwarden", "a b", "1h", "secrets_external_secrets_key_prefix 'a b' may hold only"),
    ("bitwarden", "", "1 hour", "secrets_external_secrets_refresh_interval '1 hour' is not a Go duration"),
])
def test_bad_inputs_named(store, prefix, interval, message):
    objects, errors = es.external_secrets(store, prefix, interval, **LAYOUT)
    assert objects == [] and any(message in e for e in errors), errors


def test_layout_errors_reported_with_the_inputs():
    objects, errors = es.external_secrets("", components={"gpu_demand": True})
    assert objects == [] and len(errors) == 2
    assert "gpu_demand is enabled but litellm is not" in errors[1]
