# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LiteLLM ``custom_auth`` hook of the lab: a key per person or app without a database (docs/litellm.md "Keys").

LiteLLM's virtual keys need its Postgres database through Prisma, whose engines this lab cannot fetch offline
(docs/litellm.md "Keys" has the spike). This hook is LiteLLM's documented replacement for its key lookup
(``general_settings.custom_auth``): it admits
- the master key (``LITELLM_MASTER_KEY``) as LiteLLM does, as the proxy admin;
- each key of the litellm role's ``litellm_keys`` list: its value comes from its own Secret (env
  ``LITELLM_KEY_<NAME>``, from ``litellm-key-<name>``, written by the secrets playbook), its name, models and
  rpm/tpm limits from the plain env ``LAB_KEYS`` (JSON, no secret in it). The key is an internal user limited to
  its models; LiteLLM's own checks then refuse a model it may not use (``custom_auth_run_common_checks``) and its
  rate limiter refuses a request over ``rpm``/``tpm`` with 429;
and refuses any other key with 401 and LiteLLM's own message. On Open WebUI's key alone, the person Open WebUI
forwards (header X-OpenWebUI-User-Email) becomes LiteLLM's end user (metrics label end_user). Without the hook the proxy answered a wrong key with
400 ``No connected db.`` (its key lookup needs the database). A key whose Secret is missing or empty is not
admitted (never an empty key). Keys are compared in constant time; nothing here logs a key.
"""

import hmac
import json
import os

from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.auth_utils import abbreviate_api_key


OPEN_WEBUI = "open-webui"                          # Open WebUI's own key (the litellm role's litellm_open_webui_key)
OPEN_WEBUI_USER_HEADER = "X-OpenWebUI-User-Email"  # Open WebUI's FORWARD_USER_INFO_HEADER_USER_EMAIL default


def env_name(name):
    """The env var holding key ``name``'s value (the litellm role's secretKeyRef uses the same rule)."""
    return "LITELLM_KEY_" + name.upper().replace("-", "_")


def load_keys(environ=None):
    """``[(value, entry)]`` of the keys whose value is set; entry = name, models, rpm, tpm from ``LAB_KEYS``."""
    environ = os.environ if environ is None else environ
    keys = []
    for entry in json.loads(environ.get("LAB_KEYS") or "[]"):
        value = environ.get(env_name(entry["name"]), "")
        if value.strip():
            keys.append((value, entry))
    return keys


class LabKeys(object):
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self.master_key = environ.get("LITELLM_MASTER_KEY", "")
        self.keys = load_keys(environ)

    def authenticate(self, api_key, request=None):
        api_key = api_key or ""
        # LiteLLM opened the request's trace span before calling us and keeps it in request.state; its own auth paths
        # hand it on in the UserAPIKeyAuth they return, the custom_auth path does not: without it the otel callback
        # records no "Received Proxy Server Request" / "litellm_request" spans (tests/functional/test_tracing_phoenix.py).
        span = getattr(getattr(request, "state", None), "parent_otel_span", None)
        if self.master_key and hmac.compare_digest(api_key.encode(), self.master_key.encode()):
            from litellm.proxy.proxy_server import litellm_proxy_admin_name  # pylint: disable=import-outside-toplevel
            return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN,
                                  user_id=litellm_proxy_admin_name, parent_otel_span=span)
        found = None
        for value, entry in self.keys:   # every key compared: the time does not tell which one matched
            if hmac.compare_digest(api_key.encode(), value.encode()):
                found = entry
        if found is None:
            raise ProxyException(
                message="Authentication Error, Invalid proxy server token passed. Received API Key = %s. "
                        "Unable to find token among the lab's keys" % abbreviate_api_key(api_key=api_key),
                type=ProxyErrorTypes.auth_error, param="api_key", code=401)
        person = None
        if found["name"] == OPEN_WEBUI and request is not None:
            # the signed-in person, as Open WebUI forwards it (ENABLE_FORWARD_USER_INFO_HEADERS); trusted on Open
            # WebUI's own key only: another key's holder could name anyone
            person = request.headers.get(OPEN_WEBUI_USER_HEADER) or None
        return UserAPIKeyAuth(api_key=api_key, key_alias=found["name"], key_name=found["name"],
                              user_id=found["name"], user_role=LitellmUserRoles.INTERNAL_USER,
                              models=list(found.get("models") or []), end_user_id=person,
                              rpm_limit=found.get("rpm"), tpm_limit=found.get("tpm"), parent_otel_span=span)


_KEYS = LabKeys()


async def user_api_key_auth(request, api_key):
    """LiteLLM's custom_auth signature (litellm/proxy/auth/user_api_key_auth.py calls it with request, api_key)."""
    return _KEYS.authenticate(api_key, request)
