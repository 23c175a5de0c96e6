#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lab_secrets
short_description: Create the lab's Kubernetes Secrets from a .env file, validated first, values never shown
version_added: "0.1.0"
author:
  - ailab maintainers (@ailab)
description:
  - Reads the operator's C(.env) file itself (so no secret value ever travels through module arguments,
    Ansible variables or the module's temporary files), parses it with python-dotenv's parser and validates
    it against the Secrets that the enabled components need (see docs/secrets.md for the mapping).
  - Validation comes first. Malformed lines (with file and line number), invalid key names, duplicate
    keys (refused), required keys that are missing, empty values and placeholders copied from
    C(.env.example) all fail the task, with the full list, before any API call.
  - Internal secrets (LiteLLM master and salt keys, Postgres password, Qdrant API key, Open WebUI secret,
    Grafana admin password) are taken from C(.env) when set there, else kept from the existing Secret,
    else generated once with the OS random generator. An existing value is never replaced by a new random one.
  - Writes only what differs (create, or a strategic merge patch pinned to the resourceVersion read), so
    a second run reports no change. Keys no longer wanted are reported and kept unless O(prune=true).
  - Every value read or generated is registered as a no_log value; results and diffs hold key names and
    markers such as C(<redacted>) only, even at C(-vvv).
