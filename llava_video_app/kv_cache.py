"""The language model's KV cache across a conversation: which inputs it holds, how much of the next
input it can serve, and the one fixed-size cache that compiled decoding is bound to.

A follow-up question on the same video repeats the first turn's prompt (13K visual tokens) and the
answer: the stored cache is cropped to the prefix the new input shares with it, so only the new
text is prefilled. Compiled decoding records CUDA graphs over the static cache's memory, so that
cache is emptied and reused, and replaced (by the next power of two) only when too small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import torch

from .model import IMAGE_TOKEN_INDEX

STATIC_CACHE_MIN = 4096  # static caches come in power-of-two sizes from here: one compile per size


@dataclass
class ConversationState:
    """A KV cache and exactly which inputs it holds."""

    visual_key: Hashable | None  # which clip's visual tokens stand in for the sentinel
    ids: list[int]  # prompt ids (the sentinel for the video) + the generated tokens fed back
    cache: Any = field(repr=False)


class ConversationCache:
    """Hands a generation the cache to continue from (`checkout`) and keeps what it leaves (`checkin`).

    Not thread-safe by itself: the engine calls it under its model lock.
    """

    def __init__(self, lm_config: Any, context_length: int, static: bool):
        self.lm_config = lm_config
        self.context_length = context_length
        self.static = static  # fixed-size caches, for compiled decode steps
        self.static_cache: Any = None  # the one static cache, reused across conversations
        self.state: ConversationState | None = None

    def checkout(self, ids: Sequence[int], visual: torch.Tensor | None, visual_key: Hashable | None,
                 needed: int) -> tuple[Any, int]:
        """(cache, positions already in it) for an input of `ids` that needs `needed` positions in all.

        The stored cache is taken (this generation owns it until it checks one in), cropped to the
        prefix it shares with `ids`; a fresh cache when nothing is shared or it is too small.
        """
        state, self.state = self.state, None
        if state is not None and capacity(state.cache) >= needed:
            reused = reusable_prefix(state, visual_key, ids, visual)
            if reused:
                drop_last(state.cache, int(state.cache.get_seq_length()) - reused)
                return state.cache, reused
        del state  # let an old dynamic cache go before the new one is allocated
        return self.new(needed), 0

    def checkin(self, visual_key: Hashable | None, ids: list[int], cache: Any) -> None:
        self.state = ConversationState(visual_key, ids, cache)

    def new(self, needed: int) -> Any:
        """An empty cache for `needed` positions: dynamic (grows as needed), or the static one."""
        if not self.static:
            from transformers import DynamicCache

            return DynamicCache()
        if self.static_cache is not None and capacity(self.static_cache) >= needed:
            self.static_cache.reset()
            return self.static_cache
        from transformers import StaticCache

        self.static_cache = None  # free the small one before allocating
        size = min(max(STATIC_CACHE_MIN, 1 << (needed - 1).bit_length()), max(self.context_length, needed))
        self.static_cache = StaticCache(config=self.lm_config, max_cache_len=size)
        return self.static_cache

    def forget(self) -> None:
        """Drop the conversation; the static cache stays (the compiled decoder is bound to it)."""
        self.state = None

    def release(self) -> None:
        self.state = None
        self.static_cache = None


def drop_last(cache: Any, count: int) -> None:
    """Forget the last `count` positions of a KV cache (the next update overwrites them).

    transformers 5.24's static layers crop themselves; those of 5.17 have no `crop` (Cache.crop then
    fails), but keep their length in the same `cumulative_length` tensor, shortened here in place as
    5.24 does it (the compiled step is bound to that tensor's address)."""
    if count <= 0:
        return
    for layer in cache.layers:
        if hasattr(layer, "crop"):
            layer.crop(-count)
        else:
            layer.cumulative_length.sub_(count)


def check_holds(cache: Any, positions: int) -> None:
    """Raise unless the KV cache holds `positions` positions after a prefill: a transformers that reads
    the cache under another argument name ignores it silently, and every answer would then be made
    without its video and question (this is what catches it)."""
    held = int(cache.get_seq_length())
    if held != positions:
        from .transformers_support import SPEC, installed_version

        raise RuntimeError(f"the language model kept {held} of the {positions} positions it was fed in its KV cache, "
                           f"so its answers would ignore the video and question; transformers "
                           f"{installed_version()} is installed, llava-video is tested with {SPEC}")


def capacity(cache: Any) -> int:
    """Positions a KV cache can hold (unbounded for a dynamic cache)."""
    sizes = [getattr(layer, "max_cache_len", None) for layer in getattr(cache, "layers", [])]
    return min(sizes) if sizes and None not in sizes else 1 << 62


def reusable_prefix(state: ConversationState, visual_key: Hashable | None, ids: Sequence[int],
                    visual: torch.Tensor | None) -> int:
    """How many leading input positions the stored cache already holds for this input.

    At least one position is always left to prefill, so the model produces fresh logits.
    """
    visual_len = visual.shape[0] if visual is not None else 0
    positions = 0
    for old, new in zip(state.ids, ids):
        if old != new:
            break
        if new == IMAGE_TOKEN_INDEX:
            if state.visual_key != visual_key:
                break
            positions += visual_len
        else:
            positions += 1
    total = sum(visual_len if t == IMAGE_TOKEN_INDEX else 1 for t in ids)
    positions = min(positions, total - 1, int(state.cache.get_seq_length()))
    # Never cut through the visual block: it is all or nothing.
    if IMAGE_TOKEN_INDEX in ids:
        at = list(ids).index(IMAGE_TOKEN_INDEX)
        if at < positions < at + visual_len:
            positions = at
    return max(positions, 0)
