"""Vision models in the catalog (docs/catalog.md, "Vision models"): ``vision: true`` -> the gateway's
``model_info.supports_vision``; vLLM's multimodal options only with it; the example inventory's commented
DeepSeek-OCR entry is a valid entry once uncommented. The refusals themselves: tests/unit/data/catalog_cases.yml."""

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog
from ansible_collections.ailab.gpu_lab.plugins.module_utils import litellm_config as lc
from tests.support.catalog_example import EXAMPLE_CATALOG_PATH, example_vision_entry


def test_example_vision_entry_is_valid_and_derived():
    entry = example_vision_entry()
    assert entry["source"] == "deepseek-ai/DeepSeek-OCR" and entry["vision"] is True
    example = yaml.safe_load(EXAMPLE_CATALOG_PATH.read_text())
    models = example["gpu_lab_models"] + [entry]
    catalog.validate_catalog(models, example["gpu_lab_routes"])
    by_name = {m["model_name"]: m for m in catalog.litellm_model_list(models)}
    assert by_name["deepseek-ocr"]["model_info"] == {"mode": "chat", "cooldown_time": 5, "supports_vision": True}
    assert "supports_vision" not in by_name["qwen2.5-7b"]["model_info"]
    args = catalog.vllm_args(models, "deepseek-ocr")
    assert args[:6] == ["--model", "deepseek-ai/DeepSeek-OCR", "--revision", entry["revision"],
                        "--served-model-name", "deepseek-ocr"]
    flags = args[6:]
    assert flags[flags.index("--limit-mm-per-prompt") + 1] == '{"image":1}'
    assert flags[flags.index("--mm-processor-cache-gb") + 1] == "0"
    assert "--no-enable-prefix-caching" in flags
    # and the gateway config built from it passes the module's own checks
    built = lc.build({"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}, models=models,
                     provided_env=["LITELLM_MASTER_KEY", "ANTHROPIC_API_KEY"])
    assert built["config"]["model_list"][-1]["model_info"]["supports_vision"] is True


@pytest.mark.parametrize("info, message", [
    ({"mode": "chat", "supports_vision": "yes"}, "model_info.supports_vision 'yes' is not true or false"),
    ({"mode": "embedding", "supports_vision": True}, "model_info.supports_vision is true on an embedding model"),
])
def test_gateway_model_info_supports_vision_checked(info, message):
    config = {"model_list": [{"model_name": "m", "model_info": info,
                              "litellm_params": {"model": "openai/m", "api_key": "os.environ/OPENAI_API_KEY"}}]}
    errors = lc.validate(config, provided_env=["OPENAI_API_KEY"])
    assert any("model_list[0]" in e and message in e for e in errors), errors
