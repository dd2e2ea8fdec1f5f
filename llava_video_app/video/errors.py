"""What can be wrong with a video, as exceptions whose message is one sentence naming the file."""

from __future__ import annotations

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


class DecodeFailure(Exception):
    """Internal: a reader could not decode frames (the message says why); load_video turns it into
    UnreadableVideoError, or tries the other reader."""
