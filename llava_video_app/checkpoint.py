"""The original LLaVA-NeXT checkpoint format: where the files are, what the keys are called.

This module knows the on-disk format only (config.json + sharded safetensors + tokenizer files);
model.py builds modules from it and tiny.py writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."
NEWLINE_KEY = "model.image_newline"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

# The tower config is not in the checkpoint, only its name, and the Hub is not always reachable:
# the known towers' configs live here. A checkpoint may carry its own `vision_config` instead.
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    "google/siglip-so400m-patch14-384": dict(
        image_size=384, patch_size=14, hidden_size=1152, intermediate_size=4304,
        num_hidden_layers=27, num_attention_heads=16, layer_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh", num_channels=3,
    ),
}

# The multimodal choices of the known checkpoints (from their config.json), so that `inspect` can
# say what the model will see without downloading anything.
_SIGLIP = "google/siglip-so400m-patch14-384"
_VIDEO_MM = dict(mm_vision_tower=_SIGLIP, mm_newline_position="grid", mm_spatial_pool_mode="bilinear",
                 mm_spatial_pool_stride=2, mm_patch_merge_type="spatial_unpad", mm_projector_type="mlp2x_gelu",
                 mm_hidden_size=1152, mm_vision_select_layer=-2)
_ONEVISION_MM = {**_VIDEO_MM, "mm_newline_position": "one_token"}
KNOWN_MULTIMODAL_CONFIGS: dict[str, dict[str, Any]] = {
    "lmms-lab/LLaVA-Video-7B-Qwen2": _VIDEO_MM,
    "lmms-lab/LLaVA-Video-72B-Qwen2": _VIDEO_MM,
    "lmms-lab/LLaVA-Video-7B-Qwen2-Video-Only": _VIDEO_MM,
    "lmms-lab/llava-onevision-qwen2-0.5b-ov": _ONEVISION_MM,
    "lmms-lab/llava-onevision-qwen2-7b-ov": _ONEVISION_MM,
}

# Where each config.json key of the original format goes. A key in none of these groups is new to
# us: it is listed at load (debug log) so that a setting the loader drops is visible, not silent.
# The language model's settings, passed to Qwen2Config under their own names (the legacy
# rope_theta/rope_scaling included: transformers 5 folds them into rope_parameters).
LANGUAGE_MODEL_KEYS: tuple[str, ...] = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
    "rope_theta", "rope_scaling", "rope_parameters", "use_sliding_window", "sliding_window",
    "max_window_layers", "layer_types", "attention_dropout", "initializer_range", "use_cache",
    "bos_token_id", "eos_token_id", "pad_token_id",
)
# The vision tower, projector and visual token layout (model.py).
VISION_KEYS: tuple[str, ...] = (
    "mm_vision_tower", "vision_config", "mm_hidden_size", "mm_projector_type", "mm_vision_select_layer",
    "mm_patch_merge_type", "mm_newline_position", "mm_spatial_pool_stride",
    "mm_spatial_pool_mode", "add_faster_video", "mm_use_im_start_end",
)
# Read by the loader itself, or deliberately not used for videos (each with its reason).
LOADER_KEYS: dict[str, str] = {
    "architectures": "checked: a LLaVA-NeXT checkpoint",
    "model_type": "the LLaVA wrapper's type; the LM is built as Qwen2",
    "torch_dtype": "the dtype comes from --quant", "dtype": "the dtype comes from --quant",
    "transformers_version": "metadata", "_name_or_path": "metadata",
    "tokenizer_model_max_length": "context length: the smaller of this and max_position_embeddings",
    "tokenizer_padding_side": "batching only (one conversation per forward pass)",
    "mm_vision_select_feature": "SigLIP has no CLS token: 'patch' and 'cls_patch' keep the same tokens",
    "image_aspect_ratio": "images only (anyres tiling); videos are resized whole",
    "image_grid_pinpoints": "images only (anyres tiling)",
    "image_crop_resolution": "images only", "image_split_resolution": "images only",
    "mm_use_im_patch_token": "adds an unused <im_patch> token in training; never in a prompt",
    "mm_tunable_parts": "training only", "use_mm_proj": "training only", "tune_mm_mlp_adapter": "training only",
    "mm_projector_lr": "training only", "mm_vision_tower_lr": "training only", "freeze_mm_mlp_adapter": "training only",
    "use_pos_skipping": "training only", "pos_skipping_range": "training only",
    "mm_resampler_type": "the authors' encode_images never applies the resampler", "mm_spatial_pool_out_channels": "resampler only",
    "mm_mask_drop_mode": "resampler only", "mm_mask_drop_skip_percentage": "resampler only",
    "mm_mask_drop_ratio": "resampler only", "mm_mask_drop_ratio_upper": "resampler only",
    "mm_mask_drop_ratio_lower": "resampler only", "mm_perceiver_depth": "resampler only",
    "mm_perceiver_latents": "resampler only", "mm_perceiver_ff_mult": "resampler only",
    "mm_perceiver_pretrained": "resampler only", "mm_qformer_depth": "resampler only",
    "mm_qformer_latents": "resampler only", "mm_qformer_pretrained": "resampler only",
    "vision_tower_pretrained": "training only", "faster_token_stride": "only with add_faster_video",
    "force_sample": "sampling is always uniform over the clip", "frames_upbound": "--frames sets the count",
}


def context_length(config: dict[str, Any]) -> int:
    """Positions the model takes: max_position_embeddings, or the smaller tokenizer_model_max_length
    that the authors truncate inputs to."""
    limits = [int(v) for v in (config.get("max_position_embeddings"), config.get("tokenizer_model_max_length")) if v]
    return min(limits) if limits else 32768


def unconsumed_keys(config: dict[str, Any]) -> list[str]:
    """Keys of a config.json that neither the language model, the vision stack nor the loader reads."""
    known = {*LANGUAGE_MODEL_KEYS, *VISION_KEYS, *LOADER_KEYS}
    return sorted(k for k in config if k not in known)


# Files a loader needs from a Hub repo (no .bin/.pt: weights come from safetensors only).
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer*", "vocab*", "merges*"]


class CheckpointError(ValueError):
    """The folder or repo is not a LLaVA-NeXT-format checkpoint we can load."""


def vision_config_of(config: dict[str, Any]) -> dict[str, Any]:
    """The SigLIP config: the checkpoint's own `vision_config` if any, else the known one for its name."""
    if isinstance(config.get("vision_config"), dict):
        return dict(config["vision_config"])
    name = config.get("mm_vision_tower", "")
    if name in KNOWN_VISION_TOWERS:
        return dict(KNOWN_VISION_TOWERS[name])
    raise CheckpointError(
        f"unknown vision tower {name!r}: add its SigLIP config to KNOWN_VISION_TOWERS "
        "or a `vision_config` dict to the checkpoint's config.json"
    )


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    config: dict[str, Any]
    weight_map: dict[str, str]  # tensor name -> shard file name

    @property
    def vision_config(self) -> dict[str, Any]:
        return vision_config_of(self.config)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.weight_map if k.startswith(prefix)]

    def read_tensors(self, names: Iterable[str]) -> dict[str, Any]:
        """Read just these tensors (shard by shard, memory-mapped), not the whole checkpoint."""
        from safetensors import safe_open

        by_shard: dict[str, list[str]] = {}
        for name in names:
            by_shard.setdefault(self.weight_map[name], []).append(name)
        tensors = {}
        for shard, shard_names in by_shard.items():
            with safe_open(self.path / shard, framework="pt") as f:
                for name in shard_names:
                    tensors[name] = f.get_tensor(name)
        return tensors


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json: not a model folder")
    config = json.loads(config_file.read_text())
    if "mm_vision_tower" not in config:
        raise CheckpointError(
            f"{path} is not a LLaVA-NeXT-format checkpoint (config.json has no mm_vision_tower); "
            "expected e.g. lmms-lab/LLaVA-Video-7B-Qwen2"
        )
    if (path / INDEX_FILE).is_file():
        weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
    elif (path / SINGLE_FILE).is_file():
        from safetensors import safe_open

        with safe_open(path / SINGLE_FILE, framework="pt") as f:
            weight_map = {k: SINGLE_FILE for k in f.keys()}
    else:
        raise CheckpointError(f"{path} has no safetensors weights (only safetensors are loaded, never pickles)")
    return Checkpoint(path=path, config=config, weight_map=weight_map)


