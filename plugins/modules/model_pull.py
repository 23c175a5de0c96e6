#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_pull
short_description: Pull Ollama models and download Hugging Face snapshots, idempotently, with progress
version_added: 0.1.0
description:
  - Makes a model available to the lab's inference servers, safe to repeat and visible while it runs.
  - C(backend=ollama) drives the Ollama HTTP API. C(state=present) reads C(/api/tags) first and pulls only
    when the model is missing; C(state=latest) always pulls and reports C(changed) only if the digest changed;
    C(state=absent) deletes; C(state=unloaded) frees (V)RAM with C(keep_alive=0) (used by the gpu_swap role).
    Pulls stream C(/api/pull), fail with the server's message when an C(error) line arrives (even with
    HTTP 200), and retry a dropped connection (Ollama resumes partial layers).
  - C(backend=huggingface) (or C(vllm), the catalog's name) downloads a repository snapshot with
    C(huggingface_hub.snapshot_download) into a hub cache directory, the layout vLLM reads with
    C(--download-dir) / C(HF_HUB_CACHE), so that vLLM can start with C(HF_HUB_OFFLINE=1).
    A pinned snapshot already complete in the cache is recognised without any network request.
  - Optionally verifies a model signature with the C(model-signing) library (key or certificate based) and
    fails if the files do not match.
  - Progress of long transfers (bytes and percent) is shown on the controller by the action plugin of the same
    name, which runs the module asynchronously and polls a progress file; see docs/model_pull.md.
  - Runs on the host that should hold the files (the GPU host for Hugging Face snapshots, writing into the
    model volume's host path), or anywhere that reaches the Ollama API for Ollama.
author:
  - ailab maintainers (@ailab)
requirements:
  - huggingface_hub (backend huggingface only)
  - model-signing (only with O(verify))
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reports what would be pulled, downloaded or deleted. For C(state=latest) on a model already present the
        result is C(changed=false), since Ollama tells whether a newer digest exists only by pulling.
      - For a Hugging Face revision given as a branch name, check mode asks the endpoint which commit it means
        and lists the files that would be downloaded (metadata requests only).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - Ollama, the list of local models before and after; Hugging Face, the snapshot's files before and after.
  async:
    description: Supports being used with the C(async) keyword; the action plugin itself runs long pulls as async jobs.
    support: full
options:
  backend:
    description:
      - Where the model comes from. V(ollama) (an Ollama tag), V(huggingface) (a repo snapshot for vLLM), or
        V(vllm), a synonym of V(huggingface) matching the model catalog's backend names.
      - Hosted providers (openai, anthropic, ...) have nothing to download and are rejected with that explanation.
    type: str
    required: true
  source:
    description:
      - The Ollama model tag (C(llama3.1:8b); a missing tag means C(:latest)) or the Hugging Face repo id
        (C(Qwen/Qwen2.5-7B-Instruct-AWQ)), i.e. the catalog entry's C(source).
      - Optional only with O(state=unloaded), where leaving it out unloads every loaded model.
    type: str
    aliases: [name, model, repo_id]
  state:
    description:
      - V(present) downloads only what is missing; V(latest) (Ollama) pulls again and reports a changed digest;
        V(absent) deletes the model (Ollama) or the cached revision(s) (Hugging Face; all revisions when
        O(revision) is not set); V(unloaded) (Ollama) unloads it from memory and waits until C(/api/ps) no longer
        lists it.
    type: str
    default: present
    choices: [present, absent, latest, unloaded]
  ollama_url:
    description:
      - Base URL of the Ollama API, without C(/v1). In the cluster, C(http://ollama.<namespace>.svc.cluster.local:11434).
    type: str
    default: http://127.0.0.1:11434
  timeout:
    description:
      - Seconds without any data from the server before a transfer is abandoned (an idle timeout, not a limit on
        the whole pull, so that a slow but moving 40 GB pull is not killed). Also the Hugging Face request timeout.
    type: int
    default: 300
  max_duration:
    description:
      - Upper bound in seconds for one whole Ollama pull (checked at every stream line). A pull stopped by it
        resumes where it stopped on the next run.
      - Also the async time limit (plus 120 s) the action plugin gives the job; for a Hugging Face download that
        limit is the only bound (the module itself does not time the download).
    type: int
    default: 21600
  retries:
    description:
      - How many dropped connections in a row without progress are retried (Ollama resumes partial layers).
        A drop after progress resets the count. Hugging Face downloads use huggingface_hub's own resume logic.
    type: int
    default: 3
  retry_delay:
    description: Seconds to wait before reconnecting after a dropped connection.
    type: float
    default: 2.0
  unload_wait:
    description: With O(state=unloaded), seconds to wait until Ollama no longer lists the model as loaded.
    type: int
    default: 60
  revision:
    description:
      - Hugging Face git revision. Pin the 40-hex commit sha (the catalog requires it for vLLM); only a pinned,
        complete snapshot is recognised without asking the network, and vLLM offline mode resolves it reliably.
        A branch or tag works (default C(main)) but warns.
      - With O(state=absent), the revision to delete (all cached revisions when unset).
    type: str
  allow_patterns:
    description:
      - Only download files matching one of these glob patterns (C(huggingface_hub) semantics). An entry without
        wildcards names a file that must exist, so a typo fails instead of silently downloading nothing.
    type: list
    elements: str
  ignore_patterns:
    description: Skip files matching any of these glob patterns.
    type: list
    elements: str
  cache_dir:
    description:
      - Hugging Face hub cache directory on the target, e.g. the model volume's host path C(/var/lib/ai-lab/models/hub).
        Point vLLM at the same directory (C(--download-dir) or C(HF_HUB_CACHE)) and run it with C(HF_HUB_OFFLINE=1).
      - Defaults to huggingface_hub's own default (C(HF_HUB_CACHE), else C(~/.cache/huggingface/hub)).
    type: path
  hf_endpoint:
    description:
      - Hugging Face endpoint or mirror (the C(HF_ENDPOINT) of huggingface_hub). Defaults to C(HF_ENDPOINT) in the
        target's environment, else C(https://huggingface.co).
    type: str
  hf_token:
    description:
      - Token for private or gated repositories. Never logged nor returned. Defaults to the library's own lookup
        (C(HF_TOKEN) in the environment, or a saved login).
    type: str
  verify:
    description:
      - Verify the downloaded snapshot against a model-signing signature; the task fails if any file differs,
        is missing or is extra. Runs on every run (it re-hashes the files, which takes minutes for tens of GB).
    type: dict
    suboptions:
      method:
        description: V(key) (elliptic-curve public key) or V(certificate) (certificate chain).
        type: str
        default: key
        choices: [key, certificate]
      signature:
        description:
          - The signature file, relative to the snapshot (published in the repo; it is added to O(allow_patterns)
            automatically) or an absolute path on the target.
        type: str
        default: model.sig
      public_key:
        description: PEM public key file on the target (O(verify.method=key)).
        type: path
      certificate_chain:
        description: PEM certificates establishing trust in the signing certificate (O(verify.method=certificate)).
        type: list
        elements: path
        default: []
      hash_algorithm:
        description: The hash used when the model was signed.
        type: str
        default: sha256
        choices: [sha256, blake2]
  progress:
    description:
      - Show progress on the controller during long transfers (handled by the action plugin; ignored by the module).
        Turned off when the task has its own C(async).
    type: bool
    default: true
  progress_interval:
    description: Seconds between progress lines on the controller (action plugin).
    type: int
    default: 10
  progress_file:
    description:
      - File on the target where the module keeps its current progress as JSON (removed when it ends). Set by the
        action plugin; only useful to a caller that runs the module with its own C(async) and wants to watch it.
    type: path
notes:
  - Ollama keeps partial layers of an interrupted pull and resumes them; so does C(huggingface_hub) within one run
    (HTTP Range, from the last whole 10 MiB chunk it wrote). A snapshot download interrupted between runs restarts
    the unfinished files.
  - Ollama verifies each layer's sha256 itself; O(verify) applies to Hugging Face snapshots.
"""

EXAMPLES = r"""
- name: Make sure llama3.1:8b is pulled into the lab's Ollama
  ailab.gpu_lab.model_pull:
    backend: ollama
    source: llama3.1:8b
    ollama_url: http://127.0.0.1:11434

- name: Follow the tag (changed only when the registry's digest moved)
  ailab.gpu_lab.model_pull:
    backend: ollama
    source: nomic-embed-text
    state: latest

- name: Free the GPU held by Ollama before a swap
  ailab.gpu_lab.model_pull:
    backend: ollama
    state: unloaded

- name: Download the vLLM model into the model volume (vLLM then runs with HF_HUB_OFFLINE=1)
  ailab.gpu_lab.model_pull:
    backend: huggingface
    source: Qwen/Qwen2.5-7B-Instruct-AWQ
    revision: "{{ qwen_revision }}"
    cache_dir: /var/lib/ai-lab/models/hub
    allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    hf_token: "{{ lookup('ansible.builtin.env', 'HF_TOKEN') | default(omit, true) }}"
    verify:
      method: key
      public_key: /etc/ai-lab/model-signing.pub

- name: Every download the catalog needs
  ailab.gpu_lab.model_pull:
    backend: "{{ item.backend }}"
    source: "{{ item.source }}"
    revision: "{{ item.revision | default(omit) }}"
    cache_dir: /var/lib/ai-lab/models/hub
  loop: "{{ gpu_lab_models | ailab.gpu_lab.model_pulls }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
backend:
  description: The backend used (V(vllm) is reported as V(huggingface)).
  returned: always
  type: str
  sample: ollama
source:
  description: The model, normalised (C(llama3.1) becomes C(llama3.1:latest)).
  returned: always
  type: str
  sample: llama3.1:8b
digest:
  description: Ollama manifest digest of the model (as C(/api/tags) reports it).
  returned: backend is ollama and the model is present
  type: str
  sample: 46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e
previous_digest:
  description: Digest before the pull (null if the model was absent).
  returned: an Ollama pull ran
  type: str
size:
  description: Size in bytes of the model (Ollama) or of the snapshot's files (Hugging Face).
  returned: when the model is present
  type: int
  sample: 4920753328
attempts:
  description: Number of C(/api/pull) connections used (more than 1 after a dropped connection).
  returned: an Ollama pull ran
  type: int
dropped_connections:
  description: Why each earlier connection ended before C(success).
  returned: an Ollama pull ran
  type: list
  elements: str
before:
  description: Local Ollama models (or snapshot files) before the task.
  returned: always except state unloaded
  type: list
  elements: str
after:
  description: Local Ollama models (or snapshot files) after the task (as they would be, in check mode).
  returned: always except state unloaded
  type: list
  elements: str
unloaded:
  description: Models asked to leave memory.
  returned: state is unloaded
  type: list
  elements: str
freed_vram:
  description: Sum of C(size_vram) of the unloaded models, in bytes.
  returned: state is unloaded
  type: int
snapshot_path:
  description: The snapshot directory (C(<cache_dir>/models--<owner>--<name>/snapshots/<commit>)).
  returned: backend is huggingface and state is present
  type: str
commit:
  description: The commit sha the revision resolved to.
  returned: backend is huggingface and state is present
  type: str
files:
  description: Files of the snapshot present after the task.
  returned: backend is huggingface and state is present
  type: list
  elements: str
network:
  description: Whether the endpoint was contacted (false when a pinned, complete snapshot was found in the cache).
  returned: backend is huggingface and state is present
  type: bool
downloaded_bytes:
  description: Bytes downloaded by this run.
  returned: backend is huggingface and state is present
  type: int
would_download:
  description: Files that were (or, in check mode, would be) downloaded.
  returned: backend is huggingface and something was missing
  type: list
  elements: str
deleted:
  description: Cached commits removed.
  returned: backend is huggingface and state is absent
  type: list
  elements: str
verified:
  description: True when the signature was verified.
  returned: verify was set and not in check mode
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ailab.gpu_lab.plugins.module_utils.model_pull import ARGUMENT_SPEC, run_module


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module)


if __name__ == "__main__":
    main()
