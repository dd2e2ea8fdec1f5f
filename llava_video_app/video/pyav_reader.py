"""PyAV: decodes only keyframe-to-target spans, skips the unwanted frames nothing refers to, and scales
while converting; frame i is the i-th frame in presentation order, as decord counts it."""

from __future__ import annotations

import bisect
import functools
import logging
import os
from typing import Sequence

import av
import numpy as np

from .errors import EmptyVideoError, UnreadableVideoError
from .parallel import read_in_parallel
from .admission import TIMELESS, UNINDEXED, Admitted, open_container
from .probe import Probe, ffmpeg_reason

log = logging.getLogger(__name__)

INTERPOLATION = "BICUBIC"  # what SigLIP's image processor resizes with
# ffmpeg decoders that read `skip_frame` for every frame, so it can change packet by packet (libdav1d,
# for one, reads it once when opened and would then skip wanted frames too).
SKIP_PER_PACKET = frozenset({"h264", "hevc", "vp9", "mpeg4"})


class PyAVSource:
    """Frame i = the packet with the i-th smallest pts (what decord means by i too). Reading demuxes
    the whole file once (packets, not frames) to know every frame's pts and where the keyframes are.
    A raw stream (TIMELESS) has no pts: its packets are counted in decode order, and frame i is the
    decoder's i-th output frame (the decoder reorders into presentation order)."""

    name = "pyav"

    def __init__(self, path: str | os.PathLike, probe: Probe, *, forced: bool):
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
                st = os.stat(self.probe.admitted.path)
            except OSError as err:
                raise UnreadableVideoError(f"{self.path} could not be read: {err.strerror}") from None
            # Keyed by the file's identity: a replaced file (new mtime or size) is read afresh.
            self._table = read_frame_table(self.probe.admitted, st.st_mtime_ns, st.st_size)
        return self._table

    def read(self, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
        pts, keys = self._frame_table()
        missing = [i for i in indices if i >= len(pts)]
        if missing:
            raise UnreadableVideoError(f"{self.path} is damaged or truncated: frame {missing[0]} of "
                                       f"{self.total_frames} is not in the file")
        try:
            admitted = self.probe.admitted
            if admitted.demuxer in TIMELESS:  # one pass from the start: a second thread would only redo it
                return pyav_decode(admitted, indices, pts, keys, size)
            return read_in_parallel(indices, lambda chunk: pyav_decode(admitted, chunk, pts, keys, size))
        except (av.error.FFmpegError, OSError) as err:
            raise UnreadableVideoError(f"{self.path} could not be decoded: {ffmpeg_reason(err)}") from None

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=8)
def read_frame_table(admitted: Admitted, mtime_ns: int,
                     size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Demux (not decode) the whole file once: a long video's table costs a read of the whole file,
    so the last few are kept for the next sampling of the same video (other frame counts, trims,
    the synthesis pass at 1 fps)."""
    packets: list[tuple[int, bool]] = []
    path = admitted.name  # for messages
    timeless = admitted.demuxer in TIMELESS
    try:
        with open_container(admitted) as container:
            stream = container.streams.video[0]
            for packet in _until_error(container.demux(stream)):  # truncated: keep what is there
                # a raw stream's stand-in stamp: the packet's place in decode order (one frame per packet)
                stamp = len(packets) if timeless else packet.pts if packet.pts is not None else packet.dts
                if packet.size and stamp is not None:
                    packets.append((stamp, packet.is_keyframe))
    except (av.error.FFmpegError, OSError) as err:
        raise UnreadableVideoError(f"{path} could not be read: {ffmpeg_reason(err)}") from None
    packets.sort()
    keys = tuple(i for i, (_, key) in enumerate(packets) if key) or (0,)
    if admitted.demuxer in UNINDEXED:  # one span from the start: a seek in them may land past the keyframe
        keys = (0,)
    return tuple(pts for pts, _ in packets), keys  # shared by later readers: immutable


def pyav_decode(admitted: Admitted, indices: list[int], pts: Sequence[int], keys: Sequence[int],
                size: tuple[int, int] | None) -> np.ndarray:
    """Decode sorted `indices`: seek to the keyframe before each target when that skips work, decode
    forward, skip non-reference frames that are not wanted (nothing depends on them), and convert
    (scale + RGB) only the wanted frames. A raw stream (TIMELESS) is decoded from its start, every frame
    (a skipped one would not be counted), and the decoder's n-th output frame is frame n."""
    timeless = admitted.demuxer in TIMELESS
    wanted = {pts[i]: i for i in indices}
    targets = set(indices)
    index_of = {p: i for i, p in enumerate(pts)}
    out: dict[int, np.ndarray] = {}
    convert = {"format": "rgb24"}
    if size is not None:
        convert.update(width=size[0], height=size[1], interpolation=INTERPOLATION)
    pending = sorted(indices)
    path = admitted.name  # for messages
    position = -1  # index of the last frame the decoder returned
    seeks: dict[int, int] = {}  # target -> seeks made for it: a target missed twice is undecodable
    with open_container(admitted) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_count = 1  # parallelism comes from one reader per thread
        skip_unwanted = context.name in SKIP_PER_PACKET and not timeless
        packets = None
        while pending:
            target = pending[0]
            key = _key_before(keys, target)
            if packets is None or target <= position or key > position + 1:
                tries = seeks[target] = seeks.get(target, 0) + 1
                if tries > 2 or (timeless and packets is not None):  # a raw stream cannot seek: one pass
                    raise UnreadableVideoError(f"{path} is damaged: frame {target} could not be decoded")
                if tries == 2:  # missed it after a seek (open GOP, odd timestamps): start a GOP earlier
                    key = keys[max(0, bisect.bisect_left(keys, key) - 1)]
                if timeless:
                    pass  # FFmpeg refuses to seek a raw stream (EPERM): the container was just opened, at its start
                elif key == keys[0]:  # from the start: a seek to the first pts lands past it in MPEG-TS
                    container.seek(0)
                else:
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
                    if timeless:  # frames are counted: a lost one would shift every later frame's index
                        raise UnreadableVideoError(f"{path} is a damaged or truncated raw stream: one of its "
                                                   "frames could not be decoded") from None
                    log.debug("%s: packet at pts %s: %s", path, packet.pts, err)
                    continue
                for frame in decoded:
                    index = position + 1 if timeless else index_of.get(frame.pts)
                    if timeless and frame.is_corrupt and index in targets:  # e.g. a cut-off last frame
                        raise UnreadableVideoError(f"{path} is a damaged or truncated raw stream: frame {index} "
                                                   "is incomplete")
                    if index is not None:
                        position = index
                        if index in targets and index not in out:
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
