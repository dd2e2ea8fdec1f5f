"""Synthesis on Ray (`run_ray`): the same per-video step as the in-process runner, spread over actor
workers that each hold one engine, so the output folder is the one `run_batch` writes.

    listing (driver: sources.py)        a folder, glob, manifest or URL -> one row per video
      -> probe (CPU tasks)              done already? (its manifest); the plan from the file's header
      -> synthesize (actor workers)     one_video.process_video with the worker's engine: the lock,
                                        the "running" mark, the recipe, the records, the manifest
      -> outcomes (driver)              the progress bar and the summary (batch.BatchSummary)

The workers, one engine each, and the cluster are ray_pool.py's (shared with eval/ray_run.py and
batch_ask_ray.py): one model per GPU, or CPU workers; each video is its own block. A worker
that dies mid-video is restarted by Ray and the video retried (one_video.py counts the attempts);
records already appended are not appended twice (stable ids). The output folder must be one
filesystem every node sees (locks and appends are POSIX file operations), and so must local videos.

Ray is imported only when a run starts (ray_pool.import_ray): the base install does not need it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from .. import output_folder as folder
from ..config import AppConfig
from ..ray_pool import (EngineFactory, Pool, WorkerPlan, default_engine, error_row, import_ray, joined, on_workers,
                        one_job_per_block, quiet_data, raised_error)
from .batch import BatchSummary
from .one_video import EngineUnavailable, VideoOutcome, new_run_id, process_video
from .plan import SynthOptions, plan_windows
from .recipe import EngineLike
from .sources import VideoSource, list_videos


# --- the worker (the pool: ray_pool.py) --------------------------------------------------------------

class VideoWorker:
    """A Ray Data actor: one engine, made on its first video that needs the model (a resumed run of
    finished videos loads none); each call runs one video (a row) through process_video and returns
    its outcome as a row."""

    def __init__(self, out_dir: str, options: SynthOptions, config: AppConfig, engine_factory: EngineFactory,
                 fsync: bool, run_id: str):
        self.out_dir, self.options, self.config, self.fsync = out_dir, options, config, fsync
        self.run_id = run_id  # the driver's: a worker that replaces a dead one is in the same run
        self.engine_factory = engine_factory
        self.engine: EngineLike | None = None

    def engine_for(self) -> EngineLike:
        if self.engine is None:
            self.engine = self.engine_factory(self.config)
        return self.engine

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        source = VideoSource.from_row(row)
        if row["done"]:  # found done by the probe: no model time spent on it
            outcome = VideoOutcome(source.location, source.video_id, "skipped")
        else:
            try:
                outcome = process_video(source, self.out_dir, self.options, self.engine_for, fsync=self.fsync,
                                        run_id=self.run_id)
            except EngineUnavailable as err:
                # Returned, not raised: Ray would hand the driver a traceback without the cause's type.
                return {"outcome": "", "planned_calls": 0, "engine_error": error_row(err.error)}
            except folder.FolderNotWritable as err:  # the disk, not the video: the driver stops the run
                error = json.dumps({"type": type(err).__name__, "message": str(err)})  # the line as it is
                return {"outcome": "", "planned_calls": 0, "engine_error": error}
        return {**outcome.to_row(), "planned_calls": row["planned_calls"], "engine_error": ""}


def probe_video(row: dict[str, Any], *, out_dir: str, options: SynthOptions) -> dict[str, Any]:
    """A CPU task: is the video done already, and how many model calls will it take (from a local
    file's header; a remote one is only read by its worker). A header that cannot be read plans 0
    calls here: the worker then fails on it and logs it, exactly as the in-process runner does."""
    from ..video import plan_clip

    source = VideoSource.from_row(row)
    done = folder.is_done(out_dir, source.video_id)
    planned = 0
    if not done and not source.is_remote:
        try:
            clip = plan_clip(source.location, num_frames=None, sample_fps=options.sample_fps,
                             max_frames=options.max_frames)
            planned = plan_windows(clip.timestamps, clip.duration, options).total_steps
        except Exception:  # not swallowed: the worker meets the same error and logs it for this video
            planned = 0
    return {**row, "done": done, "planned_calls": planned}


# --- the run ---------------------------------------------------------------------------------------

def run_ray(path: str | os.PathLike, out_dir: str | os.PathLike, options: SynthOptions | None = None, *,
            config: AppConfig | None = None, engine_factory: EngineFactory | None = None,
            address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
            video_root: str | os.PathLike | None = None, progress: bool = True, fsync: bool = True,
            export: bool = True, echo: Callable[[str], None] | None = None,
            on_video: Callable[[str, str, str | None], None] | None = None) -> BatchSummary:
    """Synthesize data for the videos of `path` into `out_dir` on Ray (see the module's docstring):
    the same folder as `batch.run_batch` makes, resumable the same way. `engine_factory(config)` makes
    each worker's engine (default: the project's Engine); it must be picklable (a module-level
    function). `echo` receives one-line notes (the cluster, the workers, failures); `on_video(video,
    status, error)` is called as each video's outcome reaches the driver (in completion order)."""
    from tqdm import tqdm

    import_ray()  # a missing extra: its one line before any work
    options = options or SynthOptions()
    config = config or AppConfig.from_env()
    factory = engine_factory or default_engine
    out_dir = Path(out_dir).absolute()  # workers do not share the driver's working folder
    listing = list_videos(path, video_root)
    with folder.writing_to(out_dir):  # a read-only or full disk: one line naming the folder
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    say = echo or (lambda message: None)
    summary = BatchSummary(videos=len(listing))
    if not listing:
        return summary  # nothing to start Ray for
    with joined(config, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                jobs=f"{len(listing)} videos", echo=say) as pool:
        started = time.perf_counter()  # from here on, as run_batch: the engines' loading included
        outcomes = _pipeline(pool, listing.sources, str(out_dir), options, factory, fsync, progress)
        planned = 0
        bar = tqdm(total=len(listing), desc="videos", unit="video", disable=not progress)
        try:
            for row in outcomes.iter_rows():
                if row["engine_error"]:  # no model, no run: the loader's own error, as run_batch raises it
                    raise raised_error(row["engine_error"])
                outcome = VideoOutcome.from_row(row)
                summary.add(outcome)
                planned += int(row["planned_calls"])
                bar.update(1)
                bar.set_postfix(done=summary.done, skipped=summary.skipped, failed=summary.failed,
                                calls=f"{sum(summary.calls.values())}/{planned}", refresh=False)
                if outcome.status == "failed":
                    (bar.write if progress else say)(f"failed: {outcome.video}: {outcome.error}")
                if on_video is not None:
                    on_video(outcome.video, outcome.status, outcome.error)
        finally:
            bar.close()
        summary.seconds = time.perf_counter() - started
    if export:
        with folder.writing_to(out_dir):
            folder.export_json(out_dir)
    return summary


def _probe_tasks(plan: WorkerPlan) -> int:
    """Probe tasks at once: a header read takes milliseconds and a worker's video tens of seconds, so
    one probe per 8 workers keeps ahead of them without crowding the workers' CPUs with processes."""
    return max(1, plan.workers // 8)


def _pipeline(pool: Pool, sources, out_dir: str, options: SynthOptions, factory: EngineFactory, fsync: bool,
              progress: bool):
    """The Ray Data pipeline (lazy: it runs as the driver reads its rows)."""
    quiet_data(pool.ray, progress)
    videos = one_job_per_block(pool.ray, [source.to_row() for source in sources])
    # The probe reserves no CPU: the workers may hold every core, and it must still run beside them.
    probed = videos.map(probe_video, fn_kwargs={"out_dir": out_dir, "options": options}, num_cpus=0,
                        concurrency=_probe_tasks(pool.plan))
    return on_workers(pool, probed, VideoWorker, {"out_dir": out_dir, "options": options,
                                                  "config": pool.engine_config, "engine_factory": factory,
                                                  "fsync": fsync, "run_id": new_run_id()})
