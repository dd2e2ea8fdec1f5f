"""One question over many videos (`llava-video ask PATH_OR_GLOB_OR_MANIFEST "question" --jsonl OUT`):
one record per video, each with its provenance, appended to a JSON Lines file as it is answered.

The videos are listed as `synth` lists them (synth/sources.py: a file, folder, glob, manifest or
URL). Resumable like synth: a record's id is a hash of the video's path, the question and the
settings, and the ids already in OUT are skipped, so a rerun after a crash or Ctrl-C asks only what
is missing; a video that failed is not recorded and is asked again by the next run. Appends go
through jsonl.JsonlStore (a torn last line is dropped, several writers are safe).
A record: {"id", "video" (relative to the listing's root), "question", "answer", "provenance"}.

`ask_many` answers in this process; batch_ask_ray.ask_many_ray the same jobs (`plan_batch`) on Ray
workers, into the same file, with the same ids. The web app's batch table (web/batch_tab.py) calls
`answer_video` per uploaded video.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .gpu_queue import GpuTurn, gpu_is_ours
from .jsonl import JsonlStore
from .provenance import Provenance, settings_for
from .request import RequestSettings
from .synth.sources import VideoSource, list_videos, local_copy


def record_id(video: str, question: str, settings: Mapping[str, Any]) -> str:
    """Same video path, question and settings: the same id (what resuming skips)."""
    key = json.dumps({"video": video, "question": question, "settings": dict(settings)}, sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass
class BatchSummary:
    answered: int = 0
    skipped: int = 0  # already in the file
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, one-line reason)
    stopped: bool = False


def answer_video(engine: Any, source: VideoSource, question: str, request: RequestSettings,
                 stop: threading.Event | None = None, turn: GpuTurn | None = None) -> dict[str, Any]:
    """The record of one video's answer (raises the video stage's and request's errors as they are).
    `turn(stop)`: the model call's turn on a shared GPU (gpu_queue.GpuQueue.turn; None: the GPU is ours);
    a Stop while it waits gives a record whose provenance says "stopped" and nothing else."""
    with local_copy(source) as (path, _):
        engine.check_request(path, question, frames=request.frames, start=request.start, end=request.end,
                             max_new_tokens=request.generation.max_new_tokens)
        clip = engine.load_clip(path, frames=request.frames, start=request.start, end=request.end)
        with (turn or gpu_is_ours)(stop) as ours:  # the video is read above, outside the GPU's line
            if not ours:
                return {"video": source.relative, "question": question, "answer": "", "provenance": {"stopped": True}}
            answer = engine.ask(clip, question, settings=request.generation, stop=stop)
            stats = engine.last_stats  # in the turn: the next call, maybe another visitor's, replaces it
        settings = settings_for(engine, request.generation, request.frames)
        provenance = Provenance.of_answer(settings, None, clip, stats, video=path,
                                          start=request.start, end=request.end).to_dict()
    return {"video": source.relative, "question": question, "answer": answer, "provenance": provenance}


@dataclass(frozen=True)
class BatchJob:
    """One video still to answer: its place in the listing (1-based), where it is, its record's id."""
    n: int
    source: VideoSource
    id: str


@dataclass
class BatchPlan:
    total: int  # videos in the listing
    jobs: list[BatchJob]  # those not yet in the file
    skipped: int  # already in the file


def asked_settings(request: RequestSettings, model: str | None, quant: str | None) -> dict[str, Any]:
    """What a record's id names besides the video and question: the settings asked for (seed None
    stays None), so that a rerun with the same flags resumes, and the model and quantisation."""
    return {"frames": request.frames, "start": request.start, "end": request.end,
            "max_new_tokens": request.generation.max_new_tokens, "temperature": request.generation.temperature,
            "top_p": request.generation.top_p, "seed": request.generation.seed, "model": model, "quant": quant}


def plan_batch(spec: str, question: str, request: RequestSettings, out: str | Path, *, model: str | None,
               quant: str | None) -> BatchPlan:
    """The videos of `spec` whose record is not in `out` yet (FileNotFoundError: no videos at all)."""
    videos = list_videos(spec)
    if not len(videos):
        raise FileNotFoundError(f"no videos in {spec}")
    done = JsonlStore(out).ids()
    asked = asked_settings(request, model, quant)
    jobs = [BatchJob(n, source, record_id(source.relative, question, asked))
            for n, source in enumerate(videos.sources, 1)]
    todo = [job for job in jobs if job.id not in done]
    return BatchPlan(len(videos), todo, len(jobs) - len(todo))


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def answered_line(n: int, total: int, record: Mapping[str, Any]) -> str:
    """The progress line of an answered video."""
    p = record["provenance"]
    return (f"[{n}/{total}] {record['video']}: {p['new_tokens']} tokens, first token "
            f"{p['timings'].get('time_to_first_token', 0):.2f} s")


def ask_many(engine: Any, spec: str, question: str, request: RequestSettings, out: str | Path, *,
             progress: Callable[[str], None] = lambda _: None, stop: threading.Event | None = None) -> BatchSummary:
    """Answer `question` about every video of `spec`, appending a record per video to `out`."""
    plan = plan_batch(spec, question, request, out, model=getattr(engine, "model_id", None),
                      quant=getattr(engine, "quant", None))
    store = JsonlStore(out)
    summary = BatchSummary(skipped=plan.skipped)
    for job in plan.jobs:
        if stop is not None and stop.is_set():
            summary.stopped = True
            break
        try:
            record = answer_video(engine, job.source, question, request, stop)
        except (ValueError, OSError) as err:  # VideoError and RequestError are ValueErrors
            summary.failed.append((job.source.relative, one_line(err)))
            progress(f"[{job.n}/{plan.total}] {job.source.relative}: failed: {one_line(err)}")
            continue
        if record["provenance"].get("stopped"):  # cut short: not a record; the next run asks again
            summary.stopped = True
            break
        store.append([{"id": job.id, **record}])
        summary.answered += 1
        progress(answered_line(job.n, plan.total, record))
    return summary
