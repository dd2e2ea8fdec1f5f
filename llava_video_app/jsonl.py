"""JSON Lines files of records that several processes write at once: reading them (torn last lines
tolerated, bad lines reported with their numbers), appending safely (`JsonlStore`), atomic rewrites.

Safe appends (`JsonlStore.append`): under a `filelock` lock per file, the records not already in
the file (by id) are serialised and written with `os.write` on an `O_APPEND` descriptor, whole lines
in one call (looping only if the kernel writes less), then fsync'd. A writer killed at any moment
leaves either nothing or whole lines, except in the (theoretical) case of a short write: a torn last
line, which every reader ignores and the next append (under the lock) truncates away. Rewrites
(`JsonlStore.replace`, `write_json_atomic`) go through a temporary file and `os.replace`.

Every file written here, appended to or replaced, gets the same mode: FILE_MODE less the umask
(`data_file_mode`), 0644 under the usual umask, like any file a user's tools create; a temporary
file's private 0600 is not carried over to the file it replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from filelock import FileLock

LOCK_TIMEOUT_S = 120.0
LOCKS_DIR = ".locks"  # beside the files they guard, out of the way of the data
# Data files are for other tools and, often, other users (a training job): readable by all, unless the
# umask says otherwise. Visitors of a shared app are kept apart by folders (web/synth_tab.py), not by
# modes: the server writes every visitor's files as one user.
FILE_MODE = 0o644


def data_file_mode() -> int:
    """FILE_MODE less this process's umask (read from /proc: os.umask can only be read by setting it,
    which would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return FILE_MODE & ~umask


# --- reading --------------------------------------------------------------------------------------

@dataclass
class LineError:
    path: str
    line: int  # 1-based; 0 = the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


@dataclass
class ReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line number of each record
    errors: list[LineError] = field(default_factory=list)  # lines that are not JSON objects
    torn_tail: bool = False  # the last line has no newline and does not parse: an interrupted write


def _parse_lines(data: bytes, path: str, first_line: int = 1) -> tuple[ReadResult, int]:
    """Parse complete lines; returns the result and the number of bytes consumed (up to the last
    newline, or everything if the unterminated last line parses)."""
    result = ReadResult()
    end = data.rfind(b"\n") + 1
    body, tail = data[:end], data[end:]
    number = first_line
    for raw in body.split(b"\n")[:-1]:
        _parse_one(raw, number, path, result)
        number += 1
    consumed = end
    if tail.strip():
        try:
            value = json.loads(tail)
        except ValueError:
            result.torn_tail = True
        else:
            if isinstance(value, dict):
                result.records.append(value)
                result.lines.append(number)
                consumed = len(data)
            else:
                result.torn_tail = True
    return result, consumed


def _parse_one(raw: bytes, number: int, path: str, result: ReadResult) -> None:
    if not raw.strip():
        return
    try:
        value = json.loads(raw)
    except ValueError as err:
        result.errors.append(LineError(path, number, f"not valid JSON ({err.msg} at column {err.colno})"))
        return
    if not isinstance(value, dict):
        result.errors.append(LineError(path, number, f"a record must be a JSON object, not {type(value).__name__}"))
        return
    result.records.append(value)
    result.lines.append(number)


