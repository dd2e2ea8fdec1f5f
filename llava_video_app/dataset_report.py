"""What `llava-video dataset stats` and `dataset check` report about a folder of split files (ours, or
the public dataset's .json arrays): counts per split, question type and video length, and every
record's schema problems, torn last lines and reused ids."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import LENGTH_BUCKETS, TASKS, bucket_label, length_bucket, validate_record
from .jsonl import LineError, read_records
from .output_folder import bucket_of_filename, split_files, task_of_filename


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
