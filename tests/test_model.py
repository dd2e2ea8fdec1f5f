"""Loading the original checkpoint format and the video token layout, on the tiny checkpoint."""

import json

import numpy as np
import pytest
import torch

from llava_video_app.checkpoint import (
    KNOWN_VISION_TOWERS,
    CheckpointError,
    open_checkpoint,
    read_config,
    vision_config_of,
)
from llava_video_app.model import IMAGE_TOKEN_INDEX, LlavaVideoModel, VisualLayout

SIGLIP_384 = KNOWN_VISION_TOWERS["google/siglip-so400m-patch14-384"]


@pytest.mark.parametrize("model_id, pool_mode, per_frame, total_64", [
    ("lmms-lab/LLaVA-Video-7B-Qwen2", None, 210, 13_440),  # grid, bilinear 14x14
    ("lmms-lab/LLaVA-Video-7B-Qwen2", "average", 182, 11_648),  # lmms-eval's override: 13x13
    ("lmms-lab/llava-onevision-qwen2-0.5b-ov", None, 196, 12_545),  # one newline after the video
])
def test_visual_token_counts_of_the_real_checkpoints(model_id, pool_mode, per_frame, total_64):
    config = read_config(model_id)
    layout = VisualLayout.from_config(config, vision_config_of(config), pool_mode)
    assert layout.tokens_per_frame == per_frame
    assert layout.visual_tokens(64) == total_64


def test_tiny_checkpoint_is_in_the_original_on_disk_format(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["LlavaQwenForCausalLM"]
    for key in ("mm_vision_tower", "mm_projector_type", "mm_hidden_size", "mm_vision_select_layer",
                "mm_patch_merge_type", "mm_newline_position", "mm_spatial_pool_stride", "mm_spatial_pool_mode"):
        assert key in config
    ckpt = open_checkpoint(tiny_checkpoint)
    assert len(set(ckpt.weight_map.values())) == 2  # sharded, with an index
    names = set(ckpt.weight_map)
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.image_newline",
            "model.mm_projector.0.weight", "model.mm_projector.2.bias"} <= names
    tower = [n for n in names if n.startswith("model.vision_tower.vision_tower.vision_model.encoder.layers.")]
    layers = {int(n.split(".")[6]) for n in tower}
    assert layers == set(range(config["vision_config"]["num_hidden_layers"] - 1))  # last layer deleted
    assert not [n for n in names if ".head." in n]  # no pooling head
    tokenizer_config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    specials = {v["content"] for v in tokenizer_config["added_tokens_decoder"].values()}
    assert specials == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}


def test_loaded_weights_are_the_checkpoint_tensors(tiny_checkpoint, tiny_model):
    ckpt = open_checkpoint(tiny_checkpoint)
    on_disk = ckpt.read_tensors(["model.layers.1.mlp.down_proj.weight", "model.mm_projector.2.weight",
                                 "model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"])
    torch.testing.assert_close(tiny_model.lm.model.layers[1].mlp.down_proj.weight, on_disk["model.layers.1.mlp.down_proj.weight"].float())
    torch.testing.assert_close(tiny_model.projector[2].weight, on_disk["model.mm_projector.2.weight"].float())
    torch.testing.assert_close(tiny_model.vision.siglip.encoder.layers[1].mlp.fc1.weight,
                               on_disk["model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"].float())
    assert isinstance(tiny_model.projector[1], torch.nn.GELU) and tiny_model.projector[1].approximate == "none"
    assert tiny_model.vision.layers_used == 2  # 3-layer tower, select_layer -2


def test_chat_template_of_the_tokenizer_matches_our_prompt(tiny_model):
    from llava_video_app.prompts import build_prompt

    messages = [{"role": "user", "content": "Hello?"}]
    templated = tiny_model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert templated == build_prompt("Hello?", with_video=False)


def test_the_video_placeholder_becomes_one_sentinel_and_then_the_visual_tokens(tiny_model):
    from llava_video_app.prompts import build_prompt

    frames = np.random.default_rng(0).integers(0, 255, (3, 90, 120, 3), dtype=np.uint8)
    visual = tiny_model.encode_video(frames)
    assert visual.shape == (tiny_model.layout.visual_tokens(3), tiny_model.lm.config.hidden_size)
    ids = tiny_model.tokenize(build_prompt("What?", duration=3.0, timestamps=[0.0, 1.0, 2.0]))
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    embeds = tiny_model.embed(ids, visual)
    at = ids.index(IMAGE_TOKEN_INDEX)
    assert embeds.shape[1] == len(ids) - 1 + visual.shape[0]
    torch.testing.assert_close(embeds[0, at:at + visual.shape[0]], visual)
    # grid layout: the last token of every pooled row of every frame is image_newline
    side = tiny_model.layout.pooled_side
    newline_rows = visual.view(3 * side, side + 1, -1)[:, -1]
    torch.testing.assert_close(newline_rows, tiny_model.image_newline.expand_as(newline_rows))


def test_4bit_nf4_loads_and_runs_on_cpu(tiny_checkpoint):
    """bitsandbytes quantises to NF4 on CPU too, so the real 4-bit path is tested here."""
    import bitsandbytes as bnb

    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine

    model = LlavaVideoModel.load(str(tiny_checkpoint), quant="4bit", device="cpu")
    proj = model.lm.model.layers[0].self_attn.q_proj
    assert isinstance(proj, bnb.nn.Linear4bit)
    assert proj.weight.quant_type == "nf4" and proj.weight.quant_state.nested  # double quantisation
    assert model.lm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.dtype == torch.bfloat16  # vision tower and projector stay 16-bit
    engine = Engine(model, AppConfig(frames=4))
    text = engine.ask_text("Say hi.", settings=GenerationSettings(max_new_tokens=4))
    assert isinstance(text, str)
    assert engine.last_stats.prompt_tokens > 0 and engine.last_stats.time_to_first_token_s > 0