def read_jsonl(path: str | os.PathLike) -> ReadResult:
    """Every record of a JSON Lines file; a torn last line (interrupted write) is skipped and flagged,
    any other bad line is reported in `errors`. A missing file reads as empty."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReadResult()
    return _parse_lines(data, str(path))[0]


def read_records(path: str | os.PathLike) -> ReadResult:
    """Records of a .jsonl file or a .json array file (the exported / public format)."""
    path = Path(path)
    if path.suffix != ".json":
        return read_jsonl(path)
    result = ReadResult()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        result.errors.append(LineError(str(path), 0, f"not valid JSON: {err}"))
        return result
    if not isinstance(value, list):
        result.errors.append(LineError(str(path), 0, "a .json split file must hold a JSON array of records"))
        return result
    for i, item in enumerate(value, 1):
        if isinstance(item, dict):
            result.records.append(item)
            result.lines.append(i)
        else:
            result.errors.append(LineError(str(path), i, f"record {i} is not a JSON object"))
    return result


# --- writing --------------------------------------------------------------------------------------

def lock_path(path: str | os.PathLike) -> Path:
    """The lock file guarding `path`: `<folder>/.locks/<name>.lock`. Every writer of a file takes this
    lock, so every process must agree on where it is."""
    path = Path(path)
    folder = path.parent / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{path.name}.lock"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_json_atomic(path: str | os.PathLike, value: Any, *, indent: int | None = None) -> Path:
    """Write JSON to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, data_file_mode())  # mkstemp's 0600 would otherwise become the file's
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=indent)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


class JsonlStore:
    """An append-only JSON Lines file of records with unique ids, safe for several writer processes.

    The ids already in the file are cached with the byte offset read so far: each append reads only
    what other writers added since (all under the file's lock), so appends stay cheap on big files.
    """

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True, lock_timeout: float = LOCK_TIMEOUT_S):
        self.path = Path(path)
        self.lock = FileLock(str(lock_path(self.path)), timeout=lock_timeout)
        self.fsync = fsync
        self._ids: set[str] = set()
        self._offset = 0
        self._identity: tuple[int, int] | None = None  # (device, inode) the cache belongs to

    def _refresh(self) -> None:
        """Bring the id cache up to date with the file; truncate a torn last line. Lock held."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._ids, self._offset, self._identity = set(), 0, None
            return
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self._offset:
            self._ids, self._offset, self._identity = set(), 0, (st.st_dev, st.st_ino)
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        first_line = 1  # line numbers are only used for messages; not tracked incrementally
        result, consumed = _parse_lines(data, str(self.path), first_line)
        self._ids.update(r["id"] for r in result.records if isinstance(r.get("id"), str))
        self._offset += consumed
        if result.torn_tail:  # an interrupted write: drop the partial line before appending after it
            os.truncate(self.path, self._offset)

    def ids(self) -> set[str]:
        with self.lock:
            self._refresh()
            return set(self._ids)

    def append(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Append the records whose id is not in the file yet; returns the ids written. Once this
        returns, the lines are in the file (and fsync'd unless fsync=False)."""
        records = list(records)
        for r in records:
            if not isinstance(r.get("id"), str) or not r["id"]:
                raise ValueError("every record needs a non-empty string 'id'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self._refresh()
            new, seen = [], set(self._ids)
            for r in records:
                if r["id"] not in seen:
                    seen.add(r["id"])
                    new.append(r)
            if not new:
                return []
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new).encode("utf-8")
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)  # less the umask
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a complete last record without its newline
                    data = b"\n" + data
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if self._identity is None:
                self._identity = (st.st_dev, st.st_ino)
            self._offset += len(data)
            self._ids.update(r["id"] for r in new)
            return [r["id"] for r in new]

    def replace(self, records: Iterable[Mapping[str, Any]], remove_ids: Iterable[str] = ()) -> list[str]:
        """Upsert: records whose id is present replace the old line in place, new ones are added at the
        end, and `remove_ids` are dropped. The file is rewritten atomically (temporary file + rename)."""
        records = list(records)
        drop = set(remove_ids)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            existing = read_jsonl(self.path).records
            by_id = {r["id"]: dict(r) for r in records}
            out, done = [], set()
            for r in existing:
                rid = r.get("id")
                if rid in drop and rid not in by_id:
                    continue
                if rid in by_id:
                    if rid in done:
                        continue
                    r = by_id[rid]
                    done.add(rid)
                out.append(r)
            out += [r for rid, r in by_id.items() if rid not in done]
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                try:
                    os.fchmod(fd, data_file_mode())  # as an append would have made it, not mkstemp's 0600
                    _write_all(fd, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out).encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._identity = None  # re-read on next use
            self._refresh()
            return [r["id"] for r in out]

