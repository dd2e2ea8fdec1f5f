"""The output folder of a synthesis run, and who writes what where in it:

    out/
      {bucket}_{source}_cap_processed.jsonl     detailed captions        (+ .json: the exported array)
      {bucket}_{source}_oe_qa_processed.jsonl   open-ended QA
      {bucket}_{source}_mc_qa_processed.jsonl   multiple-choice QA
      videos/<video id>.json                    a video's manifest: "done" (its records are all in) or
                                                "failed"; the done marker that makes runs resumable
      errors.log                                one line per failed video (time, path, error)
      .locks/                                   a lock per split file and per video being processed
      sessions/<id>/                            a shared app's saved data, one folder per browser
                                                session, laid out like this one (web/synth_tab.py)
    out.zip                                     `export_zip`: the splits as JSON arrays + the manifests,
                                                beside the folder, never inside it

Split files are named like LLaVA-Video-178K's (`0_30_s_academic_v0_1_cap_processed.json`,
`0_30_s_academic_oe_v0_1_qa_processed.json`, ...), by task, length bucket and data source; the
.jsonl files are what is appended to (jsonl.JsonlStore), `export_json` writes each as a JSON array.
"""

from __future__ import annotations

import errno
import json
import os
import re
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from filelock import FileLock

from .dataset import LENGTH_BUCKETS, TASKS, length_bucket, safe_name
from .jsonl import FILE_MODE, JsonlStore, data_file_mode, lock_path, read_jsonl, read_records, write_json_atomic

_TASK_SUFFIX = {"cap": "cap_processed", "oe": "oe_qa_processed", "mc": "mc_qa_processed"}
VIDEOS_DIR = "videos"
ERRORS_LOG = "errors.log"
SESSIONS_DIR = "sessions"


# --- a folder that cannot be written ----------------------------------------------------------------

# What a write that failed for the disk's sake (not the data's) says, by errno.
_DISK_CAUSES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


class FolderNotWritable(ValueError):
    """The output folder's disk refused a write (full, read-only, not ours): one line naming the folder and
    the cause. What was written before stays valid (appends are whole lines, rewrites atomic); the next run
    resumes."""


def disk_refused(err: OSError) -> bool:
    """Whether the disk, not the data, made this write fail (full, read-only, no permission)."""
    return err.errno in _DISK_CAUSES


@contextmanager
def writing_to(folder: str | os.PathLike, shown: str | None = None) -> Iterator[None]:
    """Turn a disk's refusal inside the block into FolderNotWritable naming `shown` (default: the folder)."""
    try:
        yield
    except OSError as err:
        cause = _DISK_CAUSES.get(err.errno)
        if cause is None:
            raise
        raise FolderNotWritable(f"cannot write to {shown or folder}: {cause} ({err.strerror}); make room or "
                                "choose another folder, then run again: what was saved is kept") from None


# --- split files ------------------------------------------------------------------------------------

def split_filename(task: str, bucket: str, data_source: str, ext: str = ".jsonl") -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    return f"{bucket}_{safe_name(data_source)}_{_TASK_SUFFIX[task]}{ext}"


def task_of_filename(name: str) -> str | None:
    stem = name.rsplit(".", 1)[0]
    for task, suffix in _TASK_SUFFIX.items():
        if stem.endswith("_" + suffix):
            return task
    if re.search(r"_oe(_v\d+_\d+)?_qa_processed$", stem):  # the public dataset's own names
        return "oe"
    if re.search(r"_mc(_v\d+_\d+)?_qa_processed$", stem):
        return "mc"
    if stem.endswith("_cap_processed"):
        return "cap"
    return None


def bucket_of_filename(name: str) -> str | None:
    return next((b for b in LENGTH_BUCKETS if name.startswith(b + "_")), None)


