"""Records of LLaVA-Video-178K-style data: their schema, the split files, safe appends, stats and checks.

A record (the public dataset's schema; our provenance fields ride along, trainers ignore them):

    {"id": "clip-3f2a9c01d4_oe_camera_direction", "video": "sub/clip.mp4", "data_source": "local",
     "conversations": [{"from": "human", "value": "<image>\\nHow does the camera move?"},
                       {"from": "gpt", "value": "It pans slowly to the right."}],
     "task": "oe", "question_type": "Camera Direction", ...}

Files (flat in one output folder), named like LLaVA-Video-178K's
(`0_30_s_academic_v0_1_cap_processed.json`, `0_30_s_academic_oe_v0_1_qa_processed.json`, ...):

    {bucket}_{source}_cap_processed.jsonl     detailed captions
    {bucket}_{source}_oe_qa_processed.jsonl   open-ended QA
    {bucket}_{source}_mc_qa_processed.jsonl   multiple-choice QA

`bucket` is the video's length: 0_30_s, 30_60_s, 1_2_m, 2_3_m, over_3_m. The .jsonl files are what
is appended to; `export_json` writes each as a JSON array (`.json`, the public dataset's format).

Safe appends (`JsonlStore.append`): under a `filelock` lock per file, the records not already in
the file (by id) are serialised and written with `os.write` on an `O_APPEND` descriptor, whole lines
in one call (looping only if the kernel writes less), then fsync'd. A writer killed at any moment
leaves either nothing or whole lines, except in the (theoretical) case of a short write: a torn last
line, which every reader ignores and the next append (under the lock) truncates away. Rewrites
(`JsonlStore.replace`, `write_json_atomic`) go through a temporary file and `os.replace`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from filelock import FileLock

from .prompts import IMAGE_PLACEHOLDER

TASKS = ("cap", "oe", "mc")
_TASK_SUFFIX = {"cap": "cap_processed", "oe": "oe_qa_processed", "mc": "mc_qa_processed"}
LENGTH_BUCKETS = ("0_30_s", "30_60_s", "1_2_m", "2_3_m", "over_3_m")
_BUCKET_LABELS = {"0_30_s": "0-30s", "30_60_s": "30-60s", "1_2_m": "1-2min", "2_3_m": "2-3min", "over_3_m": "longer"}
MC_LETTERS = "ABCDE"
MC_INSTRUCTION = "Please respond with only the letter of the correct answer."
LOCK_TIMEOUT_S = 120.0


# --- names ----------------------------------------------------------------------------------------

def length_bucket(duration: float) -> str:
    """The public dataset's length buckets (plus one for longer videos)."""
    if duration < 30:
        return "0_30_s"
    if duration < 60:
        return "30_60_s"
    if duration < 120:
        return "1_2_m"
    if duration < 180:
        return "2_3_m"
    return "over_3_m"


def bucket_label(bucket: str) -> str:
    return _BUCKET_LABELS.get(bucket, bucket)


def safe_name(text: str) -> str:
    """Lowercase letters, digits and underscores: for data sources, type slugs and file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


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


# --- records --------------------------------------------------------------------------------------

def make_record(record_id: str, video: str, data_source: str, human: str, gpt: str,
                **provenance: Any) -> dict[str, Any]:
    """One single-turn record; `<image>\\n` is put in front of the human turn."""
    return {
        "id": record_id,
        "video": video,
        "data_source": data_source,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_PLACEHOLDER}\n{human}"},
            {"from": "gpt", "value": gpt},
        ],
        **provenance,
    }


def mc_human_turn(question: str, options: Sequence[str]) -> str:
    """`<question>\\nA. <option>\\nB. <option>...\\nPlease respond with only the letter of the correct answer.`"""
    lines = [question, *(f"{MC_LETTERS[i]}. {o}" for i, o in enumerate(options)), MC_INSTRUCTION]
    return "\n".join(lines)


def validate_record(record: Any, task: str | None = None) -> list[str]:
    """Problems with one record, as short sentences (empty = valid). `task` ("cap"/"oe"/"mc") adds the
    split's own rules (a multiple-choice answer is one of the offered letters)."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, not {type(record).__name__}"]
    errors = []
    for key in ("id", "video", "data_source"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"'{key}' must be a non-empty string")
    video = record.get("video")
    if isinstance(video, str) and (video.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", video)
                                   or ".." in Path(video).parts):
        errors.append(f"'video' must be relative to the video root, not {video!r}")
    conv = record.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        errors.append("'conversations' must be a list of at least 2 turns")
        return errors
    images = 0
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or set(turn) - {"from", "value"} or "from" not in turn or "value" not in turn:
            errors.append(f"turn {i} must be an object with exactly 'from' and 'value'")
            continue
        want = "human" if i % 2 == 0 else "gpt"
        if turn["from"] != want:
            errors.append(f"turn {i} must be from {want!r}, not {turn['from']!r}")
        if not isinstance(turn["value"], str) or not turn["value"].strip():
            errors.append(f"turn {i} has an empty value")
            continue
        images += turn["value"].count(IMAGE_PLACEHOLDER)
    if len(conv) % 2:
        errors.append("the conversation must end with a gpt turn")
    first = conv[0].get("value") if isinstance(conv[0], dict) else None
    if isinstance(first, str) and not first.startswith(IMAGE_PLACEHOLDER + "\n"):
        errors.append("the first human turn must start with '<image>\\n'")
    if images != 1:
        errors.append(f"'<image>' must appear exactly once (at the start), found {images}")
    task = task or record.get("task")
    if task == "mc" and not errors:
        answer = conv[1]["value"].strip()
        options = re.findall(r"^([A-E])\. ", conv[0]["value"], re.M)
        if not re.fullmatch(r"[A-E]\.?", answer):
            errors.append(f"a multiple-choice answer must be a letter like 'B.', not {answer[:40]!r}")
        elif not 3 <= len(options) <= 5:
            errors.append(f"a multiple-choice question must offer 3 to 5 lettered options, found {len(options)}")
        elif answer[0] not in options:
            errors.append(f"the answer {answer!r} is not one of the options {', '.join(options)}")
    return errors


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
    """The lock file guarding `path`: `<folder>/.locks/<name>.lock`, out of the way of the data."""
    path = Path(path)
    folder = path.parent / ".locks"
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
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
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