options:
  env_file:
    description:
      - Path of the C(.env) file on the host that runs the module (the controller, with C(delegate_to=localhost)).
    type: path
    required: true
  example_file:
    description:
      - Path of C(.env.example); a value equal to the example's value for the same key is refused as a placeholder.
      - Values that are obviously placeholders (V(<...>), V(changeme), V(xxxxxx), ...) are refused without it too.
    type: path
  namespace:
    description: Namespace of the lab's Secrets.
    type: str
    default: ai-lab
  grafana_namespace:
    description: Namespace of the C(grafana-admin) Secret (where kube-prometheus-stack runs); O(namespace) when omitted.
    type: str
  components:
    description: The components enabled in the inventory; each enabled component gets its Secret.
    type: dict
    default: {}
    suboptions:
      litellm:
        description: LiteLLM gateway; Secret C(litellm-env) (master and salt keys, provider keys of the catalog).
        type: bool
        default: true
      litellm_postgres:
        description: LiteLLM's Postgres; Secret C(litellm-postgres) (C(POSTGRES_PASSWORD)).
        type: bool
        default: false
      qdrant:
        description: Qdrant; Secret C(qdrant-api-key) (C(QDRANT__SERVICE__API_KEY)).
        type: bool
        default: true
      open_webui:
        description: Open WebUI; Secret C(open-webui-secret) (C(WEBUI_SECRET_KEY)).
        type: bool
        default: true
      grafana:
        description: Grafana of kube-prometheus-stack; Secret C(grafana-admin) (C(admin-user), C(admin-password)).
        type: bool
        default: true
      gpu_demand:
        description: The on-demand swap service; key C(GPU_DEMAND_TOKEN) of Secret C(litellm-env) (the bearer token its
          gateway hook sends; generated when C(.env) has none). Needs O(components.litellm).
        type: bool
        default: false
      neo4j:
        description: Neo4j; Secret C(neo4j-auth) (C(NEO4J_AUTH), C(neo4j/<password>), generated when C(.env) has none).
        type: bool
        default: false
      searxng:
        description: SearXNG (Open WebUI's web search); Secret C(searxng-secret) (C(SEARXNG_SECRET), its server secret_key).
        type: bool
        default: false
      llama_stack:
        description: Llama Stack; Secret C(litellm-key-llama-stack) (key C(api-key), its own gateway key, from C(.env)
          C(LITELLM_KEY_LLAMA_STACK) or generated). Needs O(components.litellm).
        type: bool
        default: false
  models:
    description:
      - The model catalog (C(gpu_lab_models)). Every C(api_key_env) named there must be set in C(.env) and lands in C(litellm-env).
    type: list
    elements: dict
    default: []
  litellm_extra_keys:
    description: Further C(.env) keys to copy into C(litellm-env) (required when listed).
    type: list
    elements: str
    default: []
  litellm_keys:
    description:
      - The gateway keys (the litellm role's C(litellm_keys); only C(name) is read here). Each gets Secret
        C(litellm-key-<name>) with key C(api-key), from C(.env) C(LITELLM_KEY_<NAME>) (upper case, C(-) as C(_)), else
        kept, else generated. Open WebUI's own key C(open-webui) is added while C(components.open_webui) is on.
    type: list
    elements: raw
    default: []
  hf_token_required:
    description:
      - Fail when C(HF_TOKEN) is not in C(.env). Otherwise C(hf-token) is written only when C(HF_TOKEN) is set.
    type: bool
    default: false
  grafana_admin_user:
    description: The Grafana admin user name (not a secret) stored as C(admin-user).
    type: str
    default: admin
  interpolate:
    description: Expand C(${VAR}) and C(${VAR:-default}) in values as python-dotenv does; undefined names are errors.
    type: bool
    default: true
  prune:
    description:
      - Remove keys of the managed Secrets that are no longer wanted (a provider key whose model left the catalog,
        C(HF_TOKEN) removed from C(.env), ...). A managed Secret is never deleted, and generated keys are always wanted.
    type: bool
    default: false
  create_namespace:
    description: Create the namespace(s) when missing (after validation succeeded).
    type: bool
    default: true
  validate_only:
    description: Parse and validate the C(.env) file, then stop without contacting the cluster.
    type: bool
    default: false
extends_documentation_fragment:
  - ailab.gpu_lab.kubernetes
attributes:
  check_mode:
    support: full
    description: Reads the cluster and reports what would change; values that would be generated are not drawn.
  diff_mode:
    support: full
    description: Shows per Secret which keys are added, changed, kept or removed; every value is shown as C(<redacted>).
requirements:
  - python-dotenv
  - kubernetes (Python library), only for kubeconfigs beyond certificates and tokens (see the connection options)
notes:
  - The task needs no C(no_log), and should not have one, because C(no_log) would also hide the redacted diff.
    No argument of this module is a secret, and the module never returns a value.
seealso:
  - plugin: ailab.gpu_lab.dotenv_parse
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Create or update the lab's Secrets from .env
  ailab.gpu_lab.lab_secrets:
    env_file: "{{ playbook_dir }}/../.env"
    example_file: "{{ playbook_dir }}/../.env.example"
    kubeconfig: ~/.kube/gpu_lab/gpu1.yaml
    namespace: ai-lab
    components:
      litellm: true
      litellm_postgres: true
    models: "{{ gpu_lab_models }}"
  delegate_to: localhost

- name: Only check the .env file (no cluster needed)
  ailab.gpu_lab.lab_secrets:
    env_file: .env
    validate_only: true
    models: "{{ gpu_lab_models }}"
  delegate_to: localhost
"""

RETURN = r"""
secrets:
  description: One entry per managed Secret; key names only, never values.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Secret name., type: str, returned: always}
    namespace: {description: Its namespace., type: str, returned: always}
    component: {description: The component it serves., type: str, returned: always}
    action:
      description: V(create), V(update), V(none), V(skip) (nothing to store, e.g. no C(HF_TOKEN)), or V(validated).
      type: str
      returned: always
    keys: {description: Keys the Secret holds after the run., type: list, elements: str, returned: unless validate_only}
    added: {description: Keys added from C(.env)., type: list, elements: str, returned: unless validate_only}
    updated: {description: Keys whose value changed., type: list, elements: str, returned: unless validate_only}
    generated: {description: Keys given a new random value (absent or empty before)., type: list, elements: str, returned: unless validate_only}
    kept: {description: Keys left as they were., type: list, elements: str, returned: unless validate_only}
    removed: {description: Keys removed by O(prune)., type: list, elements: str, returned: unless validate_only}
    stale: {description: Keys no longer wanted but kept (O(prune=false))., type: list, elements: str, returned: unless validate_only}
mapping:
  description: The layout used (Secret, key, C(.env) key, source), as documented in docs/secrets.md.
  returned: always
  type: list
  elements: dict
namespaces_created:
  description: Namespaces that were (or in check mode would be) created.
  returned: unless validate_only
  type: list
  elements: str
errors:
  description: On failure, every problem found, as C(file:line) then the message.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ailab.gpu_lab.plugins.module_utils.kube import KUBE_ARG_SPEC
from ansible_collections.ailab.gpu_lab.plugins.module_utils.lab_secrets import LabSecrets


def main():
    argument_spec = dict(
        env_file=dict(type="path", required=True),
        example_file=dict(type="path"),
        namespace=dict(type="str", default="ai-lab"),
        grafana_namespace=dict(type="str"),
        components=dict(type="dict", default={}, options=dict(
            litellm=dict(type="bool", default=True),
            litellm_postgres=dict(type="bool", default=False),
            qdrant=dict(type="bool", default=True),
            open_webui=dict(type="bool", default=True),
            grafana=dict(type="bool", default=True),
            gpu_demand=dict(type="bool", default=False),
            neo4j=dict(type="bool", default=False),
            searxng=dict(type="bool", default=False),
            llama_stack=dict(type="bool", default=False),
        )),
        models=dict(type="list", elements="dict", default=[]),
        litellm_extra_keys=dict(type="list", elements="str", default=[], no_log=False),
        litellm_keys=dict(type="list", elements="raw", default=[], no_log=False),
        hf_token_required=dict(type="bool", default=False),
        grafana_admin_user=dict(type="str", default="admin"),
        interpolate=dict(type="bool", default=True),
        prune=dict(type="bool", default=False),
        create_namespace=dict(type="bool", default=True),
        validate_only=dict(type="bool", default=False),
    )
    argument_spec.update(KUBE_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module.exit_json(**LabSecrets(module).run())


if __name__ == "__main__":
    main()
