"""LLaVA-Video with transformers alone: Qwen2 LM (optionally 4-bit NF4), SigLIP tower, projector,
and the authors' video token layout (pool, newlines, splice), read from the checkpoint's config.

Reference: LLaVA-NeXT llava/model/llava_arch.py (get_2dPool, add_token_per_grid,
prepare_inputs_labels_for_multimodal) and multimodal_encoder/siglip_encoder.py.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import attention
from .checkpoint import (
    LANGUAGE_MODEL_KEYS,
    NEWLINE_KEY,
    PROJECTOR_PREFIX,
    VISION_PREFIX,
    Checkpoint,
    CheckpointError,
    context_length,
    open_checkpoint,
    resolve_checkpoint,
    unconsumed_keys,
)
from .generation_config import CheckpointGeneration

IMAGE_TOKEN_INDEX = -200  # the authors' sentinel id for the <image> placeholder
POOL_MODES = ("average", "max", "bilinear")  # mm_spatial_pool_mode values the authors' get_2dPool knows
VISION_BATCH = 16  # frames per vision-tower forward: bounds activation memory at 64+ frames

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class VisualLayout:
    """How per-frame vision features become LM tokens (all read from the checkpoint config)."""

    patches_per_side: int  # 27 for SigLIP-so400m at 384
    pool_mode: str  # average | max | bilinear
    pool_stride: int
    newline_position: str  # grid | frame | one_token | no_token
    patch_merge_type: str  # flat | spatial_unpad | ...

    @property
    def pooled_side(self) -> int:
        if self.pool_stride <= 1:
            return self.patches_per_side
        if self.pool_mode == "bilinear":
            return math.ceil(self.patches_per_side / self.pool_stride)
        return self.patches_per_side // self.pool_stride  # avg/max pool, no padding

    @property
    def tokens_per_frame(self) -> int:
        s = self.pooled_side
        if self.patch_merge_type == "flat":
            return s * s
        return {"grid": s * (s + 1), "frame": s * s + 1}.get(self.newline_position, s * s)

    def visual_tokens(self, num_frames: int) -> int:
        extra = int(
            self.patch_merge_type != "flat" and self.newline_position == "one_token" and "unpad" in self.patch_merge_type
        )
        return num_frames * self.tokens_per_frame + extra

    @classmethod
    def from_config(cls, config: dict[str, Any], vision_config: dict[str, Any], pool_mode: str | None = None):
        layout = cls(
            patches_per_side=vision_config["image_size"] // vision_config["patch_size"],
            pool_mode=pool_mode or config.get("mm_spatial_pool_mode", "average"),
            pool_stride=int(config.get("mm_spatial_pool_stride", 2) or 1),
            newline_position=config.get("mm_newline_position", "one_token"),
            patch_merge_type=config.get("mm_patch_merge_type", "flat"),
        )
        if layout.pool_mode not in POOL_MODES:
            raise CheckpointError(f"unsupported mm_spatial_pool_mode {layout.pool_mode!r}")
        if layout.newline_position not in ("grid", "frame", "one_token", "no_token"):
            raise CheckpointError(f"unsupported mm_newline_position {layout.newline_position!r}")
        # Options that change the token layout and that this loader does not implement: refuse
        # rather than run a layout the checkpoint was not trained with.
        for key in ("add_faster_video", "mm_use_im_start_end"):
            if config.get(key):
                raise CheckpointError(f"{key}=true is not supported (it changes the visual token layout)")
        return layout


def build_projector(projector_type: str, mm_hidden: int, hidden: int) -> nn.Sequential:
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if not match:
        raise CheckpointError(f"unsupported mm_projector_type {projector_type!r} (expected mlpNx_gelu)")
    layers: list[nn.Module] = [nn.Linear(mm_hidden, hidden)]
    for _ in range(1, int(match.group(1))):
        layers += [nn.GELU(), nn.Linear(hidden, hidden)]  # exact GELU, as upstream
    return nn.Sequential(*layers)


class VisionTower(nn.Module):
    """SigLIP without its last encoder layer: patch tokens, no post-layernorm, no pooling head.

    As the authors' SigLipVisionTower: it deletes the last layer and takes hidden_states[-1], whatever
    mm_vision_select_layer says (-2 in every released checkpoint, which is the same layer).
    """

    def __init__(self, siglip_config: dict[str, Any], select_layer: int = -2):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        full_layers = siglip_config["num_hidden_layers"]
        if select_layer not in (-2, full_layers - 1):
            log.warning("mm_vision_select_layer=%s: the authors' SigLIP tower ignores it and uses the "
                        "second-to-last layer; so do we", select_layer)
        self.layers_used = full_layers - 1
        cfg = SiglipVisionConfig(**{**siglip_config, "num_hidden_layers": self.layers_used, "vision_use_head": False})
        self.siglip = SiglipVisionModel(cfg)
        self.image_size = cfg.image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.siglip.embeddings(pixel_values)
        return self.siglip.encoder(inputs_embeds=embeddings).last_hidden_state  # (N, patches, mm_hidden)


def usable_device(device: str) -> torch.device:
    """`device` as torch's, if this machine has it; else ValueError with one line saying what to pass
    (torch's own errors are a RuntimeError deep in a traceback)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be cpu, cuda or cuda:N (N = a GPU's number), not {device!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device} was asked for, but torch finds no CUDA GPU on this machine: "
                             "use --device cpu (or leave --device out to choose by hardware)")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif parsed.type not in ("cpu", "mps"):
        raise ValueError(f"device must be cpu, cuda or cuda:N (N = a GPU's number), not {device!r}")
    return parsed


