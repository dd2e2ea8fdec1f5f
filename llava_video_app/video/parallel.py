"""Splitting a clip's wanted frames over threads, one reader each (the decoders release the GIL)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np


def decode_workers(count: int) -> int:
    """Threads to split `count` frames over: each decodes its own keyframe-to-target spans in
    parallel (the decoders release the GIL). Few frames are not worth a second reader: at least 8
    frames each, so 64 frames use up to 8 cores (a GPU machine has them to spare)."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8, count // 8))


def read_in_parallel(indices: Sequence[int], read: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """Read sorted `indices` in contiguous chunks, one reader per thread, and stack in order."""
    chunks = [chunk.tolist() for chunk in np.array_split(np.asarray(indices), decode_workers(len(indices)))]
    if len(chunks) == 1:
        return read(chunks[0])
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="video-decode") as pool:
        return np.concatenate(list(pool.map(read, chunks)))
