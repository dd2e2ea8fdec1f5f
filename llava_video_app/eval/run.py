"""A benchmark run into a folder, resumable: `run_eval` (in this process) and `ray_run.run_eval_ray`
(Ray actors, one engine per GPU; it shares `prepare`, `answer_sample` and `finish` from here) write
the same records.

    OUT/run.json        the benchmark, the data folder and the settings asked for (a resumed run
                        with other settings is refused: that would mix two experiments)
    OUT/samples.jsonl   one record per answered question (jsonl.JsonlStore: safe appends, ids
                        unique, a killed run leaves whole lines): the raw answer, the parsed letter,
                        correct or not, and its provenance (settings, prompt hash, frames, timings)
    OUT/skipped.txt     one line per question that could not be run (a missing video or field)
    OUT/summary.json    the report (eval/stats.py) over every record in samples.jsonl

A question already in samples.jsonl is not asked again; skipped ones are looked at again on every
run (their video may have arrived).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..config import AppConfig, GenerationSettings
from ..jsonl import JsonlStore, read_jsonl, write_json_atomic
from ..prompts import build_prompt
from ..provenance import Provenance, settings_of
from .answers import parse_answer
from .benchmarks import Benchmark, BenchmarkError, Sample, benchmark, load_samples
from .prompts import question_text
from .stats import Report, report

RUN_FILE, SAMPLES_FILE, SKIPPED_FILE, SUMMARY_FILE = "run.json", "samples.jsonl", "skipped.txt", "summary.json"


class EngineLike(Protocol):
    def load_clip(self, path: Any, *, frames: int | None = None) -> Any: ...
    def ask(self, video: Any, question: str, *, settings: GenerationSettings | None = None,
            stop: threading.Event | None = None) -> str: ...


@dataclass
class EvalSummary:
    benchmark: str
    questions: int = 0  # in the benchmark (after --limit)
    answered: int = 0  # by this run
    resumed: int = 0  # already in samples.jsonl
    skipped: list[str] = field(default_factory=list)  # one line each
    stopped: bool = False
    seconds: float = 0.0
    report: Report | None = None

    def format(self) -> str:
        lines = [f"{self.benchmark}: {self.questions} questions: {self.answered} answered now, {self.resumed} "
                 f"already done, {len(self.skipped)} skipped (not in the accuracy)" + (" [stopped]" * self.stopped)]
        lines += [f"skipped: {line}" for line in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"... and {len(self.skipped) - 20} more (all in {SKIPPED_FILE})")
        if self.report is not None:
            lines.append(self.report.format())
        return "\n".join(lines)


def generation_for(bench: Benchmark, max_new_tokens: int | None = None) -> GenerationSettings:
    """Greedy, the benchmark's new tokens (lmms-eval's) unless overridden."""
    return GenerationSettings(max_new_tokens=max_new_tokens or bench.max_new_tokens, temperature=0.0, top_p=1.0)


def answer_sample(engine: EngineLike, bench: Benchmark, sample: Sample, config: AppConfig,
                  generation: GenerationSettings, stop: threading.Event | None = None) -> dict[str, Any]:
    """Ask one question; its record (raises the video stage's / request's errors as they are)."""
    clip = engine.load_clip(sample.video, frames=config.frames)
    question = question_text(bench, sample, clip.duration)
    raw = engine.ask(clip, question, settings=generation, stop=stop)
    engine_config = getattr(engine, "config", config)
    prompt = build_prompt(question, duration=clip.duration, timestamps=clip.timestamps,
                          with_time_instruction=engine_config.time_instruction)
    settings = {**settings_of(engine_config, generation), "model": getattr(engine, "model_id", engine_config.model),
                "quant": getattr(engine, "quant", engine_config.quant)}
    parsed = parse_answer(bench.parser, raw, sample.options)
    provenance = Provenance.of_answer(settings, prompt, clip, getattr(engine, "last_stats", None))
    return {"id": sample.id, "benchmark": bench.name, "category": sample.category, "duration": sample.duration,
            "answer": sample.answer, "raw_answer": raw, "parsed": parsed, "correct": parsed == sample.answer,
            "video": sample.video, "question": question, "provenance": provenance.to_dict()}


def eta_seconds(elapsed: float, done: int, remaining: int) -> float | None:
    """Seconds left at the pace so far (None before the first answer)."""
    return elapsed / done * remaining if done else None


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class _Plan:
    bench: Benchmark
    out: Path
    store: JsonlStore
    todo: list[Sample]
    summary: EvalSummary
    ids: set[str]  # the runnable questions of this run (--limit applied): what the report covers


def prepare(name: str, data: str | os.PathLike, out: str | os.PathLike, config: AppConfig,
            generation: GenerationSettings, limit: int | None = None, fsync: bool = True) -> _Plan:
    """Read the benchmark, check / write OUT/run.json, find what is left to do."""
    bench = benchmark(name)
    if limit is not None and limit < 1:
        raise BenchmarkError(f"--limit must be at least 1, not {limit}")
    samples = load_samples(name, data)
    if limit is not None:
        samples = samples[:limit]
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    asked = {"benchmark": bench.name, "data": str(Path(data).absolute()), "settings": settings_of(config, generation)}
    run_file = out / RUN_FILE
    if run_file.exists():
        import json

        before = json.loads(run_file.read_text(encoding="utf-8"))
        if {k: before.get(k) for k in ("benchmark", "settings")} != {k: asked[k] for k in ("benchmark", "settings")}:
            changed = [k for k in asked["settings"] if before.get("settings", {}).get(k) != asked["settings"][k]]
            what = f"settings {', '.join(changed)}" if before.get("benchmark") == bench.name else \
                f"benchmark {before.get('benchmark')}"
            raise BenchmarkError(f"{out} holds a run with other {what}: give another --out (runs are compared with "
                                 "`llava-video eval compare`)")
    else:
        write_json_atomic(run_file, {**asked, "created": time.time()}, indent=2)
    store = JsonlStore(out / SAMPLES_FILE, fsync=fsync)
    done = store.ids()
    summary = EvalSummary(bench.title, questions=len(samples))
    summary.skipped = [f"{s.id}: {s.problem}" for s in samples if s.problem]
    summary.resumed = sum(1 for s in samples if not s.problem and s.id in done)
    todo = [s for s in samples if not s.problem and s.id not in done]
    return _Plan(bench, out, store, todo, summary, {s.id for s in samples if not s.problem})


def finish(plan: _Plan) -> EvalSummary:
    """Write skipped.txt and summary.json; the report covers the records in the file of this run's
    questions (a run with --limit 50 reports on those 50, even in a folder that holds more)."""
    (plan.out / SKIPPED_FILE).write_text("".join(f"{line}\n" for line in plan.summary.skipped), encoding="utf-8")
    records = [r for r in read_jsonl(plan.out / SAMPLES_FILE).records if r.get("id") in plan.ids]
    plan.summary.report = report(plan.bench.title, records, plan.bench.overall)
    write_json_atomic(plan.out / SUMMARY_FILE, {"questions": plan.summary.questions,
                                                "skipped": plan.summary.skipped,
                                                "report": plan.summary.report.to_dict()}, indent=2)
    return plan.summary


def run_eval(name: str, data: str | os.PathLike, out: str | os.PathLike, config: AppConfig | None = None, *,
             engine: EngineLike | None = None, make_engine: Callable[[], EngineLike] | None = None,
             limit: int | None = None, max_new_tokens: int | None = None, progress: bool = True,
             fsync: bool = True, stop: threading.Event | None = None,
             on_sample: Callable[[str, str, float | None], None] | None = None) -> EvalSummary:
    """Run benchmark `name` (benchmarks.BENCHMARKS) on the videos in `data` into `out`, one question
    after another in this process; resumable. The engine is made only when there is work.
    `on_sample(id, status, eta_s)`: status "done" or "skipped" (a video that failed to decode or a
    request refused: one line in the summary), after each question."""
    from tqdm import tqdm

    config = config or AppConfig()
    bench = benchmark(name)
    generation = generation_for(bench, max_new_tokens)
    plan = prepare(name, data, out, config, generation, limit, fsync)
    engines: list[EngineLike] = [] if engine is None else [engine]
    started = time.perf_counter()
    bar = tqdm(plan.todo, desc=bench.name, unit="q", disable=not progress)
    answered = 0
    try:
        for sample in bar:
            if stop is not None and stop.is_set():
                plan.summary.stopped = True
                break
            if not engines:
                if make_engine is None:
                    raise ValueError("run_eval needs an engine or make_engine")
                engines.append(make_engine())
            try:
                record = answer_sample(engines[0], bench, sample, config, generation, stop)
                if stop is not None and stop.is_set():  # a cut-short answer is no answer: asked again on resume
                    plan.summary.stopped = True
                    break
            except (ValueError, OSError) as err:  # the video stage's and the request's errors: this question only
                line = f"{sample.id}: {sample.video}: {one_line(err)}"
                plan.summary.skipped.append(line)
                if on_sample:
                    on_sample(sample.id, "skipped", None)
                continue
            plan.store.append([record])
            answered += 1
            plan.summary.answered = answered
            eta = eta_seconds(time.perf_counter() - started, answered, len(plan.todo) - answered)
            bar.set_postfix(eta=format_eta(eta), refresh=False)
            if on_sample:
                on_sample(sample.id, "done", eta)
    finally:
        bar.close()
    plan.summary.seconds = time.perf_counter() - started
    return finish(plan)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def with_eval_settings(config: AppConfig, *, frames: int | None = None, pool_mode: str | None = None,
                       time_instruction: bool | None = None) -> AppConfig:
    """The config a run uses: our recipe by default (64 frames, the checkpoint's pool mode, the time
    instruction); `frames=20, pool_mode="average", time_instruction=False` is lmms-eval's llava_vid."""
    given = {k: v for k, v in (("frames", frames), ("pool_mode", pool_mode), ("time_instruction", time_instruction))
             if v is not None}
    return dataclasses.replace(config, **given)
