"""A video's result in an output folder (output_folder.py says where): its records appended to the
split files with its manifest as the done marker (batch runs), or upserted after edits in the UI;
read back from the manifest; the folder zipped for download."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import output_folder as folder
from ..dataset import TASKS
from ..jsonl import JsonlStore
from ..prompts import QUESTION_TYPES
from .qa import QAPair
from .result import SynthResult, record_id


def save_result(out_dir: str | os.PathLike, result: SynthResult, pairs: Sequence[QAPair] | None = None, *,
                replace: bool = False, fsync: bool = True) -> dict[str, list[str]]:
    """Write a video's records to the split files of `out_dir` and its manifest (the done marker).

    replace=False (batch runs): append, skipping ids already present (re-running never duplicates).
    replace=True (the UI saving an edited list): this video's records are upserted with the given
    `pairs` (edited text wins over what is in the files), and its QA records for pairs that were
    unticked (keep=False) or dropped from the list are removed. Returns the ids written per file.
    """
    out_dir = Path(out_dir)
    if pairs is not None:
        result = dataclasses.replace(result, pairs=list(pairs))
    by_task = result.records()
    written: dict[str, list[str]] = {}
    if not replace:
        written = folder.append_records(out_dir, [r for task in TASKS for r in by_task[task]], fsync=fsync)
    else:
        prov = result.provenance()
        for task in TASKS:
            name = folder.split_filename(task, prov["length_bucket"], result.data_source)
            keep_ids = {r["id"] for r in by_task[task]}
            all_ids = ({record_id(result.video_id, "cap")} if task == "cap" else
                       {record_id(result.video_id, task, t.name) for t in QUESTION_TYPES})
            store = JsonlStore(out_dir / name, fsync=fsync)
            if not by_task[task] and not (store.path.exists() and all_ids & store.ids()):
                continue
            store.replace(by_task[task], remove_ids=all_ids - keep_ids)
            written[name] = sorted(keep_ids)
    manifest = result.to_manifest()
    manifest.update(status="done", records={k: v for k, v in written.items()},
                    record_ids={task: [r["id"] for r in by_task[task]] for task in TASKS})
    folder.write_manifest(out_dir, result.video_id, manifest)
    return written


def save_edited_pairs(out_dir: str | os.PathLike, result: SynthResult, pairs: Sequence[QAPair | Mapping[str, Any]],
                      *, fsync: bool = True) -> dict[str, list[str]]:
    """The UI's "save": `pairs` (QAPair or dicts with question_type/question/answer/correct_option/
    wrong_options/keep) replace this video's QA records; unticked ones are removed."""
    edited = [p if isinstance(p, QAPair) else QAPair.from_dict(p) for p in pairs]
    return save_result(out_dir, result, edited, replace=True, fsync=fsync)


def load_result(out_dir: str | os.PathLike, video_id: str) -> SynthResult:
    """A saved video's result, from its manifest (to show or edit it again)."""
    return SynthResult.from_manifest(folder.read_manifest(out_dir, video_id))


def export_run(out_dir: str | os.PathLike, zip_path: str | os.PathLike | None = None) -> Path:
    """The UI's download: a zip with every split as a JSON array and the per-video manifests."""
    return folder.export_zip(out_dir, zip_path)
