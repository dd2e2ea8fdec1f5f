"""Synthesis over a video or a folder of videos into an output folder, resumable and safe to run in
several processes at once: each video under its lock, skipped once its manifest says "done", a
failure logged and the batch going on; progress bars per video and overall."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import output_folder as folder
from ..dataset import TASKS
from .events import CallStarted, DescriptionWritten, Done, Planned, QAParsed, Stopped
from .plan import SynthOptions
from .recipe import EngineLike, synthesize
from .result import relative_video, video_id_for
from .saving import save_result

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".flv", ".ts",
                              ".wmv", ".3gp", ".ogv"})


def find_videos(path: str | os.PathLike) -> list[Path]:
    """A video file itself, or every video file under a folder (recursive, by extension, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


@dataclass
class BatchSummary:
    videos: int = 0
    done: int = 0
    skipped: int = 0  # already done (resumed run) or being processed by another process
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # video -> error
    records: Counter = field(default_factory=Counter)  # new records per task
    files: Counter = field(default_factory=Counter)  # new records per split file
    rejects: Counter = field(default_factory=Counter)
    mc_skipped: int = 0
    calls: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    video_seconds: float = 0.0  # total duration of the videos processed in this run
    stopped: bool = False  # the stop event ended the run early

    def format(self) -> str:
        lines = [f"videos: {self.done} done, {self.skipped} skipped (already done), {self.failed} failed, "
                 f"of {self.videos}",
                 "new records: " + ", ".join(f"{t} {self.records.get(t, 0)}" for t in TASKS)]
        for name, count in sorted(self.files.items()):
            lines.append(f"  {count:6d}  {name}")
        lines.append("rejected QA: " + (", ".join(f"{k} {v}" for k, v in sorted(self.rejects.items())) or "none")
                     + f"; open-ended only (no usable options): {self.mc_skipped}")
        if self.calls:
            per_min = (f", {sum(self.calls.values()) / (self.video_seconds / 60):.1f} calls and "
                       f"{self.seconds / (self.video_seconds / 60):.1f} s per minute of video"
                       if self.video_seconds else "")
            lines.append("model calls: " + ", ".join(f"{k} {v}" for k, v in self.calls.items())
                         + f" in {self.seconds:.1f} s{per_min}")
        for video, error in self.failures.items():
            lines.append(f"failed: {video}: {error}")
        return "\n".join(lines)


class _BatchStopped(Exception):
    pass


class _EngineFailed(Exception):
    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def run_batch(path: str | os.PathLike, out_dir: str | os.PathLike, options: SynthOptions | None = None, *,
              engine: EngineLike | None = None, make_engine: Callable[[], EngineLike] | None = None,
              video_root: str | os.PathLike | None = None, progress: bool = True, fsync: bool = True,
              stop: threading.Event | None = None, export: bool = True,
              on_video: Callable[[Path, str, str | None], None] | None = None) -> BatchSummary:
    """Synthesize data for a video or a folder of videos into `out_dir`, resumably.

    Videos with a "done" manifest in `out_dir/videos/` are skipped; a video that fails is logged
    (`out_dir/errors.log`, a "failed" manifest) and the batch goes on; a failed or interrupted video is
    redone on the next run (its records already written are not duplicated). The engine is made only
    when there is work (`make_engine`). At the end the splits are exported as JSON arrays.
    `on_video(path, status, error)` is called per video with status "done", "skipped", "failed" or
    "stopped" (the `stop` event was set: the run ends after the current model call, that video unsaved).
    """
    from filelock import Timeout
    from tqdm import tqdm

    options = options or SynthOptions()
    out_dir = Path(out_dir)
    videos = find_videos(path)
    root = Path(video_root) if video_root is not None else (Path(path) if Path(path).is_dir() else Path(path).parent)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(videos=len(videos))
    started = time.perf_counter()
    overall = tqdm(videos, desc="videos", unit="video", disable=not progress, position=0)
    for video in overall:
        status, error, rel, vid = "failed", None, None, None
        try:
            rel = relative_video(video, root)
            vid = video_id_for(rel)
            if folder.is_done(out_dir, vid):
                summary.skipped += 1
                status = "skipped"
                continue
            lock = folder.video_lock(out_dir, vid)
            try:
                lock.acquire()
            except Timeout:
                summary.skipped += 1
                status = "skipped"
                continue
            try:
                if folder.is_done(out_dir, vid):  # finished by another process meanwhile
                    summary.skipped += 1
                    status = "skipped"
                    continue
                if engine is None:
                    if make_engine is None:
                        raise _EngineFailed(ValueError("run_batch needs an engine or make_engine"))
                    try:
                        engine = make_engine()
                    except Exception as err:  # no model, no batch: this is not the video's fault
                        raise _EngineFailed(err) from err
                bar = tqdm(total=1, desc=rel[-40:], unit="call", leave=False, disable=not progress, position=1)
                result = None
                try:
                    for event in synthesize(engine, video, options, video_root=root, stop=stop):
                        if isinstance(event, Planned):
                            bar.reset(total=event.total_steps)
                        elif isinstance(event, CallStarted):
                            bar.set_postfix_str(event.stage, refresh=False)
                        elif isinstance(event, (DescriptionWritten, QAParsed)):
                            bar.update(1)
                        elif isinstance(event, Stopped):
                            raise _BatchStopped
                        elif isinstance(event, Done):
                            result = event.result
                finally:
                    bar.close()
                written = save_result(out_dir, result, fsync=fsync)
                for name, ids in written.items():
                    summary.files[name] += len(ids)
                    summary.records[folder.task_of_filename(name)] += len(ids)
                summary.rejects.update(result.rejects)
                summary.mc_skipped += result.mc_skipped
                summary.calls.update(result.calls)
                summary.video_seconds += result.duration
                summary.done += 1
                status = "done"
            finally:
                lock.release()
        except _EngineFailed as err:
            overall.close()
            raise err.error from None
        except _BatchStopped:
            summary.stopped = True
            status = "stopped"
            break
        except Exception as err:  # one bad video must not stop the batch
            error = _one_line(err)
            summary.failed += 1
            summary.failures[str(video)] = error
            folder.log_failure(out_dir, video, error, vid, rel)
            log.debug("synth failed on %s", video, exc_info=True)
        finally:
            if on_video is not None:
                on_video(video, status, error)
            overall.set_postfix(done=summary.done, skipped=summary.skipped, failed=summary.failed, refresh=False)
    overall.close()
    summary.seconds = time.perf_counter() - started
    if export:
        folder.export_json(out_dir)
    return summary


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
