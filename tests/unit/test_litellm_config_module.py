"""The litellm_config module run in-process through Ansible's own module-args patching
(ansible.module_utils.testing.patch_module_args), so the argument spec, the file common
arguments, check mode and diff are exercised. Nothing emulated; files go to tmp_path."""

import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.ailab.gpu_lab.plugins.modules import litellm_config as module
from tests.support.catalog_example import load_example_catalog
from tests.support.module_run import run_module

EXAMPLE = load_example_catalog()
BASE_CONFIG = {"general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
               "litellm_settings": {"callbacks": ["prometheus"]}}


def run(capsys, **args):
    return run_module(module, capsys, **args)


def args(dest=None, **extra):
    base = dict(models=EXAMPLE["gpu_lab_models"], routes=EXAMPLE["gpu_lab_routes"], config=BASE_CONFIG,
                provided_env=["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "ANTHROPIC_API_KEY"])
    if dest:
        base["dest"] = str(dest)
    base.update(extra)
    return base


def test_write_then_idempotent_then_change(capsys, tmp_path):
    dest = tmp_path / "config.yaml"
    first = run(capsys, **args(dest, mode="0640"))
    assert first["_rc"] == 0 and first["changed"] is True
    assert dest.read_text() == first["content"]
    assert oct(os.stat(dest).st_mode & 0o777) == "0o640"
    assert first["models"] == ["qwen2.5-7b", "llama3.1-8b", "nomic-embed", "cloud-fallback"]
    assert first["env"] == ["ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY"]
    second = run(capsys, **args(dest, mode="0640"))
    assert second["changed"] is False and second["checksum"] == first["checksum"]
    changed = run(capsys, **args(dest, mode="0640", namespace="other"))
    assert changed["changed"] is True and changed["checksum"] != first["checksum"]
    assert "vllm.other.svc.cluster.local" in dest.read_text()


def test_check_mode_and_diff_touch_nothing(capsys, tmp_path):
    dest = tmp_path / "config.yaml"
    dest.write_text("old: content\n")
    result = run(capsys, _ansible_check_mode=True, _ansible_diff=True, **args(dest))
    assert result["changed"] is True
    assert result["diff"]["before"] == "old: content\n" and result["diff"]["after"] == result["content"]
    assert dest.read_text() == "old: content\n"


def test_return_only_without_dest(capsys):
    result = run(capsys, **args())
    assert result["changed"] is False and result["dest"] is None
    assert yaml.safe_load(result["content"])["router_settings"]["fallbacks"][0] == {
        "qwen2.5-7b": ["llama3.1-8b", "cloud-fallback"]}


def test_rejection_names_entry_and_fix(capsys, tmp_path):
    dest = tmp_path / "config.yaml"
    result = run(capsys, **args(dest, provided_env=["LITELLM_MASTER_KEY"]))
    assert result["_rc"] == 1 and result["failed"] is True
    assert any("model_list[3] (model_name 'cloud-fallback').litellm_params.api_key: references ANTHROPIC_API_KEY"
               in e for e in result["errors"])
    assert "Add ANTHROPIC_API_KEY to .env" in result["msg"]
    assert not dest.exists(), "a rejected config must not be written"


def test_nothing_to_render(capsys):
    result = run(capsys)
    assert result["failed"] is True and "nothing to render" in result["msg"]


def test_argspec_rejects_wrong_types(capsys):
    result = run(capsys, models="not-a-list-of-dicts")
    assert result["failed"] is True and "models" in result["msg"]


# The filter ailab.gpu_lab.litellm_config_render (the litellm role's task: no module or action start) returns what
# the module returns without dest, and refuses what the module refuses, with the module's words.
def _render_filter():
    from ansible_collections.ailab.gpu_lab.plugins.filter.litellm_render import FilterModule
    return FilterModule().filters()["litellm_config_render"]


def test_render_filter_returns_the_modules_result(capsys):
    by_module = run(capsys, **args())
    by_filter = _render_filter()(args())
    for key in ("changed", "config", "content", "checksum", "env", "models", "dest"):
        assert by_filter[key] == by_module[key], key


def test_render_filter_refuses_with_the_modules_message(capsys):
    from ansible.errors import AnsibleFilterError
    by_module = run(capsys, **args(provided_env=["LITELLM_MASTER_KEY"]))
    with pytest.raises(AnsibleFilterError) as info:
        _render_filter()(args(provided_env=["LITELLM_MASTER_KEY"]))
    assert str(info.value) == by_module["msg"] and "Add ANTHROPIC_API_KEY to .env" in str(info.value)
    with pytest.raises(AnsibleFilterError, match="models"):
        _render_filter()(args(models="not-a-list-of-dicts"))
    with pytest.raises(AnsibleFilterError, match="nothing to render"):
        _render_filter()({})
    with pytest.raises(AnsibleFilterError, match="dest writes a file on the target"):
        _render_filter()(args(dest="/tmp/config.yaml"))
