"""A request planned before anything runs: which frames, what prompt, how many visual tokens, and the
language model's effective settings, from the video's header and the checkpoint's config alone (no
frame decoded, no weight loaded). `llava-video inspect` prints it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import context_length, read_config, vision_config_of
from .model import (
    VisualLayout,
    dtype_name,
    dtypes_for,
    language_model_settings,
    qwen2_config,
)
from .prompts import build_prompt
from .video import plan_clip


def inspect_request(video: str | os.PathLike, question: str, *, model: str, frames: int = 64,
                    start: float | None = None, end: float | None = None, pool_mode: str | None = None,
                    quant: str = "4bit", device: str = "cuda") -> dict[str, Any]:
    """What the model would see for this request: frame indices and timestamps, the full prompt
    text, the number of visual tokens, and the language model's effective settings (None when only
    the multimodal keys are known offline)."""
    config = read_config(model)
    layout = VisualLayout.from_config(config, vision_config_of(config), pool_mode)
    lm_settings = None
    if "hidden_size" in config:  # a full config.json, not only the known multimodal keys
        lm_settings = language_model_settings(qwen2_config(config, "sdpa"), quant=quant, context_length=context_length(config),
                                              dtype=dtype_name(dtypes_for(quant, torch.device(device))[0]))
    clip = plan_clip(video, num_frames=frames, start=start, end=end)
    return {
        "video": str(video), "model": model, "frame_indices": clip.frame_indices, "timestamps": clip.timestamps,
        "duration": clip.duration, "fps": clip.fps,
        "prompt": build_prompt(question, duration=clip.duration, timestamps=clip.timestamps),
        "visual_tokens": layout.visual_tokens(clip.num_frames), "tokens_per_frame": layout.tokens_per_frame,
        "newline_position": layout.newline_position, "pool_mode": layout.pool_mode, "language_model": lm_settings,
    }
