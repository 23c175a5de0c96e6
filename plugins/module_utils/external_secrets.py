# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Secrets as External Secrets Operator objects (``secrets_source: external-secrets``, docs/secrets.md).

One ``ExternalSecret`` (external-secrets.io/v1) per Secret of ``dotenv_secrets.secret_layout()``, the very layout
the ``.env`` path writes: same Secret names, namespaces, keys and labels. Each key is read from the
ClusterSecretStore the user names, under the name it has in ``.env`` (``<key_prefix><ENV_NAME>``). The keys the
``.env`` path would generate (policy ``env_or_generate``) must be in the store too: a generator could not give
LiteLLM's master key its ``sk-`` prefix, and would draw a new salt key whenever the ExternalSecret is recreated.
Literal keys (Grafana's ``admin-user``) come from the ExternalSecret's template. Nothing secret is rendered: the
objects hold key names only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.ailab.gpu_lab.plugins.module_utils import dotenv_secrets
from ansible_collections.ailab.gpu_lab.plugins.module_utils.lab_secrets import desired_labels

API_VERSION = "external-secrets.io/v1"
STORE_KIND = "ClusterSecretStore"
# the CRDs the role needs served before it applies anything
CRDS = ("externalsecrets.external-secrets.io", "clustersecretstores.external-secrets.io")

DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Go's time.ParseDuration, as the operator parses spec.refreshInterval ("0s": fetch once)
DURATION_RE = re.compile(u"^([0-9]+(\\.[0-9]+)?(ns|us|\u00b5s|ms|s|m|h))+$")
KEY_PREFIX_RE = re.compile(r"^[A-Za-z0-9._/-]*$")


def fetched_keys(spec):
    """The keys of a SecretSpec read from the store: all but the literal ones and the optional ``.env`` keys
    (``HF_TOKEN`` unless required: a key missing from the store fails the whole ExternalSecret)."""
    return [key for key in spec.keys
            if key.policy == "env_or_generate" or (key.policy == "env" and key.required)]


def check_inputs(store, key_prefix="", refresh_interval="1h"):
    """Errors (strings naming the role variable) of the External Secrets inputs."""
    errors = []
    if not isinstance(store, str) or not store or len(store) > 253 or not DNS_SUBDOMAIN_RE.match(store):
        errors.append("secrets_external_secrets_store %r is not the name of a ClusterSecretStore (a lowercase DNS "
                      "name, e.g. 'bitwarden'): name the store that holds the lab's keys (docs/secrets.md, "
                      "\"External Secrets\")" % (store,))
    if not isinstance(key_prefix, str) or not KEY_PREFIX_RE.match(key_prefix):
        errors.append("secrets_external_secrets_key_prefix %r may hold only letters, digits and . _ / -"
                      % (key_prefix,))
    if not isinstance(refresh_interval, str) or not DURATION_RE.match(refresh_interval):
        errors.append("secrets_external_secrets_refresh_interval %r is not a Go duration such as '1h', '15m' or "
                      "'0s' (fetch once)" % (refresh_interval,))
    return errors


def external_secret(spec, store, key_prefix="", refresh_interval="1h"):
    """The ExternalSecret for one SecretSpec, or None when no key of it is read from the store."""
    keys = fetched_keys(spec)
    if not keys:
        return None
    labels = desired_labels(spec)
    template = {"engineVersion": "v2", "mergePolicy": "Merge", "metadata": {"labels": dict(labels)}}
    literal = dict((key.key, key.literal) for key in spec.keys if key.policy == "literal")
    if literal:
        template["data"] = literal
    return {
        "apiVersion": API_VERSION,
        "kind": "ExternalSecret",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "refreshInterval": refresh_interval,
            "secretStoreRef": {"kind": STORE_KIND, "name": store},
            "target": {"name": spec.name, "creationPolicy": "Owner", "deletionPolicy": "Retain",
                       "template": template},
            "data": [{"secretKey": key.key, "remoteRef": {"key": key_prefix + key.env}} for key in keys],
        },
    }


def external_secrets(store, key_prefix="", refresh_interval="1h", **layout):
    """``(objects, errors)``: the ExternalSecrets for ``secret_layout(**layout)``, or the errors of the inputs and
    of the layout (every one; no object when there is any)."""
    specs, errors = dotenv_secrets.secret_layout(**layout)
    errors = check_inputs(store, key_prefix, refresh_interval) + list(errors)
    if errors:
        return [], errors
    objects = [external_secret(spec, store, key_prefix, refresh_interval) for spec in specs]
    return [obj for obj in objects if obj is not None], []
