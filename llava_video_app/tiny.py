"""A toy-size, randomly initialised checkpoint in exactly the original LLaVA-NeXT on-disk format.

Same config keys, same tensor names (transformers-4 style SigLIP names, last tower layer removed,
no pooling head), sharded safetensors with an index, a Qwen2 BPE tokenizer (vocab.json + merges.txt)
with the same special tokens and chat template. Built offline in seconds: tests load it through the
same loader as the real model, and anyone can try the app with it without a GPU or a download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import INDEX_FILE, NEWLINE_KEY, PROJECTOR_PREFIX, VISION_PREFIX
from .prompts import CAPTION_QUESTION, QUESTION_TYPES, SYSTEM_MESSAGE, time_instruction

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Toy sizes. A 70x70 image with 14-px patches gives an odd 5x5 grid, like the real 27x27, so the
# bilinear (ceil) and average (floor) pools differ exactly as they do at full size.
TINY_VISION = dict(image_size=70, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                   num_attention_heads=2, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", num_channels=3)
TINY_LM = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0)


def _training_corpus() -> list[str]:
    stamps = [i * 0.5 for i in range(64)]
    texts = [SYSTEM_MESSAGE, CAPTION_QUESTION, time_instruction(31.2, stamps)]
    for t in QUESTION_TYPES:
        texts += [t.name, t.definition, t.example]
    texts += ["The video shows a red square moving from left to right while the camera pans slowly. "
              "A person walks into the kitchen, opens the door and picks up a blue cup. 0123456789 {}[]\":,"]
    return texts


def build_tokenizer(outdir: Path, vocab_size: int = 700) -> int:
    """Train a byte-level BPE with Qwen2's pre-tokenizer and write it in the original file layout.

    Returns the tokenizer's full size (regular vocab + the special tokens appended after it).
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_training_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (outdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (outdir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")

    first_special = len(vocab)
    added = {str(first_special + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)}
    tokenizer_config = {
        "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "chat_template": QWEN2_CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
        "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    (outdir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (outdir / "added_tokens.json").write_text(json.dumps({t: first_special + i for i, t in enumerate(SPECIAL_TOKENS)}))
    (outdir / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "eos_token": {"content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "pad_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    }))
    return first_special + len(SPECIAL_TOKENS)


def tiny_config(vocab_size: int, newline_position: str = "grid", pool_mode: str = "bilinear",
                tokenizer_size: int | None = None, lm_overrides: dict[str, Any] | None = None,
                vision_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json with the 7B video model's keys and multimodal choices, at toy size.

    `lm_overrides` / `vision_overrides` replace language-model / SigLIP fields (e.g. rope_theta,
    rms_norm_eps, tie_word_embeddings): tests use them to check that each setting takes effect.
    """
    eos = (tokenizer_size or vocab_size) - 1
    config = {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava",
        "attention_dropout": 0.0, "bos_token_id": eos - 2, "eos_token_id": eos, "hidden_act": "silu",
        **TINY_LM, "max_window_layers": TINY_LM["num_hidden_layers"], "sliding_window": 131072,
        "use_sliding_window": False, "rope_scaling": None, "tie_word_embeddings": False, "vocab_size": vocab_size,
        "torch_dtype": "bfloat16", "use_cache": True, "initializer_range": 0.02,
        "image_aspect_ratio": "anyres_max_9", "image_grid_pinpoints": [[70, 70], [70, 140], [140, 70], [140, 140]],
        "mm_hidden_size": TINY_VISION["hidden_size"], "mm_newline_position": newline_position,
        "mm_patch_merge_type": "spatial_unpad", "mm_projector_type": "mlp2x_gelu",
        "mm_spatial_pool_mode": pool_mode, "mm_spatial_pool_stride": 2,
        "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "tokenizer_model_max_length": 32768, "tokenizer_padding_side": "right", "use_mm_proj": True,
        # Offline the tower config cannot be looked up by name: the tiny one carries its own.
        "vision_config": {**TINY_VISION, **(vision_overrides or {})},
    }
    config.update(lm_overrides or {})
    if "vision_config" in config and "hidden_size" in (vision_overrides or {}):
        config["mm_hidden_size"] = config["vision_config"]["hidden_size"]
    return config


def build_tiny_checkpoint(outdir: str | Path, *, newline_position: str = "grid", pool_mode: str = "bilinear",
                          seed: int = 0, shards: int = 2, lm_overrides: dict[str, Any] | None = None,
                          vision_overrides: dict[str, Any] | None = None,
                          generation_overrides: dict[str, Any] | None = None) -> Path:
    """Write the toy checkpoint to `outdir` and return its path. `newline_position="one_token"` = OneVision style.

    generation_config.json is laid out like Qwen2-7B-Instruct's (two stop ids, a repetition penalty and
    sampling defaults); `generation_overrides` replaces its fields (None removes one).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer_size = build_tokenizer(outdir)
    vocab_size = -(-tokenizer_size // 64) * 64  # padded like Qwen2's 152064 > 151646
    config = tiny_config(vocab_size, newline_position, pool_mode, tokenizer_size, lm_overrides, vision_overrides)
    write_random_weights(outdir, config, config["vision_config"], seed=seed, shards=shards)
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": [tokenizer_size - 1, tokenizer_size - 3],
                  "pad_token_id": tokenizer_size - 3, "do_sample": True, "repetition_penalty": 1.05,
                  "temperature": 0.7, "top_k": 20, "top_p": 0.8, **(generation_overrides or {})}
    generation = {k: v for k, v in generation.items() if v is not None}
    (outdir / "generation_config.json").write_text(json.dumps(generation))
    return outdir


def _away_from(centre: float, low: float, high: float, shape: torch.Size, generator: torch.Generator,
                device: str) -> torch.Tensor:
    """centre +- a random size in [low, high): never centre itself, so no parameter can be ignored unseen."""
    size = low + (high - low) * torch.rand(shape, generator=generator, device=device)
    sign = torch.randint(0, 2, shape, generator=generator, device=device) * 2 - 1
    return centre + sign * size


def _init(name: str, shape: torch.Size, generator: torch.Generator, device: str) -> torch.Tensor:
    # Biases random and non-zero, norm weights away from 1 (and 0): a forward pass that drops a bias or
    # a norm's affine then changes the logits, which a checkpoint of zeros and ones would hide.
    if name.endswith("bias"):
        values = _away_from(0.0, 0.05, 0.2, shape, generator, device)
    elif "norm" in name and name.endswith("weight"):
        values = _away_from(1.0, 0.1, 0.4, shape, generator, device)
    elif name.startswith(VISION_PREFIX) and len(shape) >= 2 and "position" not in name:
        # 1/sqrt(fan-in), not 0.02: at 0.02 the toy tower's attention is uniform and its LayerNorms all
        # but linear, so its q/k biases and norm affines hardly reach the logits.
        values = torch.randn(shape, generator=generator, device=device) * shape[1:].numel() ** -0.5
    else:
        values = torch.randn(shape, generator=generator, device=device) * 0.02
    return values.to(torch.bfloat16)


def write_random_weights(outdir: Path, config: dict[str, Any], vision_config: dict[str, Any], *, seed: int = 0,
                         shards: int = 2, device: str = "cpu") -> None:
    """Random bf16 weights under the original names, written shard by shard, plus config.json.

    Shapes come from meta-device modules, so a real-size (7B) checkpoint is written without ever
    holding the whole model in memory; `device="cuda"` makes the random numbers faster.
    """
    from safetensors.torch import save_file
    from transformers import Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from .model import qwen2_config

    with torch.device("meta"):
        lm = Qwen2ForCausalLM(qwen2_config(config, "sdpa"))
        tower = SiglipVisionModel(SiglipVisionConfig(**vision_config))
    shapes: dict[str, torch.Size] = {k: v.shape for k, v in lm.state_dict().items() if not k.endswith("inv_freq")}
    if config.get("tie_word_embeddings"):
        shapes.pop("lm_head.weight", None)  # tied: saved once, as the embeddings (like save_pretrained)
    # The authors delete the tower's last layer and its head before training, so neither is saved.
    last = vision_config["num_hidden_layers"] - 1
    for name, tensor in tower.state_dict().items():
        if not (name.startswith("head.") or name.startswith(f"encoder.layers.{last}.")):
            shapes[VISION_PREFIX + name] = tensor.shape
    hidden, mm_hidden = config["hidden_size"], config["mm_hidden_size"]
    shapes.update({f"{PROJECTOR_PREFIX}0.weight": torch.Size([hidden, mm_hidden]),
                   f"{PROJECTOR_PREFIX}0.bias": torch.Size([hidden]),
                   f"{PROJECTOR_PREFIX}2.weight": torch.Size([hidden, hidden]),
                   f"{PROJECTOR_PREFIX}2.bias": torch.Size([hidden]), NEWLINE_KEY: torch.Size([hidden])})

    generator = torch.Generator(device=device).manual_seed(seed)
    names = sorted(shapes)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: _init(name, shapes[name], generator, device).cpu() for name in names[i::shards]}
        if NEWLINE_KEY in part:  # a learnt vector, not a norm: give it a real scale
            part[NEWLINE_KEY] = (torch.randn(hidden, generator=generator, device=device) / hidden**0.5).to(torch.bfloat16).cpu()
        save_file(part, str(outdir / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
        del part
    (outdir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (outdir / "config.json").write_text(json.dumps(config, indent=2))
