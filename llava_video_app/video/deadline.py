"""A deadline on every probe and decode: the work runs in a thread of its own, and a caller whose
deadline passes gets a message and goes on, leaving the thread to finish (or stay stuck) alone.

Why: a read from a stalled disk or mount blocks in the kernel, where neither FFmpeg's interrupt callback
(admission.READ_TIMEOUT_S) nor decord can end it. The caller (a web request holding the model's slot,
a synthesis worker) must not wait with it. Abandoned threads are counted; while too many are stuck,
new video work is refused at once instead of piling up more.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from .errors import UnreadableVideoError

T = TypeVar("T")

PROBE_DEADLINE_S = 30.0  # a header read (probe_video, plan_clip): a few reads of a local file
LOAD_DEADLINE_S = 600.0  # decoding a clip: a 2-hour 4K file's frame table is a read of the whole file
MAX_STUCK = 8  # abandoned reads still blocked: past this, video work is refused until they end

_lock = threading.Lock()
_stuck = 0


def stuck_reads() -> int:
    """Reads abandoned at their deadline that have not ended yet."""
    return _stuck


def within(seconds: float, name: str, work: Callable[[], T]) -> T:
    """`work()`'s result or exception, or UnreadableVideoError naming `name` once `seconds` pass."""
    global _stuck
    if _stuck >= MAX_STUCK:
        raise UnreadableVideoError(f"{name} was not read: {_stuck} earlier reads are still stalled on this server "
                                   "(a hung disk or mount?); try again later")
    done = threading.Event()
    outcome: dict[str, object] = {}
    abandoned = False

    def run() -> None:
        nonlocal abandoned
        global _stuck
        try:
            outcome["value"] = work()
        except BaseException as err:  # handed to the caller, who raises it
            outcome["error"] = err
        finally:
            with _lock:
                done.set()
                if abandoned:
                    _stuck -= 1

    threading.Thread(target=run, name="video-read", daemon=True).start()
    if not done.wait(seconds):
        with _lock:
            if not done.is_set():
                abandoned = True
                _stuck += 1
        if abandoned:
            raise UnreadableVideoError(f"{name} could not be read within {seconds:g} s (a stalled disk, mount or "
                                       "file?)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
