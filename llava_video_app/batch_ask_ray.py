"""One question over many videos on Ray (`llava-video ask SPEC "q" --jsonl OUT --executor ray`): the
videos of batch_ask.plan_batch spread over actor workers that each hold one engine (ray_pool.py: one
per GPU, or CPU workers with --gpus-per-worker 0); each worker answers a video with
batch_ask.answer_video and appends its record to OUT itself (JsonlStore's appends are safe from many
processes), so the file is the one `ask_many` writes, with the same ids, and resumes the same way.

The ids name the model and quantisation; the driver takes them from the workers' config as each
worker resolves it (ray_pool.worker_config sets the device), so a rerun, on Ray or not, skips what is
in the file; a Ray run with nothing left to ask starts no worker. The file must be on a filesystem
every node sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .batch_ask import BatchSummary, answer_video, answered_line, one_line, plan_batch
from .config import AppConfig
from .jsonl import JsonlStore
from .ray_pool import EngineFactory, default_engine, error_row, joined, on_workers, one_job_per_block, quiet_data, \
    raised_error
from .request import RequestSettings
from .synth.sources import VideoSource


class AskWorker:
    """A Ray Data actor: one engine, made on its first video; each call answers one video (a row),
    appends its record and returns its outcome as a row."""

    def __init__(self, out: str, question: str, request: RequestSettings, config: AppConfig,
                 engine_factory: EngineFactory, fsync: bool):
        self.question, self.request, self.config, self.factory = question, request, config, engine_factory
        self.store = JsonlStore(out, fsync=fsync)
        self.engine: Any = None

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        source = VideoSource.from_row(row)
        outcome = {"n": row["n"], "video": source.relative, "error": "", "engine_error": "", "line": ""}
        if self.engine is None:
            try:
                self.engine = self.factory(self.config)
            except Exception as err:  # returned as text: the driver raises it as its own type
                return {**outcome, "status": "", "engine_error": error_row(err)}
        try:
            record = answer_video(self.engine, source, self.question, self.request)
        except (ValueError, OSError) as err:  # VideoError and RequestError are ValueErrors
            return {**outcome, "status": "failed", "error": one_line(err)}
        self.store.append([{"id": row["id"], **record}])
        return {**outcome, "status": "done", "line": answered_line(row["n"], row["total"], record)}


def ask_many_ray(spec: str, question: str, request: RequestSettings, out: str | os.PathLike,
                 config: AppConfig | None = None, *, engine_factory: EngineFactory | None = None,
                 address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
                 fsync: bool = True, progress: Callable[[str], None] = lambda _: None,
                 echo: Callable[[str], None] | None = None) -> BatchSummary:
    """batch_ask.ask_many on Ray: the same records in the same file. `engine_factory(config)` makes
    each worker's engine (default: the project's Engine; picklable: a module-level function).
    `progress` gets a line per video as its outcome reaches the driver (completion order), `echo`
    the line about the cluster and its workers."""
    config = config or AppConfig.from_env()
    out = Path(out).absolute()  # workers do not share the driver's working folder
    with joined(config, address=address, workers=workers, gpus_per_worker=gpus_per_worker, echo=echo) as pool:
        resolved = pool.engine_config.resolved()  # the model and quant each worker will load
        plan = plan_batch(spec, question, request, out, model=resolved.model, quant=resolved.quant)
        summary = BatchSummary(skipped=plan.skipped)
        if not plan.jobs:
            return summary
        quiet_data(pool.ray, progress=True)  # our lines per video; Ray Data's warnings still show
        rows = [{**job.source.to_row(), "n": job.n, "id": job.id, "total": plan.total} for job in plan.jobs]
        outcomes = on_workers(pool, one_job_per_block(pool.ray, rows), AskWorker,
                              {"out": str(out), "question": question, "request": request,
                               "config": pool.engine_config, "engine_factory": engine_factory or default_engine,
                               "fsync": fsync})
        for row in outcomes.iter_rows():
            if row["engine_error"]:  # no model, no run: the loader's own error, as ask_many's caller meets it
                raise raised_error(row["engine_error"])
            if row["status"] == "done":
                summary.answered += 1
                progress(row["line"])
            else:
                summary.failed.append((row["video"], row["error"]))
                progress(f"[{row['n']}/{plan.total}] {row['video']}: failed: {row['error']}")
    return summary
