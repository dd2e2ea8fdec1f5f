"""The engine's caches of recent videos (decoded frames, visual features): least recently used out
first, bounded in entries and in bytes, so a few long or large videos cannot hold the memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch

from .video import VideoClip


class RecentlyUsed(OrderedDict):
    """Least recently used out first, bounded by entries (`size`) and by bytes (`max_bytes`: frames'
    and tensors' own bytes); a value bigger than `max_bytes` is made and returned but not kept."""

    def __init__(self, size: int, max_bytes: int | None = None):
        super().__init__()
        self.size = max(0, size)
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._sizes: dict[Hashable, int] = {}
        # Requests read their videos at once (outside the GPU's turns) while a model call and a Clear use
        # the cache: lookups and changes are one at a time; make() runs outside (a decode takes long).
        self._lock = threading.RLock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, bool]:
        with self._lock:
            if key in self:
                self.move_to_end(key)
                return self[key], True
        value = make()
        size = nbytes_of(value)
        if self.size and (self.max_bytes is None or size <= self.max_bytes):
            with self._lock:
                if key in self:  # made meanwhile by another request: keep one
                    self.nbytes -= self._sizes.pop(key)
                self[key] = value
                self._sizes[key] = size
                self.nbytes += size
                while len(self) > self.size or (self.max_bytes is not None and self.nbytes > self.max_bytes):
                    oldest, _ = self.popitem(last=False)
                    self.nbytes -= self._sizes.pop(oldest)
        return value, False

    def drop_where(self, matches: Callable[[Hashable], bool]) -> None:
        """Drop the entries whose key `matches`."""
        with self._lock:
            for key in [k for k in self if matches(k)]:
                del self[key]
                self.nbytes -= self._sizes.pop(key)

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._sizes.clear()
            self.nbytes = 0


def nbytes_of(value: Any) -> int:
    """Bytes a cached value holds: a clip's frames, a tensor's elements."""
    if isinstance(value, VideoClip):
        return int(value.frames.nbytes)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    return 0
