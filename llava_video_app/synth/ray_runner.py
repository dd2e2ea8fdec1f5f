"""Synthesis on Ray (`run_ray`): the same per-video step as the in-process runner, spread over actor
workers that each hold one engine, so the output folder is the one `run_batch` writes.

    listing (driver: sources.py)        a folder, glob, manifest or URL -> one row per video
      -> probe (CPU tasks)              done already? (its manifest); the plan from the file's header
      -> synthesize (actor workers)     one_video.process_video with the worker's engine: the lock,
                                        the "running" mark, the recipe, the records, the manifest
      -> outcomes (driver)              the progress bar and the summary (batch.BatchSummary)

One engine per worker: one model per GPU (`gpus_per_worker`, default 1 when the cluster has GPUs),
or on a cluster without GPUs, CPU workers with the model on CPU (one core each). Each video is its
own block, handed to one idle worker at a time, so long and short videos balance out. A worker
that dies mid-video is restarted by Ray and the video retried (one_video.py counts the attempts);
records already appended are not appended twice (stable ids). The output folder must be one
filesystem every node sees (locks and appends are POSIX file operations), and so must local videos.

Ray is imported only here and only when a run starts: the base install does not need it
(`pip install -e .[ray]`). Without `address` a local Ray is started (and stopped at the end); with
one the driver joins that cluster and ships this package's code to it (runtime_env py_modules), so
every worker runs the same recipe as the driver. A Ray already initialised by the caller is used as
it is (tests, benchmarks).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import output_folder as folder
from ..config import AppConfig
from .batch import BatchSummary
from .one_video import EngineUnavailable, VideoOutcome, new_run_id, one_line, process_video
from .plan import SynthOptions, plan_windows
from .recipe import EngineLike
from .sources import VideoSource, list_videos

EngineFactory = Callable[[AppConfig], EngineLike]  # the worker's config -> its engine (picklable)


def default_engine(config: AppConfig) -> EngineLike:
    """The project's engine (engine.Engine) for a worker's config."""
    from ..engine import Engine

    return Engine.from_config(config)


def import_ray():
    """The ray module, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's Data library, not just ray core)
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[data]')") from None
    return ray


# --- workers ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    gpus_per_worker: float  # 0: CPU workers, the model on CPU
    cpus_per_worker: float = 1.0

    def describe(self) -> str:
        each = f"{self.gpus_per_worker:g} GPU" if self.gpus_per_worker else "the model on CPU"
        return f"{self.workers} worker{'s' * (self.workers != 1)} ({each} each)"


def plan_workers(resources: Mapping[str, float], workers: int | None = None,
                 gpus_per_worker: float | None = None) -> WorkerPlan:
    """How many workers of what size, from the cluster's resources (`ray.cluster_resources()`) and the
    user's flags: by default one per GPU, or one per CPU on a cluster without GPUs. Raises ValueError
    for what the cluster cannot hold."""
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be 0 (CPU workers) or more, not {gpus_per_worker:g}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if gpus_per_worker > 0:
        if gpus == 0:
            raise ValueError("the Ray cluster has no GPU: pass --gpus-per-worker 0 for CPU workers (slow)")
        fit = math.floor(gpus / gpus_per_worker + 1e-9)
        if workers is not None and workers > fit:
            raise ValueError(f"{workers} workers x {gpus_per_worker:g} GPU need {workers * gpus_per_worker:g} GPUs; "
                             f"the Ray cluster has {gpus:g}")
        if fit < 1:
            raise ValueError(f"a worker needs {gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}")
        return WorkerPlan(workers or fit, gpus_per_worker)
    fit = math.floor(cpus + 1e-9)
    if workers is not None and workers > fit:
        raise ValueError(f"{workers} CPU workers need {workers} CPUs; the Ray cluster has {cpus:g}")
    return WorkerPlan(workers or max(1, fit), 0.0)


def worker_config(config: AppConfig, plan: WorkerPlan) -> AppConfig:
    """The config a worker loads its engine with: on the GPU Ray gives it, or on CPU. Model, quant
    and compile stay unresolved, so the worker picks them for its own hardware, as the CLI does."""
    import dataclasses

    device = config.device
    if plan.gpus_per_worker > 0:
        if device not in (None, "cuda", "cuda:0"):
            raise ValueError(f"--device {device}: a Ray GPU worker sees only its own GPU(s) (cuda); "
                             "leave --device out, or pass --gpus-per-worker 0 for CPU workers")
        device = "cuda"
    else:
        if device is not None and device != "cpu":
            raise ValueError(f"--device {device} needs GPU workers: pass --gpus-per-worker 1")
        device = "cpu"
    return dataclasses.replace(config, device=device)


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
                return {"outcome": "", "planned_calls": 0, "engine_error": _error_row(err.error)}
            except folder.FolderNotWritable as err:  # the disk, not the video: the driver stops the run
                error = json.dumps({"type": type(err).__name__, "message": str(err)})  # the line as it is
                return {"outcome": "", "planned_calls": 0, "engine_error": error}
        return {**outcome.to_row(), "planned_calls": row["planned_calls"], "engine_error": ""}