class LlavaVideoModel:
    """Loaded model parts plus the video-to-embeddings path. Generation lives in engine.py."""

    def __init__(self, *, tokenizer, lm, vision: VisionTower, projector: nn.Sequential, image_newline: torch.Tensor | None,
                 layout: VisualLayout, config: dict[str, Any], model_id: str, quant: str, device: torch.device,
                 generation: CheckpointGeneration | None = None):
        self.tokenizer = tokenizer
        self.lm = lm
        self.vision = vision
        self.projector = projector
        self.image_newline = image_newline
        self.layout = layout
        self.config = config
        self.model_id = model_id
        self.quant = quant
        self.device = device
        self.generation = generation or CheckpointGeneration()  # generation_config.json: stops, penalties
        self.dtype = vision.siglip.embeddings.patch_embedding.weight.dtype
        # The authors resize the LM head to len(tokenizer) (152,064 rows -> 151,646 for Qwen2): ids
        # past the tokenizer are never picked; logits are cut to this many before choosing a token.
        self.vocab_size = min(len(tokenizer), int(lm.config.vocab_size))
        stops = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        file_eos = config.get("eos_token_id")
        stops |= set(file_eos if isinstance(file_eos, list) else [file_eos])
        stops |= set(self.generation.eos_token_ids)  # what the authors' generate stops at
        self.eos_token_ids = sorted(t for t in stops - {None, tokenizer.unk_token_id} if t < self.vocab_size)

    @property
    def context_length(self) -> int:
        return context_length(self.config)

    def language_model_settings(self) -> dict[str, Any]:
        """What the language model runs with (rotary base and scaling, context, dtype, quantisation)."""
        return language_model_settings(self.lm.config, quant=self.quant, context_length=self.context_length,
                                       dtype=dtype_name(self.lm.get_input_embeddings().weight.dtype))

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str, *, quant: str = "4bit", device: str = "cuda", pool_mode: str | None = None,
             attn_implementation: str = attention.NAME, progress: ProgressFn | None = None) -> "LlavaVideoModel":
        say = progress or (lambda message: log.info(message))
        ckpt = open_checkpoint(resolve_checkpoint(model, say))
        unread = unconsumed_keys(ckpt.config)
        if unread:
            log.debug("config.json keys nothing here reads (check they do not change the model): %s", ", ".join(unread))
        torch_device = usable_device(device)
        lm_dtype, vision_dtype = dtypes_for(quant, torch_device)
        layout = VisualLayout.from_config(ckpt.config, ckpt.vision_config, pool_mode)  # refuse early
        generation = CheckpointGeneration.read(ckpt.path)

        say(f"Loading language model ({quant})")
        lm = _load_language_model(ckpt, quant, lm_dtype, torch_device, attn_implementation)
        say("Loading vision tower and projector")
        vision, projector, newline = _load_vision_parts(ckpt, lm.config.hidden_size, vision_dtype, torch_device)
        from transformers import Qwen2Tokenizer

        # Explicit class: AutoTokenizer keys on config.model_type ("llava"), which maps to no tokenizer.
        tokenizer = Qwen2Tokenizer.from_pretrained(ckpt.path)
        say("Model ready")
        return cls(tokenizer=tokenizer, lm=lm, vision=vision, projector=projector, image_newline=newline,
                   layout=layout, config=ckpt.config, model_id=model, quant=quant, device=torch_device,
                   generation=generation)

    # --- video -> visual tokens ---------------------------------------------------------------
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """SigLIP preprocessing: bicubic resize to the tower size (no crop), [0,1], mean/std 0.5."""
        size = self.vision.image_size
        if frames.shape[1:3] != (size, size):
            from PIL import Image

            frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        return pixels.sub_(0.5).div_(0.5)

    def layout_for(self, pool_mode: str | None = None) -> VisualLayout:
        """The checkpoint's layout, or the same with another pool mode (a comparison's variant)."""
        if pool_mode is None or pool_mode == self.layout.pool_mode:
            return self.layout
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool mode must be one of {', '.join(POOL_MODES)}, not {pool_mode!r}")
        return dataclasses.replace(self.layout, pool_mode=pool_mode)

    @torch.inference_mode()
    def encode_video(self, frames: np.ndarray, pool_mode: str | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (visual_tokens, hidden) embeddings in the LM's input space
        (`pool_mode` None: the layout's)."""
        if len(frames) == 0:
            raise ValueError("no frames to encode")
        projected = []
        for start in range(0, len(frames), VISION_BATCH):
            pixels = self.preprocess(frames[start:start + VISION_BATCH]).to(self.device, self.dtype)
            projected.append(self.projector(self.vision(pixels)))
        features = self.pool(torch.cat(projected), pool_mode)
        return self.add_newlines(features)

    def pool(self, features: torch.Tensor, pool_mode: str | None = None) -> torch.Tensor:
        """get_2dPool: (F, side*side, D) -> (F, pooled*pooled, D)."""
        layout = self.layout_for(pool_mode)
        frames, _, dim = features.shape
        side = layout.patches_per_side
        if layout.pool_stride <= 1:
            return features
        grid = features.view(frames, side, side, dim).permute(0, 3, 1, 2)
        if layout.pool_mode == "average":
            grid = nn.functional.avg_pool2d(grid, layout.pool_stride)
        elif layout.pool_mode == "max":
            grid = nn.functional.max_pool2d(grid, layout.pool_stride)
        else:
            grid = nn.functional.interpolate(grid, size=[layout.pooled_side] * 2, mode="bilinear")
        return grid.permute(0, 2, 3, 1).reshape(frames, -1, dim)

    def add_newlines(self, features: torch.Tensor) -> torch.Tensor:
        """Place image_newline per mm_newline_position; returns one flat (tokens, D) sequence."""
        layout = self.layout
        frames, tokens, dim = features.shape
        if layout.patch_merge_type == "flat":
            return features.reshape(-1, dim)
        newline = self._newline(features)
        if layout.newline_position == "grid":  # after every row of every frame
            side = int(math.isqrt(tokens))
            rows = features.view(frames, side, side, dim)
            return torch.cat([rows, newline.expand(frames, side, 1, dim)], dim=2).reshape(-1, dim)
        if layout.newline_position == "frame":
            return torch.cat([features, newline.expand(frames, 1, dim)], dim=1).reshape(-1, dim)
        flat = features.reshape(-1, dim)
        if layout.newline_position == "one_token" and "unpad" in layout.patch_merge_type:
            return torch.cat([flat, newline.view(1, dim)])
        return flat

    def _newline(self, like: torch.Tensor) -> torch.Tensor:
        if self.image_newline is None:
            raise CheckpointError("the checkpoint has no model.image_newline but its layout needs one")
        return self.image_newline.to(like.device, like.dtype)

    # --- text ----------------------------------------------------------------------------------
    def tokenize(self, prompt: str) -> list[int]:
        """Like the authors' tokenizer_image_token: pieces around <image> tokenised apart, joined by -200."""
        pieces = [self.tokenizer(piece, add_special_tokens=False).input_ids for piece in prompt.split("<image>")]
        ids: list[int] = list(pieces[0])
        for piece in pieces[1:]:
            ids += [IMAGE_TOKEN_INDEX, *piece]
        return ids

    @torch.inference_mode()
    def embed(self, ids: Sequence[int], visual: torch.Tensor | None) -> torch.Tensor:
        """Token ids with at most one sentinel -> (1, L, hidden) input embeddings, visual tokens spliced in."""
        embed_tokens = self.lm.get_input_embeddings()
        where = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN_INDEX]
        if len(where) > 1:
            raise ValueError("one video per conversation: the prompt has several <image> placeholders")
        if where and visual is None:
            raise ValueError("the prompt has a video placeholder but no visual features were given")
        text_ids = torch.tensor([t for t in ids if t != IMAGE_TOKEN_INDEX], device=embed_tokens.weight.device)
        text = embed_tokens(text_ids)
        if not where:
            return text[None]
        at = where[0]
        visual = visual.to(text.device, text.dtype)
        return torch.cat([text[:at], visual, text[at:]])[None]

    def expanded_length(self, ids: Sequence[int], num_frames: int) -> int:
        visual = self.layout.visual_tokens(num_frames)
        return sum(visual if t == IMAGE_TOKEN_INDEX else 1 for t in ids)


# --- loading helpers ---------------------------------------------------------------------------
def dtypes_for(quant: str, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(LM dtype, vision dtype). Vision tower and projector stay 16-bit when the LM is 4-bit."""
    if quant == "fp32":
        return torch.float32, torch.float32
    if quant == "fp16":
        return torch.float16, torch.float16
    if quant in ("bf16", "4bit", "int4"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16, torch.float16
        return torch.bfloat16, torch.bfloat16
    raise ValueError(f"unknown quantisation {quant!r}: use 4bit, int4, bf16, fp16 or fp32")


def qwen2_config(config: dict[str, Any], attn_implementation: str):
    """The language model's Qwen2Config from the checkpoint's config.json.

    The keys are named explicitly (checkpoint.LANGUAGE_MODEL_KEYS), never taken from a default
    config's key list: transformers 5 has `rope_parameters` and no `rope_theta` there, and a filter
    on those keys silently ran the model with rotary base 10,000 instead of the file's 1,000,000.
    `check_language_model_settings` then verifies that each one took effect.
    """
    from transformers import Qwen2Config

    fields = {k: config[k] for k in LANGUAGE_MODEL_KEYS if k in config}
    qwen = Qwen2Config(**fields)
    qwen._attn_implementation = attn_implementation
    mismatches = check_language_model_settings(config, qwen)
    if mismatches:
        raise CheckpointError("the installed transformers did not apply these checkpoint settings: "
                              + "; ".join(f"{k}: file {f!r}, effective {e!r}" for k, (f, e) in mismatches.items()))
    return qwen


def effective_rope(qwen_config) -> dict[str, Any]:
    """The rotary settings the model runs with, whichever key layout the transformers version uses."""
    params = getattr(qwen_config, "rope_parameters", None)
    if isinstance(params, dict) and "full_attention" in params and isinstance(params["full_attention"], dict):
        params = params["full_attention"]  # per-layer-type layout
    if not isinstance(params, dict):  # transformers 4 layout
        params = {"rope_theta": getattr(qwen_config, "rope_theta", None),
                  **(getattr(qwen_config, "rope_scaling", None) or {})}
    return dict(params)


def check_language_model_settings(config: dict[str, Any], qwen_config) -> dict[str, tuple[Any, Any]]:
    """Checkpoint settings that did not reach the built Qwen2Config: {key: (file value, effective)}."""
    effective: dict[str, Any] = {}
    rope = effective_rope(qwen_config)
    for key in LANGUAGE_MODEL_KEYS:
        if key not in config or key in ("rope_parameters", "layer_types"):
            continue
        if key == "rope_theta":
            effective[key] = rope.get("rope_theta")
        elif key == "rope_scaling":
            scaling = config[key] or {}
            wanted_type = scaling.get("rope_type", scaling.get("type", "default"))
            got = {k: rope.get(k) for k in scaling if k not in ("type", "rope_type")}
            got_type = rope.get("rope_type", "default")
            if got_type != wanted_type or any(got[k] != scaling[k] for k in got):
                effective[key] = {**got, "rope_type": got_type}
            continue
        elif key == "sliding_window":
            # Qwen2 keeps the window only when use_sliding_window is on (as the original code does).
            wanted = config[key] if config.get("use_sliding_window") else None
            if getattr(qwen_config, key, None) != wanted:
                effective[key] = getattr(qwen_config, key, None)
            continue
        else:
            effective[key] = getattr(qwen_config, key, None)
        if effective[key] == config[key]:
            del effective[key]
    return {k: (config[k], v) for k, v in effective.items()}


def language_model_settings(qwen_config, *, quant: str, context_length: int, dtype: str) -> dict[str, Any]:
    """The settings that decide what the language model computes, as it will run them."""
    rope = effective_rope(qwen_config)
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "rope_type", "type")}
    return {
        "rope_theta": rope.get("rope_theta"), "rope_type": rope.get("rope_type", "default"), "rope_scaling": scaling or None,
        "context_length": context_length, "rms_norm_eps": qwen_config.rms_norm_eps,
        "sliding_window": qwen_config.sliding_window if getattr(qwen_config, "use_sliding_window", False) else None,
        "layers": qwen_config.num_hidden_layers, "hidden_size": qwen_config.hidden_size,
        "attention_heads": qwen_config.num_attention_heads, "kv_heads": qwen_config.num_key_value_heads,
        "vocab_size": qwen_config.vocab_size, "tie_word_embeddings": qwen_config.tie_word_embeddings,
        "quant": quant, "dtype": dtype,
    }


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _load_language_model(ckpt: Checkpoint, quant: str, dtype: torch.dtype, device: torch.device, attn: str):
    import transformers
    from transformers import BitsAndBytesConfig, Qwen2ForCausalLM

    if attn == attention.NAME:
        attention.register()
    kwargs: dict[str, Any] = dict(dtype=dtype, device_map={"": str(device)}, attn_implementation=attn,
                                  use_safetensors=True)
    if quant == "4bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise CheckpointError("4-bit needs bitsandbytes: pip install bitsandbytes (or use --quant bf16)") from err
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype,
        )
    elif quant == "int4":
        from transformers import TorchAoConfig

        kwargs["quantization_config"] = TorchAoConfig(int4_weight_only(device, int4_group_size(ckpt.config)))
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the multimodal keys are listed as UNEXPECTED: expected
    try:
        lm = Qwen2ForCausalLM.from_pretrained(ckpt.path, config=qwen2_config(ckpt.config, attn), **kwargs)
    finally:
        transformers.logging.set_verbosity(level)
    lm.eval()
    return lm


def int4_group_size(config: dict[str, Any]) -> int:
    """128 (the usual int4 group), or the largest smaller power of two that divides every linear
    layer's input (toy models): torchao leaves a layer whose input it does not divide unquantised."""
    inputs = (int(config["hidden_size"]), int(config["intermediate_size"]))
    return next(g for g in (128, 64, 32, 16) if all(n % g == 0 for n in inputs))


def int4_weight_only(device: torch.device, group_size: int = 128):
    """torchao's int4 weight-only config (asymmetric, tinygemm quantisation): packed for the CUDA
    tinygemm kernel on a GPU, for its CPU twin (_weight_int4pack_mm_for_cpu) elsewhere."""
    try:
        import torchao  # noqa: F401
    except ImportError as err:
        raise CheckpointError("int4 needs torchao: pip install torchao (or use --quant 4bit)") from err
    if device.type == "cuda":
        from torchao.quantization import Int4WeightOnlyConfig

        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

    return PrototypeInt4WeightOnlyConfig(group_size=group_size)


def _load_vision_parts(ckpt: Checkpoint, hidden: int, dtype: torch.dtype, device: torch.device):
    config = ckpt.config
    vision = VisionTower(ckpt.vision_config, int(config.get("mm_vision_select_layer", -2)))
    vision_keys = ckpt.keys_with_prefix(VISION_PREFIX)
    if not vision_keys:
        raise CheckpointError(f"{ckpt.path} holds no vision tower weights ({VISION_PREFIX}*)")
    wanted = vision.siglip.state_dict()
    # Checkpoints name the tower transformers-4 style (…vision_model.encoder…); map explicitly.
    state = {}
    for key, tensor in ckpt.read_tensors(vision_keys).items():
        name = key[len(VISION_PREFIX):]
        if name in wanted:
            state[name] = tensor
    missing = sorted(set(wanted) - set(state) - {n for n in wanted if n.startswith("post_layernorm.")})
    if missing:
        raise CheckpointError(f"vision tower weights missing from the checkpoint: {missing[:5]}")
    vision.siglip.load_state_dict(state, strict=False)

    if int(config["mm_hidden_size"]) != vision.siglip.config.hidden_size:
        raise CheckpointError(f"mm_hidden_size {config['mm_hidden_size']} does not match the vision tower's "
                              f"hidden size {vision.siglip.config.hidden_size}")
    projector = build_projector(config.get("mm_projector_type", "linear"), int(config["mm_hidden_size"]), hidden)
    proj_state = {k[len(PROJECTOR_PREFIX):]: v for k, v in ckpt.read_tensors(ckpt.keys_with_prefix(PROJECTOR_PREFIX)).items()}
    projector.load_state_dict(proj_state)  # strict: a projector must match exactly

    newline = None
    if NEWLINE_KEY in ckpt.weight_map:
        newline = ckpt.read_tensors([NEWLINE_KEY])[NEWLINE_KEY].to(device, dtype)
    vision.to(device, dtype).eval().requires_grad_(False)
    projector.to(device, dtype).eval().requires_grad_(False)
    return vision, projector, newline
