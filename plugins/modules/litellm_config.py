#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: litellm_config
short_description: Render and validate a LiteLLM proxy config from the model catalog
version_added: 0.1.0
description:
  - Builds the LiteLLM proxy C(config.yaml) from a structured config and/or the model catalog
    (C(gpu_lab_models), C(gpu_lab_routes)), validates it, and writes it to O(dest) and/or returns it,
    with a stable RV(checksum) that changes exactly when the rendered config changes (the litellm role
    puts it in a pod annotation, so a new config rolls the Deployment, because LiteLLM has no hot reload).
  - Rejects what LiteLLM itself would silently accept and then misbehave on, each with a message naming
    the entry and the fix - unknown top-level or section keys (with a did-you-mean), a model without a
    known provider prefix, V(vllm/) where V(hosted_vllm/) was meant, self-hosted providers without
    C(api_base), C(/v1) on an Ollama base or missing on vLLM, duplicate aliases (unless
    O(allow_duplicate_aliases)), an invalid C(routing_strategy), fallbacks naming unknown aliases, literal
    secrets where an C(os.environ/) reference belongs (unless O(allow_literal_secrets)), no master key,
    embedding models without C(mode=embedding), and C(os.environ/) variables that O(provided_env) does not
    list.
  - Catalog schema - see docs/catalog.md. Catalog models are appended to C(config.model_list); routes to
    C(router_settings.fallbacks), the route C(default) becomes C(router_settings.default_fallbacks).
author:
  - ailab.gpu_lab contributors (@ailab)
options:
  config:
    description:
      - A structured LiteLLM config (C(model_list), C(litellm_settings), C(router_settings),
        C(general_settings), ...). It must not contain secrets, only C(os.environ/NAME) references.
    type: dict
  models:
    description:
      - The model catalog (C(gpu_lab_models)); its entries become C(model_list) entries.
    type: list
    elements: dict
  routes:
    description:
      - C(gpu_lab_routes), alias -> ordered list of fallback aliases.
    type: dict
  namespace:
    description:
      - Namespace of the in-cluster C(vllm) and C(ollama) Services the catalog's self-hosted models point at.
    type: str
    default: ai-lab
  vllm_api_base:
    description:
      - Base URL of vLLM (ending in C(/v1)) instead of the in-cluster Service.
    type: str
  ollama_api_base:
    description:
      - Base URL of the GPU Ollama (chat models; no C(/v1)) instead of the in-cluster Service.
    type: str
  ollama_embed_api_base:
    description:
      - Base URL of the CPU Ollama that serves the catalog's Ollama embedding models (C(mode=embedding); no C(/v1))
        instead of the in-cluster Service C(ollama-embed).
    type: str
  provided_env:
    description:
      - Names of the environment variables the LiteLLM pod receives (the keys of the C(litellm-env) Secret).
        When given, every C(os.environ/NAME) in the config must be one of them.
    type: list
    elements: str
  allow_duplicate_aliases:
    description:
      - Allow several C(model_list) entries with the same C(model_name) (LiteLLM load-balances them).
    type: bool
    default: false
  allow_literal_secrets:
    description:
      - Allow literal values for keys that hold secrets (C(api_key), C(master_key), passwords, ...).
    type: bool
    default: false
  allow_unknown_keys:
    description:
      - Dotted keys to accept although this module does not know them, for settings of a newer LiteLLM
        (for example V(litellm_settings.some_new_flag)).
    type: list
    elements: str
    default: []
  dest:
    description:
      - File to write the rendered config to. Without it the config is only returned.
      - Written atomically, only when the content differs.
    type: path
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    description: Validates and renders, reports whether O(dest) would change, writes nothing.
  diff_mode:
    support: full
    description: Shows the old and new content of O(dest).
notes:
  - Validation rules and the LiteLLM behaviour they prevent are listed in docs/litellm.md.
  - The model catalog (O(models), O(routes)) is described in docs/catalog.md in the collection.
"""

EXAMPLES = r"""
- name: Render the gateway config from the catalog
  ailab.gpu_lab.litellm_config:
    models: "{{ gpu_lab_models }}"
    routes: "{{ gpu_lab_routes | default({}) }}"
    namespace: ai-lab
    provided_env: "{{ ['LITELLM_MASTER_KEY', 'LITELLM_SALT_KEY'] + (gpu_lab_models | ailab.gpu_lab.catalog_env_names) }}"
    config:
      general_settings:
        master_key: os.environ/LITELLM_MASTER_KEY
      litellm_settings:
        callbacks: [prometheus]
  register: litellm_rendered

- name: Write it to a file as well, for review
  ailab.gpu_lab.litellm_config:
    config: "{{ litellm_rendered.config }}"
    dest: /tmp/litellm-config.yaml
    mode: "0644"
"""

RETURN = r"""
config:
  description: The assembled config (structured).
  returned: success
  type: dict
content:
  description: The rendered YAML (canonical - sorted keys).
  returned: success
  type: str
checksum:
  description: SHA-256 of RV(content); stable for the same config whatever the key order of the input.
  returned: success
  type: str
  sample: 3f0a...e1
env:
  description: Environment variable names the config references as C(os.environ/NAME).
  returned: success
  type: list
  elements: str
  sample: [ANTHROPIC_API_KEY, LITELLM_MASTER_KEY]
models:
  description: The aliases (C(model_name)) the gateway serves, in order.
  returned: success
  type: list
  elements: str
dest:
  description: The file written (null when O(dest) is not set).
  returned: success
  type: str
errors:
  description: Every problem found, one sentence each (also joined in C(msg)).
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ailab.gpu_lab.plugins.module_utils.litellm_config import ARGUMENT_SPEC, run_module


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, add_file_common_args=True)
    run_module(module)


if __name__ == "__main__":
    main()
