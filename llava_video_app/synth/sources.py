"""Which videos a synthesis run covers, and where each one's records say it is (`list_videos`), and a
local file to decode for a video that lives elsewhere (`local_copy`).

What a run is given, and the video root its records' "video" paths are relative to (unless given):

    a video file                 the file                          its folder
    a folder                     its video files, recursively      the folder
    a glob (*, ?, [...])         the files it matches              the folder before the first wildcard
    a manifest (.txt/.lst/.list) one path or URL per line          the manifest's folder
    a URL (s3://, gs://, ...)    the same four, through fsspec     the URL itself (a folder or a glob's prefix)

Relative paths in a manifest are relative to the manifest's folder; blank lines and lines starting
with # are skipped. A URL needs fsspec and that filesystem's package (s3fs for s3://, gcsfs for
gs://, ...). A remote video is fetched into a temporary folder just before it is decoded; its
record path is its URL relative to a URL video root, or bucket + path without one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .result import relative_video, video_id_for

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".flv", ".ts",
                              ".wmv", ".3gp", ".ogv", ".h264", ".264"})  # .h264/.264: raw streams (video/admission.py)
MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
_WILDCARDS = "*?["


@dataclass(frozen=True)
class VideoSource:
    """One video of a run: where to read it and what its records call it."""

    location: str  # an absolute local path, or a URL
    relative: str  # the records' "video": posix, relative to the video root
    root: str = ""  # the local video root (synthesize's video_root); "" for a URL

    @property
    def is_remote(self) -> bool:
        return is_url(self.location)

    @property
    def video_id(self) -> str:
        return video_id_for(self.relative)

    def to_row(self) -> dict[str, str]:
        return {"location": self.location, "relative": self.relative, "root": self.root}

    @classmethod
    def from_row(cls, row: dict) -> "VideoSource":
        return cls(str(row["location"]), str(row["relative"]), str(row.get("root") or ""))


@dataclass(frozen=True)
class VideoList:
    root: str  # the video root the records' paths are relative to
    sources: tuple[VideoSource, ...]

    def __len__(self) -> int:
        return len(self.sources)


def is_url(text: str | os.PathLike) -> bool:
    return "://" in str(text)


def find_videos(path: str | os.PathLike) -> list[Path]:
    """A video file itself, or every video file under a local folder (recursive, by extension, sorted;
    hidden files and folders skipped)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def list_videos(spec: str | os.PathLike, video_root: str | os.PathLike | None = None) -> VideoList:
    """The videos of `spec` (a file, folder, glob, manifest or URL of one; see the module's docstring).
    Raises FileNotFoundError / ValueError with a one-line message for bad input."""
    text = str(spec)
    if is_url(text):
        locations, default_root = _list_remote(text)
    elif any(c in text for c in _WILDCARDS) and not Path(text).exists():
        locations, default_root = _list_glob(text)
    elif Path(text).is_file() and Path(text).suffix.lower() in MANIFEST_EXTENSIONS:
        return _list_manifest(Path(text), video_root)
    else:
        path = Path(text)
        locations = [str(p.absolute()) for p in find_videos(path)]
        default_root = str((path if path.is_dir() else path.parent).absolute())
    root = str(video_root) if video_root is not None else default_root
    return VideoList(root, tuple(_source(loc, root) for loc in locations))


def _source(location: str, root: str) -> VideoSource:
    if is_url(location):
        return VideoSource(location, _url_relative(location, root))
    if is_url(root):
        raise ValueError(f"{location} is a local file but the video root {root} is a URL")
    return VideoSource(location, relative_video(location, root), str(Path(root).absolute()))


