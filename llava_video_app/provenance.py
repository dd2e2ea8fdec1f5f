"""What an answer carries so that it can be trusted and compared later: which video (name and content
hash) and trim, which model and settings (seed included) made it, a hash of the exact prompt, which
frames it saw, its token counts and how long it took (`Provenance`).

One record for every interface: the benchmark runner (eval/run.py), the app's answers (web/) and their
exports (transcript.py). Two answers with the same `prompt_sha256`, video hash and settings saw the
same input, so a difference between two runs is the model's (quantisation, pooling), not a prompt
drift; with the same seed too, a sampled answer is the same answer. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import AppConfig, GenerationSettings


def prompt_hash(prompt: str) -> str:
    """SHA-256 of the full prompt text (chat template, time instruction and question included)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


_HASHES: dict[tuple, str] = {}  # (path, mtime, size) -> sha256: a follow-up does not read the file again
_HASHES_LOCK = threading.Lock()
_HASHES_KEPT = 256


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, remembered while the file keeps its size and modification time."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _HASHES_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    with _HASHES_LOCK:
        if len(_HASHES) >= _HASHES_KEPT:
            _HASHES.pop(next(iter(_HASHES)))
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def video_identity(path: str | os.PathLike) -> dict[str, Any]:
    """The video as a record names it: file name (not the folder, which may be a server's), content hash, size."""
    path = Path(path)
    return {"name": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def settings_of(config: AppConfig, generation: GenerationSettings) -> dict[str, Any]:
    """The settings that decide an answer, as plain JSON values: two runs whose settings differ here
    are two different experiments (eval/run.py refuses to resume one as the other). The seed an answer
    used is Provenance.seed (a random one per answer unless generation.seed is set)."""
    return {"model": config.model, "quant": config.quant, "device": config.device, "pool_mode": config.pool_mode,
            "frames": config.frames, "time_instruction": config.time_instruction,
            "decode_at_model_size": config.decode_at_model_size, "max_new_tokens": generation.max_new_tokens,
            "temperature": generation.temperature, "top_p": generation.top_p}


def settings_for(engine: Any, generation: GenerationSettings, frames: int | None = None) -> dict[str, Any]:
    """settings_of for an answer of `engine` (its config, model id and quantisation; engines
    without them: the defaults), with the request's own frame count."""
    config = getattr(engine, "config", None) or AppConfig()
    settings = {**settings_of(config, generation), "model": getattr(engine, "model_id", config.model),
                "quant": getattr(engine, "quant", config.quant)}
    if frames is not None:
        settings["frames"] = int(frames)
    return settings


@dataclass
class Provenance:
    """The record of how one answer was made (JSON-ready through `to_dict`)."""

    settings: Mapping[str, Any]
    prompt_sha256: str
    frame_indices: Sequence[int] = ()
    timestamps: Sequence[float] = ()
    # seconds: video, vision, prefill, time_to_first_token, total
    timings: Mapping[str, float] = field(default_factory=dict)
    new_tokens: int = 0
    created: float = field(default_factory=time.time)  # Unix time
    video: Mapping[str, Any] | None = None  # video_identity: name, sha256, bytes
    trim: Mapping[str, float | None] = field(default_factory=lambda: {"start": None, "end": None})  # None: the ends
    seed: int | None = None  # the sampler's seed this answer used
    visual_tokens: int = 0
    prompt_tokens: int = 0  # the whole input, visual tokens included
    tokens_per_s: float = 0.0
    stopped: bool = False  # cut short by Stop
    video_timing: str | None = None  # a raw stream's "frame rate assumed 25 fps: ..." (VideoClip.timing); None: stated

    @classmethod
    def of_answer(cls, settings: Mapping[str, Any], prompt: str | None, clip: Any = None, stats: Any = None, *,
                  video: str | os.PathLike | None = None, start: float | None = None,
                  end: float | None = None) -> "Provenance":
        """From the prompt (None: the hash the engine's stats carry), the clip (engine.VideoClip:
        frames and times), the engine's GenerationStats of the answer (None for engines without
        them), the video file (hashed) and the trim asked for."""
        timings = {} if stats is None else {name: round(float(getattr(stats, f"{name}_s", 0.0)), 4)
                                            for name in ("video", "vision", "prefill", "time_to_first_token", "total")}
        digest = prompt_hash(prompt) if prompt is not None else str(getattr(stats, "prompt_sha256", "") or "")
        return cls(dict(settings), digest,
                   list(getattr(clip, "frame_indices", ()) or ()),
                   [round(float(t), 3) for t in (getattr(clip, "timestamps", ()) or ())],
                   timings, int(getattr(stats, "new_tokens", 0) or 0),
                   video=video_identity(video) if video is not None else None,
                   trim={"start": start, "end": end}, seed=getattr(stats, "seed", None),
                   visual_tokens=int(getattr(stats, "visual_tokens", 0) or 0),
                   prompt_tokens=int(getattr(stats, "prompt_tokens", 0) or 0),
                   tokens_per_s=round(float(getattr(stats, "tokens_per_s", 0.0) or 0.0), 2),
                   stopped=bool(getattr(stats, "stopped", False)), video_timing=getattr(clip, "timing", None))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a person: what a reader needs to ask the same again."""
        return summary_of(self.to_dict())


def summary_of(record: Mapping[str, Any]) -> str:
    """Provenance.summary for a record as to_dict (or an export) gives it."""
    s = record.get("settings", {})
    video = record.get("video") or {}
    trim = record.get("trim") or {}
    parts = []
    if video:
        parts.append(f"{video.get('name')} (sha256 {str(video.get('sha256', ''))[:12]})")
    if trim.get("start") is not None or trim.get("end") is not None:
        end = "the end" if trim.get("end") is None else f"{trim['end']:g} s"
        parts.append(f"trim {trim.get('start') or 0:g} s to {end}")
    parts.append(f"{s.get('frames')} frames, pool {s.get('pool_mode') or 'checkpoint'}")
    sampling = ("greedy" if not s.get("temperature")
                else f"temperature {s.get('temperature'):g}, top-p {s.get('top_p'):g}")
    parts.append(f"{sampling}, seed {record.get('seed')}")
    parts.append(f"{s.get('model')} ({s.get('quant')})")
    parts.append(f"{record.get('visual_tokens', 0):,} visual of {record.get('prompt_tokens', 0):,} input tokens")
    timings = record.get("timings") or {}
    if timings:
        parts.append(f"first token {timings.get('time_to_first_token', 0):.2f} s, "
                     f"{record.get('new_tokens', 0)} tokens at {record.get('tokens_per_s', 0):.1f} tok/s")
    if record.get("video_timing"):  # the frames' times rest on this rate
        parts.append(str(record["video_timing"]))
    return " · ".join(parts) + (" · stopped" if record.get("stopped") else "")