def split_files(folder: str | os.PathLike, *, include_json: bool = False) -> list[Path]:
    """The split files of a folder (recursively): .jsonl, and also .json when `include_json` (a .json
    next to a .jsonl of the same name is its export and is skipped)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    files = sorted(p for p in folder.rglob("*.jsonl") if task_of_filename(p.name) and not p.name.startswith("."))
    if include_json:
        stems = {p.with_suffix("") for p in files}
        files += sorted(p for p in folder.rglob("*.json")
                        if task_of_filename(p.name) and p.with_suffix("") not in stems and not p.name.startswith("."))
    return files


def append_records(folder: str | os.PathLike, records: Iterable[Mapping[str, Any]], *,
                   fsync: bool = True) -> dict[str, list[str]]:
    """Append records to their split files (by `task` and `split_file`/length); returns ids written
    per file name. Records must carry `task`, `video_duration` (or `length_bucket`) and `data_source`."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(record_filename(r), []).append(r)
    return {name: JsonlStore(Path(folder) / name, fsync=fsync).append(recs) for name, recs in groups.items()}


def record_filename(record: Mapping[str, Any]) -> str:
    bucket = record.get("length_bucket") or length_bucket(float(record.get("video_duration", 0.0)))
    return split_filename(record["task"], bucket, record["data_source"])


def export_json(folder: str | os.PathLike) -> list[Path]:
    """Write every .jsonl split file of a folder as a JSON array next to it (`.json`), atomically."""
    written = []
    for path in split_files(folder):
        records = read_jsonl(path).records
        written.append(write_json_atomic(path.with_suffix(".json"), records))
    return written


def export_zip(folder: str | os.PathLike, zip_path: str | os.PathLike | None = None, *,
               include_manifests: bool = True) -> Path:
    """A zip of the folder's split files as JSON arrays (exported first), plus the per-video
    manifests (the level-1/2/3 descriptions). Default: `<folder>.zip` beside the folder. Never
    inside it (ValueError): the data folder holds data, and a zip in it would be zipped or served
    along with the data next time."""
    folder = Path(folder)
    zip_path = Path(zip_path) if zip_path else folder.resolve().with_suffix(".zip")
    if zip_path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"write the zip outside the folder it zips, not to {zip_path}")
    arrays = export_json(folder)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in arrays:
            zf.write(path, path.relative_to(folder).as_posix())
        if include_manifests:
            for path in sorted((folder / VIDEOS_DIR).glob("*.json")):
                zf.write(path, path.relative_to(folder).as_posix())
    os.chmod(tmp, data_file_mode())
    os.replace(tmp, zip_path)
    return zip_path


def iter_records(folder: str | os.PathLike, *, include_json: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in split_files(folder, include_json=include_json):
        for record in read_records(path).records:
            yield path, record


# --- per-video manifests, the error log, the video lock ----------------------------------------------

def manifest_path(out_dir: str | os.PathLike, video_id: str) -> Path:
    return Path(out_dir) / VIDEOS_DIR / f"{video_id}.json"


def read_manifest(out_dir: str | os.PathLike, video_id: str) -> dict[str, Any]:
    """A video's manifest (FileNotFoundError if there is none)."""
    return json.loads(manifest_path(out_dir, video_id).read_text(encoding="utf-8"))


def write_manifest(out_dir: str | os.PathLike, video_id: str, manifest: Mapping[str, Any]) -> Path:
    return write_json_atomic(manifest_path(out_dir, video_id), manifest, indent=1)


def is_done(out_dir: str | os.PathLike, video_id: str) -> bool:
    """Has this video's run finished (all its records written)?"""
    try:
        return read_manifest(out_dir, video_id).get("status") == "done"
    except (FileNotFoundError, ValueError):
        return False


def video_lock(out_dir: str | os.PathLike, video_id: str) -> FileLock:
    """Held while a process works on a video, so that two batch runs never do the same one; timeout=0:
    the other process skips it at once."""
    return FileLock(str(lock_path(manifest_path(out_dir, video_id))), timeout=0)


def log_failure(out_dir: str | os.PathLike, video: str | os.PathLike, error: str, video_id: str | None,
                relative_video: str | None) -> None:
    """A line in errors.log (appended in one write, several processes may log) and, when the video got
    an id, a "failed" manifest (the next run retries it)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    line = f"{stamp}\t{video}\t{error}\n".encode("utf-8")
    fd = os.open(Path(out_dir) / ERRORS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)  # less the umask
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    if video_id is not None:
        write_manifest(out_dir, video_id, {"status": "failed", "video": relative_video, "video_path": str(video),
                                           "error": error, "time": stamp})