# --- a dataset folder -----------------------------------------------------------------------------

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
    manifests (the level-1/2/3 descriptions). Default name: `<folder>/<folder name>.zip`."""
    folder = Path(folder)
    arrays = export_json(folder)
    zip_path = Path(zip_path) if zip_path else folder / f"{folder.resolve().name}.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in arrays:
            zf.write(path, path.relative_to(folder).as_posix())
        if include_manifests:
            for path in sorted((folder / "videos").glob("*.json")):
                zf.write(path, path.relative_to(folder).as_posix())
    os.replace(tmp, zip_path)
    return zip_path


def iter_records(folder: str | os.PathLike, *, include_json: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in split_files(folder, include_json=include_json):
        for record in read_records(path).records:
            yield path, record


# --- stats and checks -----------------------------------------------------------------------------

@dataclass
class DatasetStats:
    records: int = 0
    files: dict[str, int] = field(default_factory=dict)
    by_task: Counter = field(default_factory=Counter)
    by_question_type: Counter = field(default_factory=Counter)
    by_length: Counter = field(default_factory=Counter)
    videos: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "videos": self.videos, "files": self.files,
                "by_task": dict(self.by_task), "by_question_type": dict(self.by_question_type),
                "by_length": {bucket_label(b): self.by_length.get(b, 0) for b in LENGTH_BUCKETS
                              if self.by_length.get(b) or b != "over_3_m"} | (
                    {"unknown": self.by_length["unknown"]} if self.by_length.get("unknown") else {})}

    def format(self) -> str:
        lines = [f"{self.records} records, {self.videos} videos, {len(self.files)} files"]
        lines.append("per split:  " + ", ".join(f"{t} {self.by_task.get(t, 0)}" for t in TASKS))
        lines.append("per length: " + ", ".join(f"{k} {v}" for k, v in self.to_dict()["by_length"].items()))
        lines.append("per question type:")
        for name, count in sorted(self.by_question_type.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {count:6d}  {name}")
        lines.append("files:")
        for name, count in self.files.items():
            lines.append(f"  {count:6d}  {name}")
        return "\n".join(lines)


def dataset_stats(folder: str | os.PathLike) -> DatasetStats:
    """Counts per split (cap/oe/mc), question type and video length over a folder's split files
    (.jsonl, or .json arrays where there is no .jsonl: the public dataset works too)."""
    stats = DatasetStats()
    videos: set[tuple[str, str]] = set()
    for path in split_files(folder, include_json=True):
        records = read_records(path).records
        task = task_of_filename(path.name)
        stats.files[str(path.relative_to(folder) if Path(folder).is_dir() else path.name)] = len(records)
        for r in records:
            stats.records += 1
            stats.by_task[r.get("task") or task or "unknown"] += 1
            stats.by_question_type[r.get("question_type") or ("Caption" if task == "cap" else "unknown")] += 1
            duration = r.get("video_duration")
            bucket = (length_bucket(float(duration)) if isinstance(duration, (int, float))
                      else bucket_of_filename(path.name) or "unknown")
            stats.by_length[bucket] += 1
            videos.add((str(r.get("data_source")), str(r.get("video"))))
    stats.videos = len(videos)
    return stats


def check_dataset(folder: str | os.PathLike) -> tuple[int, list[LineError]]:
    """Validate every record of every split file (.jsonl and .json): (records checked, errors).
    Also flags torn last lines and ids used twice."""
    errors: list[LineError] = []
    checked = 0
    seen: dict[str, str] = {}
    folder = Path(folder)
    files = split_files(folder, include_json=True)
    if not files:
        errors.append(LineError(str(folder), 0, "no split files (*_cap_processed / *_qa_processed .jsonl/.json) found"))
    for path in files:
        result = read_records(path)
        errors += result.errors
        if result.torn_tail:
            errors.append(LineError(str(path), 0, "the last line is incomplete (an interrupted write); "
                                                   "the next append removes it"))
        task = task_of_filename(path.name)
        for line, record in zip(result.lines, result.records):
            checked += 1
            for message in validate_record(record, record.get("task") or task):
                errors.append(LineError(str(path), line, message))
            rid = record.get("id")
            if isinstance(rid, str):
                where = f"{path.name}:{line}"
                if rid in seen:
                    errors.append(LineError(str(path), line, f"id {rid!r} already used at {seen[rid]}"))
                else:
                    seen[rid] = where
    return checked, errors
