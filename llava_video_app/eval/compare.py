"""`llava-video eval compare RUN_A RUN_B`: B minus A on the questions both runs answered, overall and
per category / duration group, each with its paired 95% bootstrap interval (eval/stats.py), and what
differs between the two runs' settings (4-bit vs bf16, 32 vs 64 frames, bilinear vs average)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..jsonl import read_jsonl
from .benchmarks import BenchmarkError, benchmark
from .run import RUN_FILE, SAMPLES_FILE
from .stats import RESAMPLES, compare_table


def load_run(folder: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run.json, the answered records) of a run folder, or BenchmarkError in one line."""
    folder = Path(folder)
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise BenchmarkError(f"{folder} is not an eval run folder (no {RUN_FILE})")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    result = read_jsonl(folder / SAMPLES_FILE)
    if result.errors:
        raise BenchmarkError(f"{result.errors[0]}")
    return run, result.records


def compare_runs(a: str | os.PathLike, b: str | os.PathLike, *, seed: int = 0, resamples: int = RESAMPLES) -> str:
    """The comparison as text."""
    run_a, records_a = load_run(a)
    run_b, records_b = load_run(b)
    if run_a["benchmark"] != run_b["benchmark"]:
        raise BenchmarkError(f"the runs are of different benchmarks: {run_a['benchmark']} and {run_b['benchmark']}")
    bench = benchmark(run_a["benchmark"])
    table = compare_table(records_a, records_b, bench.overall, seed=seed, resamples=resamples)
    overall = table["overall"]
    if overall.n == 0:
        raise BenchmarkError("the two runs have no answered question in common")
    settings_a, settings_b = run_a.get("settings", {}), run_b.get("settings", {})
    changed = [f"{k}: {settings_a.get(k)} -> {settings_b.get(k)}" for k in sorted(set(settings_a) | set(settings_b))
               if settings_a.get(k) != settings_b.get(k)]
    lines = [f"{bench.title}: B - A on {overall.n} questions answered by both "
             f"(A: {len(records_a)}, B: {len(records_b)} answered)",
             "A: " + str(a), "B: " + str(b), "settings: " + ("; ".join(changed) or "the same"),
             f"right in A only: {overall.only_a}, in B only: {overall.only_b}",
             f"{'':<36} {'A':>5} {'B':>6} {'B-A':>6} 95% interval (paired bootstrap)"]
    lines += [f"{name:<36} {d.cell()}  n={d.n}" for name, d in table.items()]
    return "\n".join(lines)
