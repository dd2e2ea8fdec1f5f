"""Settings (config.py): environment < flags, one quantisation check, the sampling settings."""

from pathlib import Path

import pytest

from llava_video_app.config import (
    CPU_FALLBACK_MODEL,
    AppConfig,
    GenerationSettings,
    check_quant,
)


def test_environment_then_flags_override_defaults():
    config = AppConfig.from_env({"LLAVA_VIDEO_FRAMES": "32", "LLAVA_VIDEO_QUANT": "bf16",
                                 "LLAVA_VIDEO_OUTPUT_DIR": "/data/out", "LLAVA_VIDEO_SHARE": "yes"})
    assert (config.frames, config.quant, config.output_dir, config.share) == (32, "bf16", Path("/data/out"), True)
    assert config.with_overrides(frames=16, quant=None).frames == 16
    assert config.with_overrides(frames=16, quant=None).quant == "bf16"  # None = flag not given


def test_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match="LLAVA_VIDEO_FRAMES"):
        AppConfig.from_env({"LLAVA_VIDEO_FRAMES": "many"})
    with pytest.raises(ValueError, match="4bit"):
        AppConfig.from_env({"LLAVA_VIDEO_QUANT": "3bit"})
    with pytest.raises(TypeError, match="colour"):
        AppConfig().with_overrides(colour="red")


def test_quant_is_checked_once_for_the_environment_and_the_flags():
    assert check_quant(None) is None and check_quant("bf16") == "bf16"
    with pytest.raises(ValueError, match="LLAVA_VIDEO_QUANT must be one of 4bit, int4, bf16, fp16, fp32, got '3bit'"):
        AppConfig.from_env({"LLAVA_VIDEO_QUANT": "3bit"})
    with pytest.raises(ValueError, match="--quant must be one of 4bit"):
        AppConfig().with_overrides(quant="int8")
    assert AppConfig().with_overrides(quant="fp16").quant == "fp16"


def test_sampling_settings_are_validated():
    with pytest.raises(ValueError):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationSettings(top_p=0)
    with pytest.raises(ValueError):
        GenerationSettings(temperature=-1)
    config = AppConfig(max_new_tokens=7, temperature=0.5, top_p=0.9)
    assert GenerationSettings.from_config(config) == GenerationSettings(7, 0.5, 0.9)


def test_without_cuda_the_default_falls_back_to_the_small_model_on_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = AppConfig()
    resolved = config.resolved()
    assert (resolved.model, resolved.quant, resolved.device) == (CPU_FALLBACK_MODEL, "fp32", "cpu")
    assert config.fell_back_to_cpu
    assert not AppConfig(model="my/model").fell_back_to_cpu


def test_compiled_decoding_is_the_default_on_cuda_only():
    assert AppConfig(device="cuda").resolved().compile is True
    assert AppConfig(device="cpu").resolved().compile is False
    assert AppConfig(device="cuda", compile=False).resolved().compile is False  # --no-compile
    assert AppConfig.from_env({"LLAVA_VIDEO_COMPILE": "0"}).compile is False


def test_the_default_gpu_quantisation_is_nf4_the_route_that_has_run_on_a_gpu(monkeypatch):
    """int4 (torchao) has not run on a GPU: NF4 stays the CUDA default on every GPU, with or without torchao,
    until the GPU suite shows int4 faster with logits as close to bf16 (docs/benchmarks.md)."""
    import torch

    for capability in ((9, 0), (8, 6), (7, 5)):  # H100/H200, A10/3090, T4
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert AppConfig(device="cuda").resolved().quant == "4bit"
    assert AppConfig(device="cpu").resolved().quant == "fp32"
    assert AppConfig(device="cuda", quant="int4").resolved().quant == "int4"  # int4 stays selectable
    assert AppConfig.from_env({"LLAVA_VIDEO_QUANT": "int4"}).resolved().quant == "int4"


def test_saved_data_is_per_session_when_the_app_is_shared():
    assert not AppConfig().per_session({})  # a local app: one output folder, as today
    assert AppConfig(share=True).per_session({})
    assert AppConfig(host="0.0.0.0").per_session({}) and AppConfig(host="my-box.lan").per_session({})
    assert not AppConfig(host="localhost").per_session({}) and not AppConfig(host="::1").per_session({})
    assert AppConfig().per_session({"SPACE_ID": "someone/llava-video"})  # a Hugging Face Space
    assert not AppConfig(share=True, per_session_data=False).per_session({})  # the setting wins
    assert AppConfig.from_env({"LLAVA_VIDEO_PER_SESSION_DATA": "1"}).per_session({})


def test_start_up_turns_analytics_and_telemetry_off_unless_asked():
    from llava_video_app.config import keep_start_up_offline

    environ = {"GRADIO_ANALYTICS_ENABLED": "True"}
    keep_start_up_offline(environ)
    assert environ == {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    environ = {"LLAVA_VIDEO_ANALYTICS": "1"}
    keep_start_up_offline(environ)
    assert environ == {"LLAVA_VIDEO_ANALYTICS": "1"}  # on: gradio's and huggingface_hub's own defaults