def _url_relative(url: str, root: str) -> str:
    """`url` relative to a URL root; without one (a local or empty root), its bucket + path. Compared
    as the filesystem's paths, so `memory://a/b` and `memory:///a/b` agree."""
    path = _filesystem(url)[1]
    if is_url(root):
        base = _filesystem(root)[1].rstrip("/")
        if not path.startswith(base + "/"):
            raise ValueError(f"{url} is not inside the video root {root}")
        relative = path[len(base) + 1:]
    else:
        relative = path.lstrip("/")
    if not relative or any(part in ("", ".", "..") for part in relative.split("/")):
        raise ValueError(f"{url}: cannot make a record path of it (relative to {root or 'no root'})")
    return relative


def _list_glob(pattern: str) -> tuple[list[str], str]:
    matches = sorted(str(Path(p).absolute()) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not matches:
        raise FileNotFoundError(f"no file matches {pattern}")
    return matches, str(Path(_glob_prefix(pattern)).absolute())


def _glob_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: `data/clips/**/*.mp4` -> `data/clips`."""
    head = pattern[:min(pattern.index(c) for c in _WILDCARDS if c in pattern)]
    return head[:head.rfind("/") + 1].rstrip("/") or ("/" if pattern.startswith("/") else ".")


def _list_manifest(manifest: Path, video_root: str | os.PathLike | None) -> VideoList:
    locations = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if any(c in entry for c in _WILDCARDS) and not is_url(entry):
            raise ValueError(f"{manifest}:{number}: a manifest lists files, not globs: {entry}")
        locations.append(entry if is_url(entry) else str((manifest.parent / entry).absolute()))
    if not locations:
        raise ValueError(f"{manifest} lists no video (one path or URL per line)")
    root = str(video_root) if video_root is not None else str(manifest.parent.absolute())
    try:
        return VideoList(root, tuple(_source(loc, root) for loc in locations))
    except ValueError as err:
        raise ValueError(f"{manifest}: {err}; pass --video-root") from None


def _filesystem(url: str):
    """(fsspec filesystem, path) of a URL; one line when fsspec or the filesystem's package is missing."""
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"{url}: reading URLs needs fsspec (pip install fsspec) and its filesystem package") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise ValueError(f"{url}: {str(err).strip().splitlines()[0]}") from None


def _list_remote(url: str) -> tuple[list[str], str]:
    fs, path = _filesystem(url)
    if any(c in path for c in _WILDCARDS):
        found = sorted(fs.unstrip_protocol(p) for p in fs.glob(path) if fs.isfile(p))
        if not found:
            raise FileNotFoundError(f"no file matches {url}")
        return found, fs.unstrip_protocol(_glob_prefix(path))
    if fs.isdir(path):
        base = path.rstrip("/")
        found = sorted(fs.unstrip_protocol(p) for p in fs.find(path)
                       if Path(p).suffix.lower() in VIDEO_EXTENSIONS
                       and not any(part.startswith(".") for part in p[len(base):].split("/")))
        return found, fs.unstrip_protocol(base)
    if not fs.exists(path):
        raise FileNotFoundError(f"{url} does not exist")
    if Path(path).suffix.lower() in MANIFEST_EXTENSIONS:
        raise ValueError(f"{url}: a manifest must be a local file (its entries may be URLs)")
    return [url], fs.unstrip_protocol(path.rsplit("/", 1)[0])


@contextlib.contextmanager
def local_copy(source: VideoSource) -> Iterator[tuple[Path, str]]:
    """(a local file of the video, the video root to pass `synthesize`): the file itself for a local
    video; for a remote one, a copy fetched to `<temporary folder>/<relative>`, removed afterwards,
    so the records' path comes out as `source.relative` either way."""
    if not source.is_remote:
        yield Path(source.location), source.root
        return
    fs, path = _filesystem(source.location)
    with tempfile.TemporaryDirectory(prefix="llava-video-fetch-") as folder:
        target = Path(folder, *source.relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with fs.open(path, "rb") as remote, open(target, "wb") as local:
                shutil.copyfileobj(remote, local, 1 << 20)
        except FileNotFoundError:
            raise FileNotFoundError(f"{source.location} does not exist") from None
        yield target, folder