@pytest.mark.slow
def test_4bit_decoding_compiles_as_one_graph_and_answers_as_eager(tiny_checkpoint):
    """--compile on the 4-bit model: the bitsandbytes layers trace into one graph (fullgraph=True
    raises otherwise) and the greedy answer is the eager one."""
    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine

    model = LlavaVideoModel.load(str(tiny_checkpoint), quant="4bit", device="cpu")
    settings = GenerationSettings(max_new_tokens=8, ignore_eos=True)
    eager = Engine(model, AppConfig(frames=4)).ask_text("Say hi.", settings=settings)
    compiled = Engine(model, AppConfig(frames=4, compile=True))
    assert compiled.ask_text("Say hi.", settings=settings) == eager
    assert compiled.last_stats.new_tokens == 8


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        LlavaVideoModel.load(str(tmp_path), quant="fp32", device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    with pytest.raises(CheckpointError, match="not a LLaVA-NeXT-format"):
        LlavaVideoModel.load(str(tmp_path), quant="fp32", device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"mm_vision_tower": "google/siglip-so400m-patch14-384"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="only safetensors"):
        LlavaVideoModel.load(str(tmp_path), quant="fp32", device="cpu")


def test_an_unreachable_hub_id_says_so_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot download"):
        LlavaVideoModel.load("lmms-lab/no-such-model-here", quant="fp32", device="cpu")


# Measured on the tiny checkpoint, the same 8-frame prompt (max |diff| / std of the fp32 logits;
# cosine): bf16 0.014, 0.99999; NF4 4-bit 0.33, 0.995; torchao int4 (groups of 64 at this size) 0.53,
# 0.990. Another checkpoint's logits: 5.0, -0.01.
QUANT_TOLERANCE = {"bf16": (0.05, 0.9995), "4bit": (0.6, 0.98), "int4": (0.8, 0.98)}


def logits_distance(got, reference):
    got, reference = got.float(), reference.float()
    return float((got - reference).abs().max() / reference.std()), float(torch.nn.functional.cosine_similarity(got, reference, dim=0))


@pytest.fixture(scope="module")
def fp32_prompt_logits(tiny_checkpoint, sample_video):
    from llava_video_app.config import AppConfig
    from llava_video_app.engine import Engine

    engine = Engine(LlavaVideoModel.load(str(tiny_checkpoint), quant="fp32", device="cpu"),
                    AppConfig(frames=8, decode_at_model_size=False))
    return engine.prompt_logits(sample_video, "Please describe this video in detail.")


@pytest.mark.parametrize("quant", sorted(QUANT_TOLERANCE))
def test_quantised_logits_stay_close_to_fp32(quant, tiny_checkpoint, sample_video, fp32_prompt_logits, tmp_path):
    from llava_video_app.config import AppConfig
    from llava_video_app.engine import Engine
    from llava_video_app.tiny import build_tiny_checkpoint

    max_diff, cosine = QUANT_TOLERANCE[quant]
    engine = Engine(LlavaVideoModel.load(str(tiny_checkpoint), quant=quant, device="cpu"),
                    AppConfig(frames=8, decode_at_model_size=False))
    got = engine.prompt_logits(sample_video, "Please describe this video in detail.")
    distance, similarity = logits_distance(got, fp32_prompt_logits)
    assert distance <= max_diff and similarity >= cosine
    assert int(got.argmax()) == int(fp32_prompt_logits.argmax())
    # The bound has teeth: the same path on other weights is far outside it.
    other = Engine(LlavaVideoModel.load(str(build_tiny_checkpoint(tmp_path / "other", seed=1)), quant=quant,
                                        device="cpu"), AppConfig(frames=8, decode_at_model_size=False))
    far, unlike = logits_distance(other.prompt_logits(sample_video, "Please describe this video in detail."),
                                  fp32_prompt_logits)
    assert far > max_diff and unlike < cosine


def test_int4_quantises_every_decoder_linear_layer_and_compiles_like_eager(tiny_checkpoint, sample_video):
    """The torchao route (--quant int4) through its CPU kernel: every linear layer of the decoder is
    int4 (a layer whose input the group size does not divide would silently stay 16-bit), the
    embeddings and LM head stay 16-bit, and compiled decoding answers as eager decoding does."""
    from torchao.utils import TorchAOBaseTensor

    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine

    model = LlavaVideoModel.load(str(tiny_checkpoint), quant="int4", device="cpu")
    linears = {name: module for name, module in model.lm.model.named_modules() if isinstance(module, torch.nn.Linear)}
    assert linears and all(isinstance(m.weight, TorchAOBaseTensor) for m in linears.values())
    assert not isinstance(model.lm.lm_head.weight, TorchAOBaseTensor)
    assert model.lm.get_input_embeddings().weight.dtype == torch.bfloat16 and model.dtype == torch.bfloat16
    settings = GenerationSettings(max_new_tokens=6, ignore_eos=True)
    eager = Engine(model, AppConfig(frames=4)).ask(sample_video, "What happens?", settings=settings)
    compiled = Engine(model, AppConfig(frames=4, compile=True))
    compiled.warm_up()
    assert compiled.ask(sample_video, "What happens?", settings=settings) == eager


def test_int4_group_size_divides_every_layer_input():
    from llava_video_app.model import int4_group_size

    assert int4_group_size({"hidden_size": 3584, "intermediate_size": 18944}) == 128  # the 7B
    assert int4_group_size({"hidden_size": 896, "intermediate_size": 4864}) == 128  # the 0.5B fallback
    assert int4_group_size({"hidden_size": 64, "intermediate_size": 128}) == 64  # the tiny checkpoint
