"""What a video may be, decided from the file itself before any decoder sees it: one regular local
file whose first bytes are a container on the allowlist. Every `av.open` of a video goes through
`open_container`, which forces that container's demuxer and FFmpeg's `file` protocol alone.

Why: FFmpeg follows whatever a file names. An HLS playlist (or a concat list, an image-sequence
pattern, a nested protocol such as `subfile:` or `data:`) makes it open other files on the server,
URLs, or the playlist itself again (unbounded memory), or wait forever for a live playlist's next
segment. None of the containers below can reference another file when opened this way (mov's
external data references are off), so a file admitted here reads only itself.

Raw H.264 (an Annex B elementary stream, FFmpeg's `h264` demuxer) is admitted too, though it has no
container: its packets carry no timestamps and its rate is the SPS's, or a guess (see probe.py,
`Probe.timing`), so its frames are counted in the decoder's output order (pyav_reader) and never given to
decord.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import av

from .container import open_input
from .errors import EmptyVideoError, NotAVideoError, UnreadableVideoError

HEAD_BYTES = 1024  # enough for every signature below (three MPEG-TS packets start within 580 bytes)
# Seconds FFmpeg may wait for the file to open, then for any one read (its interrupt callback): a local
# regular file answers at once, so hitting either means a stalled disk or mount.
OPEN_TIMEOUT_S, READ_TIMEOUT_S = 10.0, 10.0

# The demuxers a video may be opened with, by FFmpeg name -> what people call it (for messages).
ALLOWED = {"mov": "mp4/mov", "matroska": "mkv/webm", "avi": "avi", "mpegts": "mpeg-ts", "mpeg": "mpeg-ps",
           "flv": "flv", "ogg": "ogg", "h264": "raw H.264"}
ALLOWED_TEXT = "mp4/mov, mkv/webm, avi, mpeg-ts, mpeg-ps, flv, ogg or raw H.264"
# decord opens files without options (FFmpeg guesses the demuxer from the bytes and the name): only
# containers whose signatures no text-based demuxer (playlist, concat list) can share, under a video name
# no image-sequence pattern or glob can be read into.
DECORD_FORMATS = frozenset(ALLOWED) - {"h264"}
DECORD_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg",
                             ".mpeg", ".flv", ".ogv"})
# Demuxers without an index: a seek by timestamp can land past the keyframe asked for, so they are read
# from the start (see pyav_reader).
UNINDEXED = frozenset({"mpegts", "mpeg", "h264"})
# Demuxers whose packets carry no timestamps (a raw stream): a frame's index is its place in the decoder's
# output (presentation order), and its time is index / the stream's stated or assumed rate.
TIMELESS = frozenset({"h264"})
_PATTERN_CHARS = set("%*?[]{}")

# Options for every open: only the file protocol (no http, no subfile:/data:/concat: nesting), the forced
# demuxer alone, and mov's references to other files off.
_OPTIONS = {"protocol_whitelist": "file", "enable_drefs": "0", "use_absolute_path": "0"}
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
# Recognised but refused, with a message saying what the file is.
_REFUSED = ((b"#EXTM3U", "an HLS playlist"), (b"ffconcat", "an ffmpeg concat list"), (b"[playlist]", "a playlist"),
            (b"\x89PNG", "an image (png)"), (b"\xff\xd8\xff", "an image (jpeg)"), (b"GIF8", "an image (gif)"))


@dataclass(frozen=True)
class Admitted:
    """A file the video layer may open: its resolved path (what FFmpeg and decord are given) and the
    demuxer its bytes call for."""
    path: str  # absolute, symlinks resolved: never read as a URL or protocol by FFmpeg
    demuxer: str
    name: str  # as given: what messages call it

    @property
    def decord_safe(self) -> bool:
        """Whether decord (no demuxer or protocol options) may open it: see DECORD_FORMATS."""
        name = Path(self.path).name
        return (self.demuxer in DECORD_FORMATS and Path(name).suffix.lower() in DECORD_SUFFIXES
                and not _PATTERN_CHARS & set(self.path))


def admit(path: str | os.PathLike) -> Admitted:
    """The file, admitted, or a VideoError whose one sentence says why not (named as given)."""
    name = str(path)
    try:
        real = os.path.realpath(name)
        # O_NONBLOCK: a FIFO or device must not block the open; fstat then looks at what was opened.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableVideoError(f"video file not found: {name}") from None
    except IsADirectoryError:
        raise UnreadableVideoError(f"{name} is a folder, not a video file") from None
    except OSError as err:
        raise UnreadableVideoError(f"{name} could not be read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableVideoError(f"{name} is a folder, not a video file")
        if not stat.S_ISREG(info.st_mode):
            raise NotAVideoError(f"{name} is not a regular file (a pipe, socket or device): only a video file "
                                 "is accepted")
        try:
            head = os.read(fd, HEAD_BYTES)
        except OSError as err:
            raise UnreadableVideoError(f"{name} could not be read: {err.strerror}") from None
    finally:
        os.close(fd)
    if not head:
        raise EmptyVideoError(f"{name} is empty (0 bytes)")
    demuxer = sniff(head)
    if demuxer is None:
        what = next((what for magic, what in _REFUSED if head.lstrip(b"\xef\xbb\xbf").startswith(magic)), None)
        if what is None and _is_text(head):
            what = "a text file"
        if what is not None:
            raise NotAVideoError(f"{name} is {what}, not a video file: only a single video file "
                                 f"({ALLOWED_TEXT}) is accepted")
        raise NotAVideoError(f"{name} is not a video file (its contents are not {ALLOWED_TEXT})")
    return Admitted(real, demuxer, name)


def sniff(head: bytes) -> str | None:
    """The demuxer these first bytes are the start of (an allowed one), or None."""
    if head[4:8] in _MP4_BOXES:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    for offset, packet in ((0, 188), (4, 192)):  # MPEG-TS, and M2TS (a 4-byte time code before each packet)
        starts = range(offset, min(len(head), offset + 3 * packet), packet)
        if len(starts) and all(head[i] == 0x47 for i in starts):
            return "mpegts"
    if _h264_start(head):
        return "h264"
    return None


def _h264_start(head: bytes) -> bool:
    """An H.264 Annex B stream: a start code, then an access unit delimiter, SEI or sequence parameter set."""
    for code in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        if head.startswith(code) and len(head) > len(code):
            header = head[len(code)]
            return header & 0x80 == 0 and header & 0x1F in (6, 7, 9)
    return False


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # a character cut by the end of the sample
    return True


def open_container(admitted: Admitted) -> av.container.InputContainer:
    """`av.open` for an admitted file: its own demuxer forced, the file protocol only, deadlines on the
    open and on every read. The one place the video layer opens a container."""
    return open_input(admitted.path, format=admitted.demuxer, options=dict(_OPTIONS),
                      timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
