"""An image through the REAL LiteLLM proxy to a vision model on vLLM (docs/catalog.md, "Vision models").

REAL: the LiteLLM proxy (litellm[proxy] from .venv-litellm) with the config our litellm_config code path renders
from the example catalog plus its commented DeepSeek-OCR entry (tests/support/catalog_example.py), with the litellm
role's settings; its routing, its error handling and its fallbacks.
EMULATED: the vLLM servers behind it (tests/support/vllm_backend.py): the OCR model's stand-in takes images as vLLM
does, with the entry's own limit_mm_per_prompt, and refuses what vLLM refuses with vLLM's 400 and words; the
text model's stand-in answers an image "... is not a multimodal model" as vLLM does.

One proxy start (~8 s of both CPUs), assertions grouped.
"""

import base64
import struct
import zlib

import pytest

from tests.support.catalog_example import example_vision_entry
from tests.support.litellm_proxy import (LiteLLMProxy, example_catalog, gateway_env,
                                         write_gateway_config)
from tests.support.openai_backend import OpenAIBackend
from tests.support.vllm_backend import VLLMBackend

pytestmark = pytest.mark.slow

# /model_group/info is where LiteLLM reports supports_vision (the role's allowed_routes serves it, docs/litellm.md "Routes").
MODEL_GROUP_INFO = "/model_group/info"


def png(width=3, height=2):
    """A real PNG (signature, IHDR, IDAT, IEND): RGB pixels that differ, so a changed byte changes the image."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"".join(bytes((x * 80 % 256, y * 120 % 256, (x + y) * 40 % 256)) for x in range(width))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def image_message(text, image_bytes, count=1):
    uri = "data:image/png;base64," + base64.b64encode(image_bytes).decode()
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": uri}}] * count
    return [{"role": "user", "content": parts}]


def test_image_reaches_the_vision_model_intact(tmp_path):
    entry = example_vision_entry()
    limits = entry["vllm_args"]["limit_mm_per_prompt"]
    ocr = VLLMBackend("vllm-ocr", served_models=[entry["name"]], vision=True, limit_mm_per_prompt=limits).start()
    vllm = VLLMBackend("vllm", served_models=["qwen2.5-7b"]).start()
    ollama, cloud = OpenAIBackend("ollama").start(), OpenAIBackend("cloud").start()
    try:
        catalog = example_catalog()
        models = catalog["gpu_lab_models"] + [dict(entry, api_base=ocr.v1)]
        path, built = write_gateway_config(tmp_path, vllm, ollama, cloud, models=models)
        ocr_item = next(m for m in built["config"]["model_list"] if m["model_name"] == entry["name"])
        assert ocr_item["model_info"]["supports_vision"] is True

        image = png()
        with LiteLLMProxy(path, env=gateway_env()) as proxy:
            # the gateway loaded the flag: its model info says which aliases take images
            status, body = proxy.get(MODEL_GROUP_INFO)
            assert status == 200, body
            vision = {g["model_group"]: g["supports_vision"] for g in body["data"]}
            assert vision[entry["name"]] is True and vision["qwen2.5-7b"] is False, vision

            # an OpenAI chat message with an image part: vLLM receives the very bytes the client sent
            sent = image_message("Free OCR.", image)
            status, body = proxy.post("/v1/chat/completions", {"model": entry["name"], "messages": sent})
            assert status == 200, body
            assert body["choices"][0]["message"]["content"].startswith("[vllm-ocr] %s:" % entry["name"]), body
            received = ocr.chat_bodies[-1]
            assert received["model"] == entry["name"]
            parts = received["messages"][-1]["content"]
            images = [p for p in parts if p.get("type") == "image_url"]
            assert len(images) == 1 and {"type": "text", "text": "Free OCR."} in parts, parts
            url = images[0]["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            assert base64.b64decode(url.split(",", 1)[1], validate=True) == image

            # more images than the entry's limit_mm_per_prompt: vLLM's 400 reaches the client (no fallback route)
            too_many = limits["image"] + 1
            before = len(ocr.chat_bodies)
            status, body = proxy.post("/v1/chat/completions",
                                      {"model": entry["name"], "messages": image_message("Free OCR.", image, too_many)})
            assert status == 400, body
            assert "At most %d image(s) may be provided in one prompt." % limits["image"] in body["error"]["message"]
            assert len(ocr.chat_bodies) == before

            # the same image to the text-only vLLM model: vLLM refuses it, and the gateway falls back along the
            # alias's route (to a text model: why catalog.validate_routes refuses text fallbacks of a vision alias)
            before = len(ollama.requests)
            status, body = proxy.post("/v1/chat/completions", {"model": "qwen2.5-7b", "messages": sent})
            assert not vllm.chat_bodies and vllm.requests, "vLLM's text model must have refused the image"
            assert status == 200 and len(ollama.requests) == before + 1, body
            assert body["choices"][0]["message"]["content"].startswith("[ollama]"), body
    finally:
        for backend in (ocr, vllm, ollama, cloud):
            backend.stop()
