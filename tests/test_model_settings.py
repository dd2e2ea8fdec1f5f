"""Every checkpoint setting reaches the model: config.json read here with `json`, then each value
checked against what the loaded model actually computes with (not against the config object).

A checkpoint with a non-default value for every language-model and SigLIP setting makes a dropped
key visible: a default would differ from the file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llava_video_app.checkpoint import (
    LANGUAGE_MODEL_KEYS,
    CheckpointError,
    unconsumed_keys,
)
from llava_video_app.model import (
    LlavaVideoModel,
    check_language_model_settings,
    qwen2_config,
)
from llava_video_app.tiny import build_tiny_checkpoint

BENCH_7B_CONFIG = Path(__file__).resolve().parent.parent / "bench" / "configs" / "llava-video-7b-qwen2.json"

NON_DEFAULT_LM = dict(rms_norm_eps=1e-5, max_position_embeddings=4096, tie_word_embeddings=True,
                      use_sliding_window=True, sliding_window=16, max_window_layers=0,
                      rope_scaling={"type": "linear", "factor": 2.0}, attention_dropout=0.1, hidden_act="gelu", pad_token_id=5)
NON_DEFAULT_VISION = dict(layer_norm_eps=1e-5, hidden_act="gelu")


@pytest.fixture(scope="module")
def odd_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("odd"), lm_overrides=NON_DEFAULT_LM,
                                 vision_overrides=NON_DEFAULT_VISION)


@pytest.fixture(scope="module")
def odd_model(odd_checkpoint) -> LlavaVideoModel:
    return LlavaVideoModel.load(str(odd_checkpoint), quant="fp32", device="cpu")


def file_config(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "config.json").read_text())


def test_the_7b_config_keeps_its_rotary_base():
    """The issue's reproduction: transformers 5 has no rope_theta in Qwen2Config().to_dict()."""
    config = json.loads(BENCH_7B_CONFIG.read_text())
    qwen = qwen2_config(config, "sdpa")
    assert qwen.rope_parameters["rope_theta"] == 1_000_000.0
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    head_dim = config["hidden_size"] // config["num_attention_heads"]
    expected = 1.0 / (1_000_000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    torch.testing.assert_close(Qwen2RotaryEmbedding(qwen).inv_freq, expected)
    assert unconsumed_keys(config) == ["_comment"]  # every real key has a reader (or a stated reason)


def rotary_checks(lm, c):
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    base = 1.0 / (c["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor = (c.get("rope_scaling") or {}).get("factor", 1.0)  # linear scaling: positions / factor
    torch.testing.assert_close(lm.model.rotary_emb.inv_freq, base / factor)
    positions = torch.arange(50)[None]
    cos, _ = lm.model.rotary_emb(torch.zeros(1, 50, head_dim), positions)
    angles = torch.outer(positions[0].float() / factor, base)
    torch.testing.assert_close(cos[0], torch.cat([angles, angles], -1).cos())


def norm_eps_check(lm, c):
    x = torch.randn(3, c["hidden_size"]) * 1e-3  # small enough that eps matters
    expected = lm.model.norm.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rms_norm_eps"])
    torch.testing.assert_close(lm.model.norm(x), expected)


def sliding_window_check(lm, c):
    """With every layer sliding (max_window_layers=0) over 16 positions, 2 layers see at most 2 x 16
    tokens back: the first token cannot change the last position's logits 60 tokens later."""
    assert c["use_sliding_window"] and c["max_window_layers"] == 0
    ids = torch.randint(0, 500, (1, 60))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % 500
    with torch.no_grad():
        a, b = lm(input_ids=ids).logits[0, -1], lm(input_ids=changed).logits[0, -1]
        torch.testing.assert_close(a, b)
        assert not torch.allclose(lm(input_ids=ids[:, :10]).logits[0, -1], lm(input_ids=changed[:, :10]).logits[0, -1])
    assert c["sliding_window"] * 2 < 60


def activation_check(lm, c):
    x = torch.linspace(-3, 3, 50)
    torch.testing.assert_close(lm.model.layers[0].mlp.act_fn(x), {"gelu": F.gelu, "silu": F.silu}[c["hidden_act"]](x))


LM_CHECKS = {
    "vocab_size": lambda lm, c: lm.lm_head.weight.shape[0] == lm.model.embed_tokens.weight.shape[0] == c["vocab_size"],
    "hidden_size": lambda lm, c: lm.model.embed_tokens.weight.shape[1] == c["hidden_size"],
    "intermediate_size": lambda lm, c: lm.model.layers[0].mlp.gate_proj.out_features == c["intermediate_size"],
    "num_hidden_layers": lambda lm, c: len(lm.model.layers) == c["num_hidden_layers"],
    "num_attention_heads": lambda lm, c: lm.model.layers[0].self_attn.q_proj.out_features
    == c["num_attention_heads"] * lm.model.layers[0].self_attn.head_dim
    and lm.model.layers[0].self_attn.head_dim == c["hidden_size"] // c["num_attention_heads"],
    "num_key_value_heads": lambda lm, c: lm.model.layers[0].self_attn.k_proj.out_features
    == c["num_key_value_heads"] * lm.model.layers[0].self_attn.head_dim
    and lm.model.layers[0].self_attn.num_key_value_groups == c["num_attention_heads"] // c["num_key_value_heads"],
    "hidden_act": activation_check,
    "max_position_embeddings": lambda lm, c: lm.config.max_position_embeddings == c["max_position_embeddings"],
    "rms_norm_eps": norm_eps_check,
    "tie_word_embeddings": lambda lm, c: (lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr())
    == c["tie_word_embeddings"],
    "rope_theta": rotary_checks,
    "rope_scaling": rotary_checks,
    "use_sliding_window": sliding_window_check,
    "sliding_window": sliding_window_check,
    "max_window_layers": sliding_window_check,
    "attention_dropout": lambda lm, c: lm.model.layers[0].self_attn.attention_dropout == c["attention_dropout"],
    # Not part of the forward pass; they must still arrive unchanged.
    "initializer_range": lambda lm, c: lm.config.initializer_range == c["initializer_range"],
    "use_cache": lambda lm, c: lm.config.use_cache == c["use_cache"],
    "bos_token_id": lambda lm, c: lm.config.bos_token_id == c["bos_token_id"],
    "eos_token_id": lambda lm, c: lm.config.eos_token_id == c["eos_token_id"],
    "pad_token_id": lambda lm, c: lm.config.pad_token_id == c["pad_token_id"],
}


def test_every_language_model_key_has_a_check():
    assert set(LANGUAGE_MODEL_KEYS) - {"rope_parameters", "layer_types"} == set(LM_CHECKS)


@pytest.mark.parametrize("key", sorted(LM_CHECKS))
def test_each_language_model_setting_of_the_file_takes_effect(key, odd_checkpoint, odd_model):
    config = file_config(odd_checkpoint)
    if key not in config:
        pytest.skip(f"{key} is not in the tiny checkpoint's config.json")
    result = LM_CHECKS[key](odd_model.lm, config)
    assert result is None or result is True


def test_the_stock_tiny_checkpoint_runs_the_7b_rotary_base(tiny_checkpoint, tiny_model):
    config = file_config(tiny_checkpoint)
    assert config["rope_theta"] == 1_000_000.0
    rotary_checks(tiny_model.lm, config)
    norm_eps_check(tiny_model.lm, config)


def test_eos_of_the_file_stops_generation(odd_checkpoint, odd_model):
    config = file_config(odd_checkpoint)
    assert config["eos_token_id"] in odd_model.eos_token_ids


def test_context_length_is_the_files(odd_checkpoint, odd_model):
    assert odd_model.context_length == file_config(odd_checkpoint)["max_position_embeddings"] == 4096


def test_each_vision_setting_of_the_file_takes_effect(odd_checkpoint, odd_model):
    config = file_config(odd_checkpoint)
    vc = config["vision_config"]
    siglip = odd_model.vision.siglip
    layer = siglip.encoder.layers[0]
    assert odd_model.vision.image_size == vc["image_size"]
    assert odd_model.preprocess(torch.zeros(1, 30, 40, 3, dtype=torch.uint8).numpy()).shape[-2:] == (vc["image_size"],) * 2
    conv = siglip.embeddings.patch_embedding
    assert conv.kernel_size == conv.stride == (vc["patch_size"],) * 2
    assert conv.out_channels == vc["hidden_size"] == config["mm_hidden_size"]
    assert layer.mlp.fc1.out_features == vc["intermediate_size"]
    assert len(siglip.encoder.layers) == vc["num_hidden_layers"] - 1  # the authors delete the last one
    assert layer.self_attn.num_heads == vc["num_attention_heads"]
    assert layer.layer_norm1.eps == layer.layer_norm2.eps == vc["layer_norm_eps"]
    x = torch.linspace(-3, 3, 50)
    torch.testing.assert_close(layer.mlp.activation_fn(x), F.gelu(x))  # "gelu" = exact, not the tanh default
    assert odd_model.layout.patches_per_side == vc["image_size"] // vc["patch_size"]


def test_projector_and_layout_settings_take_effect(odd_checkpoint, odd_model):
    config = file_config(odd_checkpoint)
    projector = odd_model.projector
    assert config["mm_projector_type"] == "mlp2x_gelu" and len(projector) == 3
    assert projector[0].in_features == config["mm_hidden_size"]
    assert projector[2].out_features == config["hidden_size"]
    assert projector[1].approximate == "none"
    layout = odd_model.layout
    assert (layout.newline_position, layout.pool_mode, layout.pool_stride, layout.patch_merge_type) == (
        config["mm_newline_position"], config["mm_spatial_pool_mode"], config["mm_spatial_pool_stride"],
        config["mm_patch_merge_type"])


def test_a_setting_transformers_drops_is_an_error_not_a_silent_default():
    from transformers import Qwen2Config

    config = json.loads(BENCH_7B_CONFIG.read_text())
    dropped = Qwen2Config(hidden_size=config["hidden_size"], num_attention_heads=config["num_attention_heads"])
    mismatches = check_language_model_settings(config, dropped)
    assert mismatches["rope_theta"] == (1_000_000.0, 10_000.0)
    assert "rope_theta" not in check_language_model_settings(config, qwen2_config(config, "sdpa"))


def test_keys_nothing_reads_are_listed_at_load(tmp_path, caplog):
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt")
    config = file_config(checkpoint)
    config["mm_future_setting"] = 3
    (checkpoint / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.DEBUG, logger="llava_video_app.model"):
        LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")
    listed = [r.getMessage() for r in caplog.records if "nothing here reads" in r.getMessage()]
    assert len(listed) == 1 and "mm_future_setting" in listed[0]


@pytest.mark.parametrize("key", ["add_faster_video", "mm_use_im_start_end"])
def test_layout_options_we_do_not_implement_are_refused(tmp_path, key):
    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt", lm_overrides={key: True})
    with pytest.raises(CheckpointError, match=key):
        LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")
