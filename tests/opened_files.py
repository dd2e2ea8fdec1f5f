"""Which files in a folder anything opens or reads, by any process: Linux inotify through ctypes (no
extra tool). Tests put a secret video in a watched folder and show that a playlist or protocol trick
naming it never gets it opened, not only that a message came back."""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

IN_ACCESS, IN_OPEN = 0x00000001, 0x00000020
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class OpenedFiles:
    """Every open or read of a file directly in `folder` since the watch began (or the last `take`)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self._fd, os.fsencode(self.folder), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {self.folder} failed")

    def take(self) -> list[str]:
        """Names opened or read since the last call, in order (repeats kept)."""
        names: list[str] = []
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return names
            offset = 0
            while offset < len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                names.append(data[offset:offset + length].rstrip(b"\0").decode(errors="replace"))
                offset += length

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "OpenedFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
