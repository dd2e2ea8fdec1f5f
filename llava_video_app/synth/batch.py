"""Synthesis over videos in this process (`run_batch`), resumable and safe to run in several processes
at once: one video after another through `one_video.process_video` (the step the Ray runner's actors
repeat too); a failure logged and the batch going on; progress bars per video and overall. Also the
run's summary (`BatchSummary`), which both runners fill from each video's outcome."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import output_folder as folder
from ..dataset import TASKS
from .one_video import EngineUnavailable, VideoOutcome, VideoStopped, new_run_id, process_video
from .plan import SynthOptions
from .recipe import EngineLike
from .sources import VIDEO_EXTENSIONS, find_videos, list_videos  # noqa: F401  (re-exported: callers import them here)


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

    def add(self, outcome: VideoOutcome) -> None:
        """Count one video's outcome."""
        if outcome.status == "done":
            self.done += 1
            for name, count in outcome.written.items():
                self.files[name] += count
                self.records[folder.task_of_filename(name)] += count
            self.rejects.update(outcome.rejects)
            self.mc_skipped += outcome.mc_skipped
            self.calls.update(outcome.calls)
            self.video_seconds += outcome.duration
        elif outcome.status == "skipped":
            self.skipped += 1
        elif outcome.status == "failed":
            self.failed += 1
            self.failures[outcome.video] = outcome.error or "failed"
        elif outcome.status == "stopped":
            self.stopped = True
        else:
            raise ValueError(f"unknown video status {outcome.status!r}")

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


def run_batch(path: str | os.PathLike, out_dir: str | os.PathLike, options: SynthOptions | None = None, *,
              engine: EngineLike | None = None, make_engine: Callable[[], EngineLike] | None = None,
              video_root: str | os.PathLike | None = None, progress: bool = True, fsync: bool = True,
              stop: threading.Event | None = None, export: bool = True,
              on_video: Callable[[Path | str, str, str | None], None] | None = None) -> BatchSummary:
    """Synthesize data for the videos of `path` (a video, folder, glob, manifest or URL: sources.py)
    into `out_dir`, resumably, one after another in this process.

    Videos with a "done" manifest in `out_dir/videos/` are skipped; a video that fails is logged
    (`out_dir/errors.log`, a "failed" manifest) and the batch goes on; a failed or interrupted video is
    redone on the next run (its records already written are not duplicated). The engine is made only
    when there is work (`make_engine`). At the end the splits are exported as JSON arrays.
    `on_video(video, status, error)` is called per video (a Path, or the URL of a remote one) with
    status "done", "skipped", "failed" or "stopped" (the `stop` event was set: the run ends after the
    current model call, that video unsaved).
    """
    from tqdm import tqdm

    options = options or SynthOptions()
    out_dir = Path(out_dir)
    listing = list_videos(path, video_root)
    with folder.writing_to(out_dir):  # a read-only or full disk: one line naming the folder
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(videos=len(listing))
    started = time.perf_counter()
    engines: list[EngineLike] = [] if engine is None else [engine]
    run_id = new_run_id()  # a video's deaths in earlier runs are not counted against it

    def engine_for() -> EngineLike:
        if not engines:
            if make_engine is None:
                raise ValueError("run_batch needs an engine or make_engine")
            engines.append(make_engine())
        return engines[0]

    overall = tqdm(listing.sources, desc="videos", unit="video", disable=not progress, position=0)
    try:
        for source in overall:
            try:
                outcome = process_video(source, out_dir, options, engine_for, stop=stop, progress=progress,
                                        fsync=fsync, run_id=run_id)
            except VideoStopped:
                outcome = VideoOutcome(source.location, source.video_id, "stopped")
            except EngineUnavailable as err:
                raise err.error from None
            summary.add(outcome)
            if on_video is not None:
                on_video(source.location if source.is_remote else Path(source.location), outcome.status,
                         outcome.error)
            overall.set_postfix(done=summary.done, skipped=summary.skipped, failed=summary.failed, refresh=False)
            if outcome.status == "stopped":
                break
    finally:
        overall.close()
    summary.seconds = time.perf_counter() - started
    if export:
        with folder.writing_to(out_dir):
            folder.export_json(out_dir)
    return summary
