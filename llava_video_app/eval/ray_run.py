"""Benchmark runs on Ray (`run_eval_ray`): the questions spread over actor workers that each hold one
engine (one per GPU, or CPU workers with --gpus-per-worker 0), the same records in the same folder
as `run.run_eval`, resumable the same way. The cluster, the workers' sizes and their config, and a
loader error carried back as text are ray_pool.py's (shared with synthesis and batch questions).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..config import AppConfig
from ..jsonl import JsonlStore
from ..ray_pool import (default_engine, error_row, import_ray, joined, on_workers, one_job_per_block, quiet_data,
                        raised_error)
from .benchmarks import Sample, benchmark
from .run import SAMPLES_FILE, EvalSummary, format_eta, answer_sample, eta_seconds, finish, generation_for, \
    one_line, prepare


# --- Ray ------------------------------------------------------------------------------------------

class SampleWorker:
    """A Ray Data actor: one engine, made on its first question; each call answers one question (a
    row) and appends its record itself (JsonlStore's appends are safe from many processes)."""

    def __init__(self, name: str, out: str, config: AppConfig, max_new_tokens: int | None, engine_factory: Any,
                 fsync: bool):
        self.bench = benchmark(name)
        self.generation = generation_for(self.bench, max_new_tokens)
        self.config, self.factory = config, engine_factory
        self.store = JsonlStore(Path(out) / SAMPLES_FILE, fsync=fsync)
        self.engine: Any = None

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        sample = Sample.from_row(row)
        if self.engine is None:
            try:
                self.engine = self.factory(self.config)
            except Exception as err:  # returned as text: the driver raises it as its own type
                return {"id": sample.id, "status": "", "error": "", "engine_error": error_row(err)}
        try:
            record = answer_sample(self.engine, self.bench, sample, self.config, self.generation)
        except (ValueError, OSError) as err:
            return {"id": sample.id, "status": "skipped", "error": f"{sample.id}: {sample.video}: {one_line(err)}",
                    "engine_error": ""}
        self.store.append([record])
        return {"id": sample.id, "status": "done", "error": "", "engine_error": ""}


def run_eval_ray(name: str, data: str | os.PathLike, out: str | os.PathLike, config: AppConfig | None = None, *,
                 engine_factory: Any = None, address: str | None = None, workers: int | None = None,
                 gpus_per_worker: float | None = None, limit: int | None = None,
                 max_new_tokens: int | None = None, progress: bool = True, fsync: bool = True,
                 echo: Callable[[str], None] | None = None) -> EvalSummary:
    """`run_eval` on Ray: the questions spread over actor workers (one engine per GPU, or CPU workers
    with --gpus-per-worker 0), the same records in the same folder; resumable the same way."""
    from tqdm import tqdm

    import_ray()  # a missing extra: its one line before the benchmark is read
    config = config or AppConfig()
    bench = benchmark(name)
    generation = generation_for(bench, max_new_tokens)
    plan = prepare(name, data, out, config, generation, limit, fsync)
    started = time.perf_counter()
    if plan.todo:
        with joined(config, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                    jobs=f"{len(plan.todo)} questions", echo=echo) as pool:
            quiet_data(pool.ray, progress)
            outcomes = on_workers(pool, one_job_per_block(pool.ray, [q.to_row() for q in plan.todo]), SampleWorker,
                                  {"name": name, "out": str(plan.out), "config": pool.engine_config,
                                   "max_new_tokens": max_new_tokens, "engine_factory": engine_factory or default_engine,
                                   "fsync": fsync})
            bar = tqdm(total=len(plan.todo), desc=bench.name, unit="q", disable=not progress)
            try:
                for row in outcomes.iter_rows():
                    if row["engine_error"]:
                        raise raised_error(row["engine_error"])
                    if row["status"] == "done":
                        plan.summary.answered += 1
                    else:
                        plan.summary.skipped.append(row["error"])
                    bar.update(1)
                    eta = eta_seconds(time.perf_counter() - started, bar.n, len(plan.todo) - bar.n)
                    bar.set_postfix(eta=format_eta(eta), refresh=False)
            finally:
                bar.close()
    plan.summary.seconds = time.perf_counter() - started
    return finish(plan)
