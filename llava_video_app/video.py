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
   `clip.decoder` (the reason is logged at debug level).
`LLAVA_VIDEO_DECODER=decord|pyav` forces one, with no fallback.

Both decode only keyframe-to-target spans, scale while converting (`size`), and split the wanted
frames over up to 4 threads (one per usable core), each with its own reader: readers are never
shared between threads.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

log = logging.getLogger(__name__)

DECODER_ENV = "LLAVA_VIDEO_DECODER"
DECODERS = ("decord", "pyav")
INTERPOLATION = "BICUBIC"  # what SigLIP's image processor resizes with
# ffmpeg decoders that read `skip_frame` for every frame, so it can change packet by packet (libdav1d,
# for one, reads it once when opened and would then skip wanted frames too).
_SKIP_PER_PACKET = frozenset({"h264", "hevc", "vp9", "mpeg4"})

# Files whose first bytes say "video container": when ffmpeg cannot open one, it is a damaged video
# (UnreadableVideoError), not some other kind of file (NotAVideoError).
_VIDEO_MAGIC = (
    (4, b"ftyp"), (4, b"moov"), (4, b"mdat"), (4, b"free"), (4, b"wide"),  # mp4 / mov
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"), (0, b"FLV"), (0, b"OggS"), (0, b"\x00\x00\x01\xba"),  # avi, flv, ogg, mpeg-ps
)


class VideoError(ValueError):
    """A video the app cannot use; the message is one sentence naming the file."""


class NotAVideoError(VideoError):
    pass


class EmptyVideoError(VideoError):
    pass


class UnreadableVideoError(VideoError):
    pass


class InvalidRangeError(VideoError):
    pass


@dataclass(frozen=True)
class VideoInfo:
    path: str
    total_frames: int
    fps: float
    duration: float
    width: int
    height: int
    decoder: str


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


# --- sampling (pure) ------------------------------------------------------------------------------

def sample_indices(total_frames: int, fps: float, *, num_frames: int | None = 64, start: float | None = None,
                   end: float | None = None, sample_fps: float | None = None,
                   max_frames: int | None = None) -> list[int]:
    """Frame indices to decode.

    - `num_frames` (default): the authors' rule, `linspace(first, last, num_frames, dtype=int)`;
      duplicates when the range has fewer frames.
    - `sample_fps` (wins when given): frame `first + round(k * fps / sample_fps)` for k = 0, 1, ...
      up to `last`; if that is more than `max_frames`, uniformly subsampled (same linspace rule) to it.
    - neither: every frame of the range (capped by `max_frames` the same way).
    The range [start, end] in seconds: first = ceil(start * fps) (the first frame at or after
    start), last = min(n - 1, floor(end * fps)) (the last frame at or before end); whole video
    when both are None. `max_frames` also caps `num_frames`.
    """
    if total_frames < 1:
        raise EmptyVideoError("the video has no frames")
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise UnreadableVideoError(f"the video's frame rate ({fps}) is unusable")
    if sample_fps is not None and not sample_fps > 0:
        raise InvalidRangeError(f"sample_fps must be > 0, not {sample_fps}")
    if sample_fps is None and num_frames is not None and num_frames < 1:
        raise InvalidRangeError(f"the number of frames must be at least 1, not {num_frames}")
    if max_frames is not None and max_frames < 1:
        raise InvalidRangeError(f"max_frames must be at least 1, not {max_frames}")
    first, last = _frame_range(total_frames, fps, start, end)

    if sample_fps is not None:
        step = fps / sample_fps
        indices = [first + round(k * step) for k in range(int((last - first) / step + 1e-9) + 1)]
        indices = [i for i in indices if i <= last]
    elif num_frames is not None:
        count = num_frames if max_frames is None else min(num_frames, max_frames)
        return np.linspace(first, last, count, dtype=int).tolist()
    else:
        indices = list(range(first, last + 1))
    if max_frames is not None and len(indices) > max_frames:
        indices = [indices[k] for k in np.linspace(0, len(indices) - 1, max_frames, dtype=int).tolist()]
    return indices


