"""A file's header read with PyAV before any reader opens it: frame count, rate, codec, size, and
whether it is a video at all, damaged or truncated (decord can abort or hang on such files)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from .container import open_input
from .errors import EmptyVideoError, NotAVideoError, UnreadableVideoError

# Files whose first bytes say "video container": when ffmpeg cannot open one, it is a damaged video
# (UnreadableVideoError), not some other kind of file (NotAVideoError).
VIDEO_MAGIC = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),  # mp4 / mov
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"), (0, b"FLV"), (0, b"OggS"), (0, b"\x00\x00\x01\xba"),  # avi, flv, ogg, mpeg-ps
)


@dataclass
class Probe:
    """What PyAV's header read says about a file: cheap, and done before decord ever sees the file,
    so that files decord might crash or hang on are recognised first."""
    path: str
    frames: int  # container's frame count, 0 if unknown
    fps: float  # average frame rate (what decord's get_avg_fps() reads), 0 if unknown
    seconds: float  # the stream's duration, 0 if unknown
    codec: str
    width: int
    height: int
    truncated: bool  # the index points past the end of the file: some frames' data is missing


def probe_file(path: str | os.PathLike) -> Probe:
    name = str(path)
    file = Path(path)
    if not file.exists():
        raise UnreadableVideoError(f"video file not found: {name}")
    if file.is_dir():
        raise UnreadableVideoError(f"{name} is a folder, not a video file")
    size = file.stat().st_size
    if size == 0:
        raise EmptyVideoError(f"{name} is empty (0 bytes)")
    try:
        container = open_input(name)
    except av.error.FileNotFoundError:
        raise UnreadableVideoError(f"video file not found: {name}") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        if looks_like_video(file):
            raise UnreadableVideoError(f"{name} looks like a video but is damaged or truncated "
                                       f"({ffmpeg_reason(err)})") from None
        raise NotAVideoError(f"{name} is not a video file (its contents are not a format ffmpeg can read)") from None
    with container:
        format_name = container.format.name
        if format_name == "image2" or format_name.endswith("_pipe") or format_name == "tty":
            raise NotAVideoError(f"{name} is an image or text file ({format_name}), not a video")
        if not container.streams:
            raise EmptyVideoError(f"{name} contains no video frames (the container is empty)")
        if not container.streams.video:
            raise NotAVideoError(f"{name} has no video track (an audio-only or data file?)")
        stream = container.streams.video[0]
        if stream.codec_context.name is None or stream.codec_context.width == 0:
            raise UnreadableVideoError(f"{name}: ffmpeg has no decoder for its video track")
        try:  # mp4: every sample's offset in the file is known without reading any data
            truncated = max((e.pos + e.size for e in stream.index_entries), default=0) > size
        except Exception:  # not every demuxer keeps an index
            truncated = False
        if stream.frames == 0 and next((p for p in container.demux(stream) if p.size), None) is None:
            raise EmptyVideoError(f"{name} contains no video frames")
        rate = stream.average_rate or stream.guessed_rate
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        return Probe(name, int(stream.frames or 0), float(rate) if rate else 0.0, seconds, stream.codec_context.name,
                      stream.codec_context.width, stream.codec_context.height, truncated)


def looks_like_video(file: Path) -> bool:
    with open(file, "rb") as f:
        head = f.read(16)
    return any(head[offset:offset + len(magic)] == magic for offset, magic in VIDEO_MAGIC)


def ffmpeg_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def decord_unsuitable(probe: Probe) -> str | None:
    """Why decord should not see this file, or None. decord can abort or return stale frames on
    broken input instead of raising, so the known bad cases go straight to PyAV."""
    if probe.truncated:
        return "the file is truncated"
    try:
        import decord  # noqa: F401
    except ImportError as err:
        return f"decord is not installed ({err})"
    return None
