"""A file's header read with PyAV before any reader opens it: frame count, rate, codec, size, and
whether it is damaged or truncated (decord can abort or hang on such files). Whether it is a video
at all, of an allowed kind, admission.py decides first, from its bytes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import av

from .admission import DECORD_SUFFIXES, TIMELESS, Admitted, admit, open_container
from .errors import EmptyVideoError, NotAVideoError, UnreadableVideoError


@dataclass
class Probe:
    """What PyAV's header read says about a file: cheap, and done before decord ever sees the file,
    so that files decord might crash or hang on are recognised first."""
    path: str
    admitted: Admitted  # what the readers open
    frames: int  # container's frame count, 0 if unknown
    fps: float  # average frame rate (what decord's get_avg_fps() reads), 0 if unknown
    seconds: float  # the stream's duration, 0 if unknown
    codec: str
    width: int
    height: int
    truncated: bool  # the index points past the end of the file: some frames' data is missing
    timing: str | None = None  # where the times come from when the file has no timestamps (a raw stream)


def probe_file(path: str | os.PathLike) -> Probe:
    name = str(path)
    admitted = admit(path)  # refuses anything but one local file of an allowed container, unopened
    size = os.stat(admitted.path).st_size
    try:
        container = open_container(admitted)
    except av.error.FileNotFoundError:
        raise UnreadableVideoError(f"video file not found: {name}") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        # its first bytes are an allowed container's: a damaged video, not some other kind of file
        raise UnreadableVideoError(f"{name} looks like a video but is damaged or truncated "
                                   f"({ffmpeg_reason(err)})") from None
    with container:
        if not container.streams:
            raise EmptyVideoError(f"{name} contains no video frames (the container is empty)")
        if not container.streams.video:
            raise NotAVideoError(f"{name} has no video track (an audio-only or data file?)")
        stream = container.streams.video[0]
        if admitted.demuxer in TIMELESS and stream.codec_context.width == 0:  # no parameter set parsed whole
            raise UnreadableVideoError(f"{name} looks like a raw H.264 stream but is damaged or truncated (no "
                                       "complete picture in it)")
        if stream.codec_context.name is None or stream.codec_context.width == 0:
            raise UnreadableVideoError(f"{name}: ffmpeg has no decoder for its video track")
        try:  # mp4: every sample's offset in the file is known without reading any data
            truncated = max((e.pos + e.size for e in stream.index_entries), default=0) > size
        except Exception:  # not every demuxer keeps an index
            truncated = False
        if stream.frames == 0 and next((p for p in container.demux(stream) if p.size), None) is None:
            raise EmptyVideoError(f"{name} contains no video frames")
        rate = stream.average_rate or stream.guessed_rate
        timing = None
        if admitted.demuxer in TIMELESS:
            rate, timing = raw_rate(stream)
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        return Probe(name, admitted, int(stream.frames or 0), float(rate) if rate else 0.0, seconds,
                     stream.codec_context.name, stream.codec_context.width, stream.codec_context.height, truncated,
                     timing)


def raw_rate(stream: av.video.stream.VideoStream) -> tuple[float, str]:
    """A raw stream's frame rate and the note that says where it came from. Its packets have no timestamps:
    the rate is the SPS's VUI timing info when the encoder wrote it (the decoder's `framerate`), else
    FFmpeg's guess (the raw demuxer's `framerate` option, 25 fps), which the note calls assumed."""
    stated = stream.codec_context.framerate
    if stated:
        return float(stated), f"frame rate {float(stated):g} fps from the stream's SPS: raw stream without timestamps"
    guess = float(stream.average_rate or 25)
    return guess, f"frame rate assumed {guess:g} fps: raw stream without timing"


def ffmpeg_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def decord_unsuitable(probe: Probe) -> str | None:
    """Why decord should not see this file, or None. decord can abort or return stale frames on
    broken input instead of raising, so the known bad cases go straight to PyAV."""
    if probe.truncated:
        return "the file is truncated"
    if probe.admitted.demuxer in TIMELESS:
        return "a raw stream has no timestamps, which decord finds frames by"
    if not probe.admitted.decord_safe:  # decord cannot be told which demuxer and protocol to use
        return f"decord only opens {', '.join(sorted(DECORD_SUFFIXES))} files of their own container"
    try:
        import decord  # noqa: F401
    except ImportError as err:
        return f"decord is not installed ({err})"
    return None