def _frame_range(total_frames: int, fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    duration = total_frames / fps
    if start is None and end is None:
        return 0, total_frames - 1
    begin = 0.0 if start is None else float(start)
    stop = duration if end is None else float(end)
    if not (math.isfinite(begin) and math.isfinite(stop)):
        raise InvalidRangeError(f"start and end must be finite numbers of seconds, not {start} and {end}")
    if begin < 0:
        raise InvalidRangeError(f"start ({begin:.2f}s) must not be negative")
    if begin >= duration:
        raise InvalidRangeError(f"start ({begin:.2f}s) is at or past the end of the video ({duration:.2f}s)")
    if stop <= begin:
        raise InvalidRangeError(f"end ({stop:.2f}s) must be after start ({begin:.2f}s)")
    if stop > duration + 1e-6:
        raise InvalidRangeError(f"end ({stop:.2f}s) is past the end of the video ({duration:.2f}s)")
    first = min(total_frames - 1, math.ceil(begin * fps - 1e-9))  # tolerance: 0.4 * 25 is 10.000000000000002
    last = min(total_frames - 1, math.floor(stop * fps + 1e-9))
    if last < first:
        raise InvalidRangeError(f"the range {begin:.2f}s-{stop:.2f}s contains no frame (one every {1 / fps:.3f}s)")
    return first, last


# --- public entry points --------------------------------------------------------------------------

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

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, duration and size, from the decoder load_video would use; decodes nothing."""
    source = _open(path)
    try:
        return VideoInfo(str(path), source.total_frames, source.fps, source.total_frames / source.fps,
                         source.width, source.height, source.name)
    finally:
        source.close()


def plan_clip(path: str | os.PathLike, *, num_frames: int | None = 64, start: float | None = None,
              end: float | None = None, sample_fps: float | None = None, max_frames: int | None = None) -> ClipPlan:
    """The frames load_video would decode with these arguments (see `sample_indices`), their
    timestamps and the video's duration, from the file's header alone: a bad file or range fails
    here, before any decoding or model loading."""
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
    source = _open(path, size)
    try:
        try:
            return _read(source, _plan(source, path, num_frames, start, end, sample_fps, max_frames), size)
        except _DecodeFailure as err:
            if source.name != "decord" or source.forced:
                raise UnreadableVideoError(f"{path} could not be decoded: {err}") from None
            log.debug("decord could not decode %s (%s); falling back to PyAV", path, err)
        source.close()
        source = _PyAVSource(path, source.probe, forced=False)  # its own frame count: plan again
        return _read(source, _plan(source, path, num_frames, start, end, sample_fps, max_frames), size)
    finally:
        source.close()


def _plan(source: "_DecordSource | _PyAVSource", path: str | os.PathLike, num_frames: int | None,
          start: float | None, end: float | None, sample_fps: float | None, max_frames: int | None) -> ClipPlan:
    try:
        indices = sample_indices(source.total_frames, source.fps, num_frames=num_frames, start=start, end=end,
                                 sample_fps=sample_fps, max_frames=max_frames)
    except VideoError as err:
        raise type(err)(f"{path}: {err}") from None
    return ClipPlan(path=str(path), frame_indices=indices, timestamps=[i / source.fps for i in indices],
                    duration=source.total_frames / source.fps, fps=source.fps, total_frames=source.total_frames,
                    width=source.width, height=source.height, decoder=source.name, start=start, end=end)


def _read(source: "_DecordSource | _PyAVSource", plan: ClipPlan, size: tuple[int, int] | None) -> VideoClip:
    indices = plan.frame_indices
    unique = sorted(set(indices))  # short videos repeat frames: decode each once
    frames = source.read(unique, size)
    if len(unique) != len(indices):
        position = {index: k for k, index in enumerate(unique)}
        frames = frames[[position[i] for i in indices]]
    return VideoClip(path=plan.path, frames=frames, frame_indices=indices, timestamps=plan.timestamps,
                     duration=plan.duration, fps=plan.fps, total_frames=plan.total_frames, decoder=source.name,
                     start=plan.start, end=plan.end)


# --- opening and validation -----------------------------------------------------------------------

class _DecodeFailure(Exception):
    """Internal: frames could not be decoded (message says why); becomes UnreadableVideoError."""


@dataclass
class _Probe:
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


def _open(path: str | os.PathLike, size: tuple[int, int] | None = None) -> "_DecordSource | _PyAVSource":
    """The reader for this file: see the module docstring for the order."""
    probe = _probe(path)
    forced = os.environ.get(DECODER_ENV, "").strip().lower()
    if forced and forced not in (*DECODERS, "auto"):
        raise ValueError(f"{DECODER_ENV} must be one of {', '.join(DECODERS)} or auto, not {forced!r}")
    if forced == "pyav":
        return _PyAVSource(path, probe, forced=True)
    if forced != "decord" and probe.frames > 0 and probe.codec in _SKIP_PER_PACKET:
        # The container states its frame count: that is decord's len(vr), and the average rate is
        # decord's get_avg_fps(), so PyAV samples exactly the authors' indices; it decodes them about
        # twice as fast (it can skip the unwanted frames nothing refers to; decord cannot).
        return _PyAVSource(path, probe, forced=False)
    reason = _decord_unsuitable(probe)
    if reason is None:
        try:
            return _DecordSource(path, probe, size, forced=forced == "decord")
        except _DecodeFailure as err:
            reason = str(err)
    if forced == "decord":
        raise UnreadableVideoError(f"{path} could not be opened with decord ({DECODER_ENV}=decord): {reason}")
    log.debug("not using decord for %s: %s; using PyAV", path, reason)
    return _PyAVSource(path, probe, forced=False)


def _probe(path: str | os.PathLike) -> _Probe:
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
        container = av.open(name, metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise UnreadableVideoError(f"video file not found: {name}") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        if _looks_like_video(file):
            raise UnreadableVideoError(f"{name} looks like a video but is damaged or truncated "
                                       f"({_ffmpeg_reason(err)})") from None
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
        return _Probe(name, int(stream.frames or 0), float(rate) if rate else 0.0, seconds, stream.codec_context.name,
                      stream.codec_context.width, stream.codec_context.height, truncated)


def _looks_like_video(file: Path) -> bool:
    with open(file, "rb") as f:
        head = f.read(16)
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _VIDEO_MAGIC)


def _ffmpeg_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _decord_unsuitable(probe: _Probe) -> str | None:
    """Why decord should not see this file, or None. decord can abort or return stale frames on
    broken input instead of raising, so the known bad cases go straight to PyAV."""
    if probe.truncated:
        return "the file is truncated"
    try:
        import decord  # noqa: F401
    except ImportError as err:
        return f"decord is not installed ({err})"
    return None


def _workers(count: int) -> int:
    """Threads to split `count` frames over: each decodes its own keyframe-to-target spans in
    parallel (the decoders release the GIL). Few frames are not worth a second reader."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4, count // 8))


def _parallel(indices: Sequence[int], read: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """Read sorted `indices` in contiguous chunks, one reader per thread, and stack in order."""
    chunks = [chunk.tolist() for chunk in np.array_split(np.asarray(indices), _workers(len(indices)))]
    if len(chunks) == 1:
        return read(chunks[0])
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="video-decode") as pool:
        return np.concatenate(list(pool.map(read, chunks)))


# --- decord ---------------------------------------------------------------------------------------

class _DecordSource:
    name = "decord"

    def __init__(self, path: str | os.PathLike, probe: _Probe, size: tuple[int, int] | None, *, forced: bool):
        import decord

        self.path, self.probe, self.forced = str(path), probe, forced
        self.width, self.height = probe.width, probe.height
        self._size = size
        try:  # opening indexes every packet; the reader is kept for the first chunk of frames
            self._reader = decord.VideoReader(self.path, num_threads=1, **_decord_size(size))
            self.total_frames, self.fps = len(self._reader), float(self._reader.get_avg_fps())
        except Exception as err:  # decord raises DECORDError (a bare Exception) for everything
            raise _DecodeFailure(_first_line(err)) from None
        if self.total_frames < 1 or not self.fps > 0:
            raise _DecodeFailure(f"decord reports {self.total_frames} frames at {self.fps} fps")

    def read(self, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
        import decord

        first, self._reader = (self._reader if size == self._size else None), None

        def read_chunk(chunk: list[int]) -> np.ndarray:
            # One reader per thread (decord readers are not thread-safe): the first chunk's thread uses
            # the reader opened by __init__, the others open their own.
            try:
                reader = first if first is not None and chunk[0] == indices[0] else \
                    decord.VideoReader(self.path, num_threads=1, **_decord_size(size))
                return reader.get_batch(chunk).asnumpy()
            except Exception as err:
                raise _DecodeFailure(_first_line(err)) from None

        frames = _parallel(indices, read_chunk)
        if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) != len(indices):
            raise _DecodeFailure(f"decord returned frames of shape {frames.shape}")
        return frames

    def close(self) -> None:
        self._reader = None


def _decord_size(size: tuple[int, int] | None) -> dict[str, int]:
    return {} if size is None else {"width": size[0], "height": size[1]}


def _first_line(err: Exception) -> str:
    """decord's messages start with "[time] /source/file.cc:151: "; keep the rest of the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0] if lines else type(err).__name__)[:300]


# --- PyAV -----------------------------------------------------------------------------------------

class _PyAVSource:
    """Frame i = the packet with the i-th smallest pts (what decord means by i too). Reading demuxes
    the whole file once (packets, not frames) to know every frame's pts and where the keyframes are."""

    name = "pyav"

    def __init__(self, path: str | os.PathLike, probe: _Probe, *, forced: bool):
        self.path, self.probe, self.forced = str(path), probe, forced
        self.width, self.height, self.fps = probe.width, probe.height, probe.fps
        self._table: tuple[Sequence[int], Sequence[int]] | None = None
        # the container's count if it states one (decord's len(vr) too), else the packets counted
        self.total_frames = probe.frames or len(self._frame_table()[0])
        if self.total_frames < 1:
            raise EmptyVideoError(f"{self.path} contains no video frames")
        if not self.fps > 0:
            if not probe.seconds:
                raise UnreadableVideoError(f"{self.path} states no frame rate and no duration")
            self.fps = self.total_frames / probe.seconds

    def _frame_table(self) -> tuple[Sequence[int], Sequence[int]]:
        """(pts of every frame in presentation order, indices of the keyframes)."""
        if self._table is None:
            try:
                st = os.stat(self.path)
            except OSError as err:
                raise UnreadableVideoError(f"{self.path} could not be read: {err.strerror}") from None
            # Keyed by the file's identity: a replaced file (new mtime or size) is read afresh.
            self._table = _read_frame_table(self.path, st.st_mtime_ns, st.st_size)
        return self._table

    def read(self, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
        pts, keys = self._frame_table()
        missing = [i for i in indices if i >= len(pts)]
        if missing:
            raise UnreadableVideoError(f"{self.path} is damaged or truncated: frame {missing[0]} of "
                                       f"{self.total_frames} is not in the file")
        try:
            return _parallel(indices, lambda chunk: _pyav_decode(self.path, chunk, pts, keys, size))
        except (av.error.FFmpegError, OSError) as err:
            raise UnreadableVideoError(f"{self.path} could not be decoded: {_ffmpeg_reason(err)}") from None

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=8)
def _read_frame_table(path: str, mtime_ns: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Demux (not decode) the whole file once: a long video's table costs a read of the whole file,
    so the last few are kept for the next sampling of the same video (other frame counts, trims,
    the synthesis pass at 1 fps)."""
    packets: list[tuple[int, bool]] = []
    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            for packet in _until_error(container.demux(stream)):  # truncated: keep what is there
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size and stamp is not None:
                    packets.append((stamp, packet.is_keyframe))
    except (av.error.FFmpegError, OSError) as err:
        raise UnreadableVideoError(f"{path} could not be read: {_ffmpeg_reason(err)}") from None
    packets.sort()
    keys = tuple(i for i, (_, key) in enumerate(packets) if key) or (0,)
    return tuple(pts for pts, _ in packets), keys  # shared by later readers: immutable


def _pyav_decode(path: str, indices: list[int], pts: Sequence[int], keys: Sequence[int],
                 size: tuple[int, int] | None) -> np.ndarray:
    """Decode sorted `indices`: seek to the keyframe before each target when that skips work, decode
    forward, skip non-reference frames that are not wanted (nothing depends on them), and convert
    (scale + RGB) only the wanted frames."""
    wanted = {pts[i]: i for i in indices}
    index_of = {p: i for i, p in enumerate(pts)}
    out: dict[int, np.ndarray] = {}
    convert = {"format": "rgb24"}
    if size is not None:
        convert.update(width=size[0], height=size[1], interpolation=INTERPOLATION)
    pending = sorted(indices)
    position = -1  # index of the last frame the decoder returned
    seeks: dict[int, int] = {}  # target -> seeks made for it: a target missed twice is undecodable
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_count = 1  # parallelism comes from one reader per thread
        skip_unwanted = context.name in _SKIP_PER_PACKET
        packets = None
        while pending:
            target = pending[0]
            key = _key_before(keys, target)
            if packets is None or target <= position or key > position + 1:
                tries = seeks[target] = seeks.get(target, 0) + 1
                if tries > 2:
                    raise UnreadableVideoError(f"{path} is damaged: frame {target} could not be decoded")
                if tries == 2:  # missed it after a seek (open GOP, odd timestamps): start a GOP earlier
                    key = keys[max(0, bisect.bisect_left(keys, key) - 1)]
                container.seek(pts[key], stream=stream, backward=True, any_frame=False)
                context.flush_buffers()
                packets = _until_error(container.demux(stream))
                position = key - 1  # decoding restarts at the keyframe
            for packet in packets:
                if skip_unwanted:  # a frame nobody wants and no other frame references is not decoded at all
                    context.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in wanted else "NONREF"
                try:
                    decoded = packet.decode()
                    if _last_of_span(packet.pts, wanted, index_of, pending, keys):
                        # Drain now rather than decode the packets after it that the decoder wants
                        # before it lets this frame out (B-frame reordering); the next target needs
                        # a seek anyway.
                        decoded += context.decode(None)
                        packets = None
                except av.error.FFmpegError as err:  # a damaged packet: the decoder conceals what it can
                    log.debug("%s: packet at pts %s: %s", path, packet.pts, err)
                    continue
                for frame in decoded:
                    index = index_of.get(frame.pts)
                    if index is not None:
                        position = index
                        if frame.pts in wanted and index not in out:
                            out[index] = frame.to_ndarray(**convert)
                while pending and pending[0] in out:
                    pending.pop(0)
                if packets is None:
                    break  # drained
                if not pending or pending[0] <= position:
                    break  # done, or the next target was missed: seek back
                if _key_before(keys, pending[0]) > position + 1:
                    break  # a keyframe lies between here and the next target: seek to it
            else:  # end of the file (or of its readable part)
                packets = None
                if pending and pending[0] > position:
                    raise UnreadableVideoError(f"{path} is damaged or truncated: frame {pending[0]} of "
                                               f"{len(pts)} could not be decoded")
    return np.stack([out[i] for i in indices])


def _last_of_span(stamp: int | None, wanted: dict[int, int], index_of: dict[int, int], pending: list[int],
                  keys: Sequence[int]) -> bool:
    """Whether the packet just sent is a wanted frame after which nothing else is wanted before the
    next keyframe (no pending target before it, the next one past a keyframe)."""
    if stamp is None or stamp not in wanted:
        return False
    sent = index_of[stamp]
    following = next((i for i in pending if i != sent), None)
    return following is None or _key_before(keys, following) > sent


def _key_before(keys: Sequence[int], index: int) -> int:
    """The last keyframe at or before `index` (the first keyframe if there is none)."""
    return keys[max(0, bisect.bisect_right(keys, index) - 1)]


def _until_error(packets):
    """Demuxed packets until the end of the file or the first demuxing error (a truncated file)."""
    try:
        yield from packets
    except av.error.FFmpegError as err:
        log.debug("demuxing stopped: %s", err)
