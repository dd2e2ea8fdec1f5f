"""Video stage: a video file -> the frames LLaVA-Video sees, and their timestamps.

Sampling is the authors' (model card `load_video`): `n = len(vr)`, `fps = vr.get_avg_fps()`,
indices `numpy.linspace(0, n - 1, num_frames, dtype=int)`, timestamps `index / fps`,
duration `n / fps`. Frame index i is the i-th frame in presentation order under both decoders, and
at native size both return identical pixels (tests check it on videos whose frames draw their index).

Which decoder (`LLAVA_VIDEO_DECODER=auto`, the default):
1. PyAV when the container states its frame count (mp4/mov: then n and fps are exactly decord's) and
   the codec lets unwanted non-reference frames be skipped (H.264, HEVC, VP9, MPEG-4 Part 2): the
   same frames, about twice as fast as decord on long videos;
2. otherwise decord (what the authors use), e.g. VP9/H.264 in webm/mkv, whose count decord estimates;
3. PyAV when decord cannot open or decode the file (AV1, truncated files, ...), silently except for
   `clip.decoder` (the reason is logged at debug level); and always for a raw H.264 stream, which has no
   timestamps: its frames are counted in order and its rate is the SPS's or assumed, as `timing` says.
`LLAVA_VIDEO_DECODER=decord|pyav` forces one, with no fallback.

Both decode only keyframe-to-target spans, scale while converting (`size`), and split the wanted
frames over up to 8 threads (one per usable core, at least 8 frames each), each with its own reader: readers are never
shared between threads.

Every file is first admitted (admission.py: one local file of an allowed container, opened with its own
demuxer and FFmpeg's file protocol only), and every entry point runs under a deadline (deadline.py).

Here: the public entry points (probe_video, plan_clip, load_video) and the choice of reader. The
rest: admission.py, container.py (av.open across PyAV 14-19), deadline.py, sampling.py (which frames),
probe.py (the header read),
pyav_reader.py and decord_reader.py, parallel.py (threads), errors.py.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from . import deadline
from .decord_reader import DecordSource
from .errors import (DecodeFailure, EmptyVideoError, InvalidRangeError, NotAVideoError, UnreadableVideoError,
                     VideoError)
from .probe import decord_unsuitable, probe_file
from .pyav_reader import SKIP_PER_PACKET, PyAVSource
from .sampling import sample_indices

__all__ = ["ClipPlan", "DECODERS", "DECODER_ENV", "EmptyVideoError", "InvalidRangeError", "NotAVideoError",
           "UnreadableVideoError", "VideoClip", "VideoError", "VideoInfo", "load_video", "plan_clip", "probe_video",
           "sample_indices"]

log = logging.getLogger(__name__)

DECODER_ENV = "LLAVA_VIDEO_DECODER"
DECODERS = ("decord", "pyav")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    total_frames: int
    fps: float
    duration: float
    width: int
    height: int
    decoder: str
    timing: str | None = None  # a raw stream's: where fps comes from ("frame rate assumed 25 fps: ..."); None: stated


@dataclass
class VideoClip:
    path: str
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    frame_indices: list[int]
    timestamps: list[float]  # seconds in the original video's time: index / fps
    duration: float  # the whole video's: total_frames / fps, as the authors compute it
    fps: float  # native average fps
    total_frames: int
    decoder: str  # "decord" or "pyav"
    start: float | None = None
    end: float | None = None
    timing: str | None = None  # as VideoInfo.timing


@dataclass(frozen=True)
class ClipPlan:
    """Which frames a clip is made of and when they are, worked out without decoding a frame."""

    path: str
    frame_indices: list[int]
    timestamps: list[float]  # seconds in the original video's time: index / fps
    duration: float  # the whole video's: total_frames / fps, as the authors compute it
    fps: float
    total_frames: int
    width: int
    height: int
    decoder: str  # the reader load_video starts with
    start: float | None = None
    end: float | None = None
    timing: str | None = None  # as VideoInfo.timing

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, duration and size, from the decoder load_video would use; decodes nothing."""
    return deadline.within(deadline.PROBE_DEADLINE_S, str(path), lambda: _probe(path))


def _probe(path: str | os.PathLike) -> VideoInfo:
    source = _open(path)
    try:
        return VideoInfo(str(path), source.total_frames, source.fps, source.total_frames / source.fps,
                         source.width, source.height, source.name, source.probe.timing)
    finally:
        source.close()


def plan_clip(path: str | os.PathLike, *, num_frames: int | None = 64, start: float | None = None,
              end: float | None = None, sample_fps: float | None = None, max_frames: int | None = None) -> ClipPlan:
    """The frames load_video would decode with these arguments (see `sample_indices`), their
    timestamps and the video's duration, from the file's header alone: a bad file or range fails
    here, before any decoding or model loading."""
    return deadline.within(deadline.PROBE_DEADLINE_S, str(path),
                           lambda: _plan_file(path, num_frames, start, end, sample_fps, max_frames))


