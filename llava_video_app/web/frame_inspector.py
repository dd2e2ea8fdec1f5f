"""The frame inspector: a frame of the gallery ("Frames the model saw") shown large with its time in
the video, previous/next through the frames, and the player seeking to each frame shown.

The handlers read the gallery's own value (files and their "3.20 s" captions, frame_gallery in
conversation.py), so they need no state of their own beyond the index shown.
"""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from ..timestamps import parse_time
from .player import seek_link

# The frames are the model's size (384 px; a few pixels for the tiny test model): shown as large as the box.
INSPECTOR_CSS = "#inspector-image img { width: 100%; height: 100%; object-fit: contain; }\n"

EMPTY = "Click a frame above to see it large; the video player jumps to its time."

# (image, caption, index, seconds to seek to, previous button, next button)
Shown = tuple[Any, str, int, Any, dict, dict]


def show(gallery: Sequence[tuple[Any, str | None]] | None, index: float | None) -> Shown:
    """Frame `index` of the gallery (clamped to its frames), or the empty inspector when there are none."""
    frames = list(gallery or [])
    if not frames or index is None or index < 0:
        return None, EMPTY, -1, None, gr.update(interactive=False), gr.update(interactive=False)
    n = min(max(int(index), 0), len(frames) - 1)
    image, caption = frames[n]
    seconds = parse_time(caption or "")
    at = f" · {seek_link(caption, seconds)} in the video" if seconds is not None else ""
    text = f"**Frame {n + 1} of {len(frames)}**{at}"
    return (image, text, n, seconds, gr.update(interactive=n > 0), gr.update(interactive=n < len(frames) - 1))


def pick(gallery: Sequence[tuple[Any, str | None]] | None, selected: gr.SelectData) -> Shown:
    """A click on a gallery frame."""
    index = selected.index[0] if isinstance(selected.index, (list, tuple)) else selected.index
    return show(gallery, index)


def previous(gallery: Sequence[tuple[Any, str | None]] | None, index: float | None) -> Shown:
    return show(gallery, (index or 0) - 1) if index is not None and index > 0 else show(gallery, index)


def following(gallery: Sequence[tuple[Any, str | None]] | None, index: float | None) -> Shown:
    return show(gallery, (index if index is not None and index >= 0 else -1) + 1)


def reset(_gallery: Any = None) -> Shown:
    """A new set of frames: the inspector shows none until one is clicked."""
    return show(None, None)