# The errors a model loader raises that the driver raises again as themselves (the CLI shows them in
# one line); anything else becomes a RuntimeError naming its type. Sent as text, never pickled.
def _user_errors() -> dict[str, type[Exception]]:
    from ..checkpoint import CheckpointError

    return {cls.__name__: cls for cls in (CheckpointError, ValueError, FileNotFoundError, ImportError, OSError,
                                          folder.FolderNotWritable)}


def _error_row(err: Exception) -> str:
    return json.dumps({"type": type(err).__name__, "message": one_line(err)})


def _raised_error(row: str) -> Exception:
    error = json.loads(row)
    cls = _user_errors().get(error["type"])
    return cls(error["message"]) if cls is not None else RuntimeError(f"{error['type']}: {error['message']}")


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

    ray = import_ray()
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
    started_here = _connect(ray, address)
    try:
        plan = plan_workers(ray.cluster_resources(), workers, gpus_per_worker)
        engine_config = worker_config(config, plan)
        say(f"Ray: {_describe_cluster(ray.cluster_resources())}; {plan.describe()}; {len(listing)} videos")
        started = time.perf_counter()  # from here on, as run_batch: the engines' loading included
        outcomes = _pipeline(ray, listing.sources, str(out_dir), options, engine_config, factory, plan, fsync,
                             progress)
        planned = 0
        bar = tqdm(total=len(listing), desc="videos", unit="video", disable=not progress)
        try:
            for row in outcomes.iter_rows():
                if row["engine_error"]:  # no model, no run: the loader's own error, as run_batch raises it
                    raise _raised_error(row["engine_error"])
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
    finally:
        if started_here:
            ray.shutdown()
    if export:
        with folder.writing_to(out_dir):
            folder.export_json(out_dir)
    return summary


def _connect(ray, address: str | None) -> bool:
    """Start a local Ray or join `address`; True when this call did (and so ends it afterwards)."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    if address is None:
        ray.init(**quiet)  # workers inherit this process's environment (PYTHONPATH, HF_HOME, ...)
    else:
        import llava_video_app

        package = str(Path(llava_video_app.__file__).parent)
        ray.init(address=address, runtime_env={"py_modules": [package], "excludes": ["__pycache__"]},
                 logging_level=logging.WARNING, log_to_driver=True)
    return True


def _describe_cluster(resources: Mapping[str, float]) -> str:
    gpus = resources.get("GPU", 0)
    return f"{resources.get('CPU', 0):g} CPUs" + (f", {gpus:g} GPUs" if gpus else ", no GPU")


def _probe_tasks(plan: WorkerPlan) -> int:
    """Probe tasks at once: a header read takes milliseconds and a worker's video tens of seconds, so
    one probe per 8 workers keeps ahead of them without crowding the workers' CPUs with processes."""
    return max(1, plan.workers // 8)


def _pipeline(ray, sources, out_dir: str, options: SynthOptions, config: AppConfig, factory: EngineFactory,
              plan: WorkerPlan, fsync: bool, progress: bool):
    """The Ray Data pipeline (lazy: it runs as the driver reads its rows)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is the one bar over videos; Ray's per-operator bars clash with it
    logging.getLogger("ray.data").setLevel(logging.WARNING if progress else logging.ERROR)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": by us
    rows = [source.to_row() for source in sources]
    videos = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))  # one video per block
    # The probe reserves no CPU: the workers may hold every core, and it must still run beside them.
    probed = videos.map(probe_video, fn_kwargs={"out_dir": out_dir, "options": options}, num_cpus=0,
                        concurrency=_probe_tasks(plan))
    return probed.map(
        VideoWorker,
        fn_constructor_kwargs={"out_dir": out_dir, "options": options, "config": config, "engine_factory": factory,
                               "fsync": fsync, "run_id": new_run_id()},
        # One video in flight per worker, so an idle worker always takes the next one.
        compute=ray.data.ActorPoolStrategy(size=plan.workers, max_tasks_in_flight_per_actor=1),
        num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker or None)