def _plan_file(path: str | os.PathLike, num_frames: int | None, start: float | None, end: float | None,
               sample_fps: float | None, max_frames: int | None) -> ClipPlan:
    source = _open(path)
    try:
        return _plan(source, path, num_frames, start, end, sample_fps, max_frames)
    finally:
        source.close()


def load_video(path: str | os.PathLike, *, num_frames: int | None = 64, start: float | None = None,
               end: float | None = None, sample_fps: float | None = None, max_frames: int | None = None,
               size: tuple[int, int] | None = (384, 384)) -> VideoClip:
    """Decode the frames of `plan_clip(...)`, scaled by the decoder to `size` = (W, H), bicubic;
    native resolution when `size` is None."""
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (width, height) in pixels, not {size!r}")
    return deadline.within(deadline.LOAD_DEADLINE_S, str(path),
                           lambda: _load(path, num_frames, start, end, sample_fps, max_frames, size))


def _load(path: str | os.PathLike, num_frames: int | None, start: float | None, end: float | None,
          sample_fps: float | None, max_frames: int | None, size: tuple[int, int] | None) -> VideoClip:
    source = _open(path, size)
    try:
        try:
            return _read(source, _plan(source, path, num_frames, start, end, sample_fps, max_frames), size)
        except DecodeFailure as err:
            if source.name != "decord" or source.forced:
                raise UnreadableVideoError(f"{path} could not be decoded: {err}") from None
            log.debug("decord could not decode %s (%s); falling back to PyAV", path, err)
        source.close()
        source = PyAVSource(path, source.probe, forced=False)  # its own frame count: plan again
        return _read(source, _plan(source, path, num_frames, start, end, sample_fps, max_frames), size)
    finally:
        source.close()


def _plan(source: "DecordSource | PyAVSource", path: str | os.PathLike, num_frames: int | None,
          start: float | None, end: float | None, sample_fps: float | None, max_frames: int | None) -> ClipPlan:
    try:
        indices = sample_indices(source.total_frames, source.fps, num_frames=num_frames, start=start, end=end,
                                 sample_fps=sample_fps, max_frames=max_frames)
    except VideoError as err:
        raise type(err)(f"{path}: {err}") from None
    return ClipPlan(path=str(path), frame_indices=indices, timestamps=[i / source.fps for i in indices],
                    duration=source.total_frames / source.fps, fps=source.fps, total_frames=source.total_frames,
                    width=source.width, height=source.height, decoder=source.name, start=start, end=end,
                    timing=source.probe.timing)


def _read(source: "DecordSource | PyAVSource", plan: ClipPlan, size: tuple[int, int] | None) -> VideoClip:
    indices = plan.frame_indices
    unique = sorted(set(indices))  # short videos repeat frames: decode each once
    frames = source.read(unique, size)
    if len(unique) != len(indices):
        position = {index: k for k, index in enumerate(unique)}
        frames = frames[[position[i] for i in indices]]
    return VideoClip(path=plan.path, frames=frames, frame_indices=indices, timestamps=plan.timestamps,
                     duration=plan.duration, fps=plan.fps, total_frames=plan.total_frames, decoder=source.name,
                     start=plan.start, end=plan.end, timing=plan.timing)


def _open(path: str | os.PathLike, size: tuple[int, int] | None = None) -> "DecordSource | PyAVSource":
    """The reader for this file: see the module docstring for the order."""
    probe = probe_file(path)
    forced = os.environ.get(DECODER_ENV, "").strip().lower()
    if forced and forced not in (*DECODERS, "auto"):
        raise ValueError(f"{DECODER_ENV} must be one of {', '.join(DECODERS)} or auto, not {forced!r}")
    if forced == "pyav":
        return PyAVSource(path, probe, forced=True)
    if forced != "decord" and probe.frames > 0 and probe.codec in SKIP_PER_PACKET:
        # The container states its frame count: that is decord's len(vr), and the average rate is
        # decord's get_avg_fps(), so PyAV samples exactly the authors' indices; it decodes them about
        # twice as fast (it can skip the unwanted frames nothing refers to; decord cannot).
        return PyAVSource(path, probe, forced=False)
    reason = decord_unsuitable(probe)
    if reason is None:
        try:
            return DecordSource(path, probe, size, forced=forced == "decord")
        except DecodeFailure as err:
            reason = str(err)
    if forced == "decord":
        raise UnreadableVideoError(f"{path} could not be opened with decord ({DECODER_ENV}=decord): {reason}")
    log.debug("not using decord for %s: %s; using PyAV", path, reason)
    return PyAVSource(path, probe, forced=False)