def resolve_checkpoint(model: str, progress: Callable[[str], None] | None = None) -> Path:
    """A local folder as is; anything else is a Hub id, downloaded (with progress bars) or taken from cache."""
    local = Path(model).expanduser()
    if local.exists():
        if not local.is_dir():
            raise CheckpointError(f"{model} is a file; give the model folder or a Hub id")
        return local
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise CheckpointError(f"{model!r} is neither an existing folder nor a Hub id like lmms-lab/LLaVA-Video-7B-Qwen2")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if progress:
        progress(f"Downloading {model} (cached after the first time)")
    try:
        return Path(snapshot_download(model, allow_patterns=DOWNLOAD_PATTERNS))
    except LocalEntryNotFoundError as err:
        raise CheckpointError(
            f"cannot download {model}: no network access to the Hugging Face Hub and no cached copy "
            "(pass a local folder with --model, or `llava-video tiny-checkpoint DIR` to try the app)"
        ) from err
    except HfHubHTTPError as err:
        raise CheckpointError(f"cannot download {model}: {err}") from err


def read_config(model: str) -> dict[str, Any]:
    """config.json of a local folder, of a cached Hub download, or the known multimodal keys; no download."""
    local = Path(model).expanduser()
    if local.is_dir():
        return open_checkpoint(local).config
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, "config.json", local_files_only=True)).read_text())
    except (OSError, ValueError):  # not cached: fall back to what we know of the public checkpoints
        if model in KNOWN_MULTIMODAL_CONFIGS:
            return dict(KNOWN_MULTIMODAL_CONFIGS[model])
        raise CheckpointError(f"{model!r} is not a local folder, not in the Hub cache and not a known checkpoint") from None
