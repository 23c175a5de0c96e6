# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LiteLLM pre-call hook of the on-demand swap (docs/gpu_demand.md): thin by design.

Before a chat or completion request (after LiteLLM authenticated the caller's key, so only the lab's keys get
here), it asks the gpu-demand service whether the alias's backend holds the GPU:
- ``serve``: the request goes on as it is (the service may have held it while the GPU was handed over);
- ``fallback``: it goes to ``use``, the first of the alias's fallbacks that answers without a hand-over;
- ``unavailable``: 503 with Retry-After.
An embedding request never asks (embeddings never swap). If the service cannot be reached, the request goes on as it
is and LiteLLM's own fallbacks apply: the hook never makes the gateway worse than without it. The hook holds no
cluster credentials: the gateway gets no write access to the cluster; the service does the swap.

Configured by the litellm role when the gpu_demand component is on: ``litellm_settings.callbacks:
[gpu_demand_hook.handler]``, this file beside the config (ConfigMap litellm-config), env GPU_DEMAND_URL (the service,
from the component registry) and GPU_DEMAND_TOKEN (Secret litellm-env). The service bounds the hold by its own budget
(gpu_demand_hold_budget) and then answers; GPU_DEMAND_TIMEOUT (default 600 s) is only the hook's safety net.
"""

import os

import httpx
from litellm._logging import verbose_proxy_logger
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

# LiteLLM's call types of a generation request (litellm/types/utils.py CallTypes); embeddings are not among them.
GENERATION_CALLS = ("completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses",
                    "anthropic_messages")


class GpuDemandHook(CustomLogger):
    def __init__(self):
        super().__init__()
        self.url = os.environ.get("GPU_DEMAND_URL", "").rstrip("/")
        self.token = os.environ.get("GPU_DEMAND_TOKEN", "")
        self.timeout = float(os.environ.get("GPU_DEMAND_TIMEOUT", "600"))

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        alias = (data or {}).get("model")
        if call_type not in GENERATION_CALLS or not alias or not self.url:
            return data
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                resp = await client.post(self.url + "/v1/ensure", json={"model": alias},
                                         headers={"Authorization": "Bearer " + self.token})
            answer = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            verbose_proxy_logger.warning("gpu_demand: the service at %s did not answer (%s); %s goes on as is",
                                         self.url, exc, alias)
            return data
        if answer is None:
            verbose_proxy_logger.warning("gpu_demand: the service answered HTTP %s; %s goes on as is",
                                         resp.status_code, alias)
            return data
        if answer.get("action") == "fallback" and answer.get("use"):
            verbose_proxy_logger.info("gpu_demand: %s -> %s (%s)", alias, answer["use"], answer.get("reason"))
            data["model"] = answer["use"]
            return data
        if answer.get("action") == "unavailable":
            raise ProxyException(message="%s cannot take the GPU now: %s" % (alias, answer.get("reason")),
                                 type="service_unavailable", param="model", code=503,
                                 headers={"Retry-After": str(answer.get("retry_after") or 30)})
        return data


handler = GpuDemandHook()
