"""The recipe on one video: the model calls in their order, as a stream of events (`synthesize`).

Level 1: one call per 10 s window with that window's frames (timestamps in the video's own time,
the whole video's duration in the time instruction) and, as context, the previous level-1
description. Level 2: one text-only call per 30 s window (our choice: the paper builds level 2 from
descriptions only, and text is far cheaper than re-encoding 30 frames) from the group's level-1
descriptions and the previous level-2 description, made as soon as its last level-1 window is
written. Level 3: one text-only call from all level-2 descriptions plus any level-1 descriptions not
covered by a level 2; its text is the detailed caption.

QA: from the caption only, text-only calls. `qa_mode="per_type"` (default): one call per selected
type, returning one JSON object or "None" (a small model copes far better with one type at a time);
the calls share the caption as their prompt's beginning, so the engine answers them as one batch
(`qa_batch`): the caption prefilled once, one decode step for all of them. `qa_mode="joint"`:
one call returning a JSON list for all selected types. Either way at most one pair per type.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Generator, Iterable, Iterator, Protocol, Sequence

from ..video import VideoClip
from .events import (
    CallStarted,
    DescriptionWritten,
    Done,
    Planned,
    QAParsed,
    Stopped,
    SynthEvent,
    TextChunk,
)
from .plan import SynthOptions, Window, plan_windows
from .prompts import level1_prompt, level2_prompt, level3_prompt, qa_prompt
from .qa import (
    QAPair,
    clean_text,
    filter_pairs,
    make_multiple_choice,
    pairs_from_output,
)
from .result import Description, SynthResult, record_id, relative_video, video_id_for


class EngineLike(Protocol):  # what the recipe needs of engine.Engine (tests may pass a scripted one)
    model_id: str
    quant: str

    def load_clip(self, path, *, frames=None, start=None, end=None, sample_fps=None, max_frames=None) -> VideoClip: ...

    def stream(self, video, question, history=(), *, settings=None, stop=None) -> Iterator[str]: ...

    def stream_text(self, question, history=(), *, settings=None, stop=None) -> Iterator[str]: ...


class SynthStopped(Exception):
    """`run_synthesis` was stopped through its stop event."""


def window_clip(clip: VideoClip, window: Window) -> VideoClip:
    """The frames of one level-1 window as a clip of their own (original indices and timestamps, the
    whole video's duration, so the time instruction places them in the video)."""
    pos = list(window.frames)
    return dataclasses.replace(clip, frames=clip.frames[pos], frame_indices=[clip.frame_indices[i] for i in pos],
                               timestamps=[clip.timestamps[i] for i in pos], start=window.start, end=window.end)


# A step of the recipe: yields its events, returns its outcome (None: stopped, nothing more follows).
Step = Generator[SynthEvent, None, "str | Description | None"]


class _Calls:
    """The model calls of one run: numbered, timed and counted into the result, checked for Stop."""

    def __init__(self, result: SynthResult, total_steps: int, stop: threading.Event | None):
        self.result, self.total_steps, self.stop = result, total_steps, stop
        self.step = 0
        self.seconds = 0.0  # of the last call

    def run(self, stage: str, index: int, window: tuple[float, float] | None, chunks: Iterable[str],
            question_type: str | None = None) -> Step:
        """One model call, streamed: returns its text, or None when Stop was pressed during it."""
        self.step += 1
        where = dict(stage=stage, index=index, step=self.step, total_steps=self.total_steps, window=window,
                     question_type=question_type)
        yield CallStarted(**where)
        started = time.perf_counter()
        parts = []
        for chunk in chunks:
            parts.append(chunk)
            yield TextChunk(**where, text=chunk)
        self.seconds = time.perf_counter() - started
        self.result.calls[stage] += 1
        self.result.seconds[stage] += self.seconds
        if self.stop is not None and self.stop.is_set():
            yield Stopped(**where)
            return None
        return "".join(parts)

    def describe(self, window: Window, chunks: Iterable[str], timestamps: Sequence[float] = ()) -> Step:
        """One description call (of any level): returns the Description, or None when stopped."""
        stage, span = f"level{window.level}", (window.start, window.end)
        text = yield from self.run(stage, window.index, span, chunks)
        if text is None:
            return None
        description = Description(window.level, window.index, window.start, window.end, clean_text(text),
                                  list(timestamps), round(self.seconds, 3))
        self.result.descriptions.append(description)
        yield DescriptionWritten(stage=stage, index=window.index, step=self.step, total_steps=self.total_steps,
                                 window=span, description=description)
        return description


def synthesize(engine: EngineLike, video: str | os.PathLike, options: SynthOptions | None = None, *,
               video_root: str | os.PathLike | None = None, clip: VideoClip | None = None,
               stop: threading.Event | None = None) -> Iterator[SynthEvent]:
    """Run the recipe on one video, yielding events (events.py); the last is Done with the SynthResult,
    or Stopped. Model errors and bad videos raise (VideoError, ValueError, ...)."""
    options = options or SynthOptions()
    path = Path(video)
    rel = relative_video(path, video_root)
    if clip is None:
        clip = engine.load_clip(path, sample_fps=options.sample_fps, max_frames=options.max_frames)
    plan = plan_windows(clip.timestamps, clip.duration, options)
    result = SynthResult(
        video_path=str(path.resolve()) if path.exists() else str(path), video=rel, video_id=video_id_for(rel),
        data_source=options.data_source, duration=float(clip.duration), plan=plan, options=options,
        model=str(engine.model_id), quant=str(engine.quant),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), video_timing=getattr(clip, "timing", None))
    yield Planned(plan)
    calls = _Calls(result, plan.total_steps, stop)
    described = options.description_settings

    level1: list[Description] = []
    level2: list[Description] = []
    next_group = 0
    for w1 in plan.level1:
        sub = window_clip(clip, w1)
        prompt = level1_prompt(w1, clip.duration, level1[-1] if level1 else None)
        d = yield from calls.describe(w1, engine.stream(sub, prompt, settings=described, stop=stop), sub.timestamps)
        if d is None:
            return
        level1.append(d)
        # A level-2 window is written as soon as its last level-1 window is.
        while next_group < len(plan.level2) and plan.level2[next_group].children[-1] <= w1.index:
            w2 = plan.level2[next_group]
            next_group += 1
            prompt = level2_prompt(w2, [level1[i] for i in w2.children], level2[-1] if level2 else None)
            d = yield from calls.describe(w2, engine.stream_text(prompt, settings=described, stop=stop))
            if d is None:
                return
            level2.append(d)

    w3 = plan.level3
    sources = [level2[i] for i in w3.children] + [level1[i] for i in w3.tail]
    d = yield from calls.describe(w3, engine.stream_text(level3_prompt(clip.duration, sources), settings=described,
                                                         stop=stop))
    if d is None:
        return
    result.caption = d.text

    # QA from the caption, text only: the per-type calls answered as one batch where the engine can.
    found: dict[int, list[QAPair]] = {}
    outputs: dict[int, str] = {}
    if not result.caption:
        result.rejects["empty_caption"] += 1
    else:
        per_type = options.qa_mode == "per_type"
        batches = [[t] for t in options.types] if per_type else [list(options.types)]
        prompts = [qa_prompt(result.caption, types) for types in batches]
        started = time.perf_counter()
        for k, answer in _answers(engine, prompts, options, stop):
            expected = batches[k][0] if per_type else None
            text = yield from calls.run("qa", k, None, answer, question_type=expected)
            if text is None:
                return
            outputs[k] = text
            call_rejects: Counter = Counter()
            found[k] = pairs_from_output(text, expected_type=expected, allowed_types=options.types,
                                         rejects=call_rejects)
            result.rejects.update(call_rejects)
            yield QAParsed(stage="qa", index=k, step=calls.step, total_steps=plan.total_steps, question_type=expected,
                           pairs=found[k], rejects=dict(call_rejects), text=text)
        result.seconds["qa"] = time.perf_counter() - started  # a batch's calls overlap: the stage's wall time
    result.qa_outputs = [outputs[k] for k in sorted(outputs)]  # in type order, however they finished
    result.pairs = filter_pairs([pair for k in sorted(found) for pair in found[k]], result.rejects)
    if options.multiple_choice:
        result.mc_skipped = sum(
            1 for p in result.pairs
            if make_multiple_choice(p, record_id(result.video_id, "mc", p.question_type)) is None)
    yield Done(result, plan.total_steps)


