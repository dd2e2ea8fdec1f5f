"""Which frames: the authors' sampling rule (model card `load_video`) and its trims, pure arithmetic."""

from __future__ import annotations

import math

import numpy as np

from .errors import EmptyVideoError, InvalidRangeError, UnreadableVideoError


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
