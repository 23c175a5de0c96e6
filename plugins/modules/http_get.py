#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_get
short_description: Read several HTTP URLs from the target host in one module start
version_added: 0.1.0
description:
  - Sends a GET to each URL of O(urls), one after the other, and returns every answer (HTTP status, the body parsed
    as JSON, the error) under the URL's name, in one module start where M(ansible.builtin.uri) needs one per URL.
  - The deploy playbook lists the models of both Ollamas (the GPU one and C(ollama-embed)) with it, on the GPU host
    (docs/deploy.md, "Where the in-cluster requests run" and "Benchmark").
  - Fails, naming each URL and what it answered, when an answer's status is not in O(status_code); the answers are
    returned all the same.
  - Read-only.
author:
  - ailab maintainers (@ailab)
extends_documentation_fragment:
  - ailab.gpu_lab.read_only
options:
  urls:
    description: Name -> URL; each answer is returned under its name.
    type: dict
    required: true
  headers:
    description: Headers sent with every request (e.g. an API key; never logged).
    type: dict
    default: {}
  status_code:
    description: The statuses that count as an answer; any other fails the task.
    type: list
    elements: int
    default: [200]
  timeout:
    description: Seconds to wait for each answer.
    type: int
    default: 30
  validate_certs:
    description: Verify the TLS certificate of an C(https) URL.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: List the models of both Ollamas in one module start
  ailab.gpu_lab.http_get:
    urls:
      ollama: http://10.43.0.10:11434/api/tags
      ollama-embed: http://10.43.0.11:11434/api/tags
  register: listed

- name: Show the GPU Ollama's models
  ansible.builtin.debug:
    msg: "{{ listed.answers.ollama.json.models | map(attribute='name') | list }}"
"""

RETURN = r"""
answers:
  description: Name -> the answer to its URL.
  returned: always
  type: dict
  contains:
    url:
      description: The URL asked.
      type: str
    status:
      description: The HTTP status; -1 when no answer came (refused, timed out).
      type: int
    json:
      description: The body parsed as JSON; null when empty or not JSON.
      type: raw
    msg:
      description: What the request ended with (C(OK (...)), C(HTTP Error 404 - Not Found), C(Connection refused), ...).
      type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url


def _answer(module, url):
    resp, info = fetch_url(module, url, headers=module.params["headers"], method="GET",
                           timeout=module.params["timeout"])
    body = resp.read() if resp else info.get("body", b"")
    parsed = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return dict(url=url, status=int(info.get("status", -1)), json=parsed, msg=str(info.get("msg", "")))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            urls=dict(type="dict", required=True),
            headers=dict(type="dict", default={}, no_log=True),
            status_code=dict(type="list", elements="int", default=[200]),
            timeout=dict(type="int", default=30),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    answers = dict((name, _answer(module, str(url))) for name, url in module.params["urls"].items())
    wrong = ["%s (%s): %s %s" % (name, a["url"], a["status"], a["msg"]) for name, a in answers.items()
             if a["status"] not in module.params["status_code"]]
    if wrong:
        module.fail_json(msg="not answered with status %s: %s" % (
            ", ".join(str(s) for s in module.params["status_code"]), "; ".join(wrong)), answers=answers)
    module.exit_json(changed=False, answers=answers)


if __name__ == "__main__":
    main()