def _answers(engine: EngineLike, prompts: list[str], options: SynthOptions,
             stop: threading.Event | None) -> Iterator[tuple[int, Iterable[str]]]:
    """(index, text chunks) of each QA prompt: from one batch (engine.answer_texts, in the order they
    finish) when the engine has it and the options allow, else one streamed call after another."""
    batch = getattr(engine, "answer_texts", None)
    if batch is not None and options.qa_batch and len(prompts) > 1:
        for k, text in batch(prompts, settings=options.qa_settings, stop=stop):
            yield k, [text]
        return
    for k, prompt in enumerate(prompts):
        yield k, engine.stream_text(prompt, settings=options.qa_settings, stop=stop)


def run_synthesis(engine: EngineLike, video: str | os.PathLike, options: SynthOptions | None = None, *,
                  video_root: str | os.PathLike | None = None, on_event: Callable[[SynthEvent], None] | None = None,
                  stop: threading.Event | None = None) -> SynthResult:
    """`synthesize` to the end: returns the result (raises SynthStopped if stopped)."""
    for event in synthesize(engine, video, options, video_root=video_root, stop=stop):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Done):
            return event.result
        if isinstance(event, Stopped):
            raise SynthStopped(f"stopped during {event.stage}")
    raise RuntimeError("synthesize ended without a result")  # unreachable
