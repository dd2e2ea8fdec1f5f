"""The Ray worker pool that the three Ray executors share (synthesis: synth/ray_runner.py, benchmarks:
eval/ray_run.py, one question over many videos: batch_ask_ray.py): joining or starting the cluster,
how many workers of what size, each worker's config, the Ray Data map over actor workers that each
hold one engine, and a worker's engine error carried back to the driver as text.

One engine per worker: one model per GPU (`gpus_per_worker`, default 1 when the cluster has GPUs),
or on a cluster without GPUs, CPU workers with the model on CPU (one core each). Each job (a video,
a question) is its own block, handed to one idle worker at a time, so long and short jobs balance out.

Ray is imported only here and only when a run starts: the base install does not need it
(`pip install -e .[ray]`). Without `address` a local Ray is started (and stopped at the end); with
one the driver joins that cluster and ships this package's code to it (runtime_env py_modules), so
every worker runs the same code as the driver. A Ray already initialised by the caller is used as it
is (tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .config import AppConfig

EngineFactory = Callable[[AppConfig], Any]  # the worker's config -> its engine (picklable: a module-level function)


def default_engine(config: AppConfig) -> Any:
    """The project's engine (engine.Engine) for a worker's config."""
    from .engine import Engine

    return Engine.from_config(config)


def import_ray():
    """The ray module, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's Data library, not just ray core)
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[data]')") from None
    return ray


# --- the workers' number and size --------------------------------------------------------------------

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


# --- the cluster -------------------------------------------------------------------------------------

def connect(ray, address: str | None) -> bool:
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


def describe_cluster(resources: Mapping[str, float]) -> str:
    gpus = resources.get("GPU", 0)
    return f"{resources.get('CPU', 0):g} CPUs" + (f", {gpus:g} GPUs" if gpus else ", no GPU")


@dataclass(frozen=True)
class Pool:
    """A joined cluster: the ray module, the workers' plan, and the config each worker's engine uses."""
    ray: Any
    plan: WorkerPlan
    engine_config: AppConfig


@contextmanager
def joined(config: AppConfig, *, address: str | None = None, workers: int | None = None,
           gpus_per_worker: float | None = None, jobs: str = "",
           echo: Callable[[str], None] | None = None) -> Iterator[Pool]:
    """The cluster for one run (see the module's docstring), its workers planned; a Ray started here
    is shut down on leaving. `echo` gets one line: the cluster, the workers and `jobs` ("3 videos")."""
    ray = import_ray()
    started_here = connect(ray, address)
    try:
        plan = plan_workers(ray.cluster_resources(), workers, gpus_per_worker)
        engine_config = worker_config(config, plan)
        if echo is not None:
            echo(f"Ray: {describe_cluster(ray.cluster_resources())}; {plan.describe()}" + (f"; {jobs}" if jobs else ""))
        yield Pool(ray, plan, engine_config)
    finally:
        if started_here:
            ray.shutdown()


def quiet_data(ray, progress: bool) -> None:
    """Ray Data without its own progress bars (ours is the one bar over jobs; its per-operator bars clash)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING if progress else logging.ERROR)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": by us


def one_job_per_block(ray, rows: Sequence[Mapping[str, Any]]):
    """A Ray dataset of `rows`, each its own block, so each is handed to one idle worker."""
    return ray.data.from_items(list(rows), override_num_blocks=max(1, len(rows)))


def on_workers(pool: Pool, dataset, worker: type, constructor_kwargs: Mapping[str, Any]):
    """`dataset` mapped by `worker` actors (`worker(**constructor_kwargs)`, then called per row), the
    pool's size, one job in flight per worker so that an idle worker always takes the next one."""
    return dataset.map(
        worker, fn_constructor_kwargs=dict(constructor_kwargs),
        compute=pool.ray.data.ActorPoolStrategy(size=pool.plan.workers, max_tasks_in_flight_per_actor=1),
        num_cpus=pool.plan.cpus_per_worker, num_gpus=pool.plan.gpus_per_worker or None)


# --- a worker's engine error, carried back as text ---------------------------------------------------

# The errors a model loader raises that the driver raises again as themselves (the CLI shows them in
# one line); anything else becomes a RuntimeError naming its type. Sent as text, never pickled.
def _user_errors() -> dict[str, type[Exception]]:
    from .checkpoint import CheckpointError
    from .output_folder import FolderNotWritable

    return {cls.__name__: cls for cls in (CheckpointError, ValueError, FileNotFoundError, ImportError, OSError,
                                          FolderNotWritable)}


def error_row(err: BaseException) -> str:
    """`err` as the text a worker returns in its row (`Type: first line of the message`)."""
    text = str(err).strip().splitlines()
    return json.dumps({"type": type(err).__name__,
                       "message": f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")})


def raised_error(row: str) -> Exception:
    """The exception the driver raises for a worker's `error_row`."""
    error = json.loads(row)
    cls = _user_errors().get(error["type"])
    return cls(error["message"]) if cls is not None else RuntimeError(f"{error['type']}: {error['message']}")
