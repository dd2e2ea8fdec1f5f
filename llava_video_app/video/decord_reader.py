"""decord, the authors' reader: frame count and rate as it reports them, frames by index."""

from __future__ import annotations

import os
import re

import numpy as np

from .errors import DecodeFailure
from .parallel import read_in_parallel
from .probe import Probe


class DecordSource:
    name = "decord"

    def __init__(self, path: str | os.PathLike, probe: Probe, size: tuple[int, int] | None, *, forced: bool):
        import decord

        self.path, self.probe, self.forced = str(path), probe, forced
        self._admitted_path = probe.admitted.path  # the resolved file admission let decord open
        self.width, self.height = probe.width, probe.height
        self._size = size
        try:  # opening indexes every packet; the reader is kept for the first chunk of frames
            self._reader = decord.VideoReader(self._admitted_path, num_threads=1, **_decord_size(size))
            self.total_frames, self.fps = len(self._reader), float(self._reader.get_avg_fps())
        except Exception as err:  # decord raises DECORDError (a bare Exception) for everything
            raise DecodeFailure(_first_line(err)) from None
        if self.total_frames < 1 or not self.fps > 0:
            raise DecodeFailure(f"decord reports {self.total_frames} frames at {self.fps} fps")

    def read(self, indices: list[int], size: tuple[int, int] | None) -> np.ndarray:
        import decord

        first, self._reader = (self._reader if size == self._size else None), None

        def read_chunk(chunk: list[int]) -> np.ndarray:
            # One reader per thread (decord readers are not thread-safe): the first chunk's thread uses
            # the reader opened by __init__, the others open their own.
            try:
                reader = first if first is not None and chunk[0] == indices[0] else \
                    decord.VideoReader(self._admitted_path, num_threads=1, **_decord_size(size))
                return reader.get_batch(chunk).asnumpy()
            except Exception as err:
                raise DecodeFailure(_first_line(err)) from None

        frames = read_in_parallel(indices, read_chunk)
        if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) != len(indices):
            raise DecodeFailure(f"decord returned frames of shape {frames.shape}")
        return frames

    def close(self) -> None:
        self._reader = None


def _decord_size(size: tuple[int, int] | None) -> dict[str, int]:
    return {} if size is None else {"width": size[0], "height": size[1]}


def _first_line(err: Exception) -> str:
    """decord's messages start with "[time] /source/file.cc:151: "; keep the rest of the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0] if lines else type(err).__name__)[:300]
