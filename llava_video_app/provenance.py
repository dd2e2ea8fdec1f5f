"""What an answer carries so that it can be trusted and compared later: which model and settings
made it, a hash of the exact prompt, which frames it saw, and how long it took (`Provenance`).

Shared by every batch answerer (the benchmark runner, eval/run.py; a later batch-ask): two answers
with the same `prompt_sha256` and settings saw the same input, so a difference between two runs is
the model's (quantisation, pooling), not a prompt drift. Torch-free.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from .config import AppConfig, GenerationSettings


def prompt_hash(prompt: str) -> str:
    """SHA-256 of the full prompt text (chat template, time instruction and question included)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def settings_of(config: AppConfig, generation: GenerationSettings) -> dict[str, Any]:
    """The settings that decide an answer, as plain JSON values: two runs whose settings differ here
    are two different experiments (eval/run.py refuses to resume one as the other)."""
    return {"model": config.model, "quant": config.quant, "device": config.device, "pool_mode": config.pool_mode,
            "frames": config.frames, "time_instruction": config.time_instruction,
            "decode_at_model_size": config.decode_at_model_size, "max_new_tokens": generation.max_new_tokens,
            "temperature": generation.temperature, "top_p": generation.top_p}


@dataclass
class Provenance:
    """The record of how one answer was made (JSON-ready through `to_dict`)."""

    settings: Mapping[str, Any]
    prompt_sha256: str
    frame_indices: Sequence[int] = ()
    timestamps: Sequence[float] = ()
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds: video, vision, prefill, total
    new_tokens: int = 0
    created: float = field(default_factory=time.time)  # Unix time

    @classmethod
    def of_answer(cls, settings: Mapping[str, Any], prompt: str, clip: Any = None, stats: Any = None) -> "Provenance":
        """From the prompt, the clip (engine.VideoClip: frames and times) and the engine's
        GenerationStats of the answer (None for engines without them)."""
        timings = {} if stats is None else {name: round(float(getattr(stats, f"{name}_s", 0.0)), 4)
                                            for name in ("video", "vision", "prefill", "total")}
        return cls(dict(settings), prompt_hash(prompt),
                   list(getattr(clip, "frame_indices", ()) or ()),
                   [round(float(t), 3) for t in (getattr(clip, "timestamps", ()) or ())],
                   timings, int(getattr(stats, "new_tokens", 0) or 0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
