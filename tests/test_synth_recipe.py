"""The recipe on one video (synth/recipe.py, events.py): end to end on the tiny random checkpoint
(structure only: its text is gibberish) and on a scripted engine (to reach the QA pairs): the calls
in their order, what each sees, the typed events, Stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llava_video_app import dataset as ds
from llava_video_app.synth.events import (
    CallStarted,
    DescriptionWritten,
    Done,
    Planned,
    QAParsed,
    Stopped,
)
from llava_video_app.synth.plan import SynthOptions
from llava_video_app.synth.prompts import PROMPT_VERSION
from llava_video_app.synth.recipe import SynthStopped, run_synthesis, synthesize


def spy(engine):
    """Record what each model call got."""
    calls = []
    stream, stream_text, answer_texts = engine.stream, engine.stream_text, engine.answer_texts

    def video_call(clip, question, *a, **k):
        calls.append(("video", question, clip))
        return stream(clip, question, *a, **k)

    def text_call(question, *a, **k):
        calls.append(("text", question, None))
        return stream_text(question, *a, **k)

    def batch_call(questions, *a, **k):  # the per-type QA calls, answered together
        calls.extend(("text", question, None) for question in questions)
        return answer_texts(questions, *a, **k)

    engine.stream, engine.stream_text, engine.answer_texts = video_call, text_call, batch_call
    return calls


@pytest.mark.parametrize("seconds,levels", [(25, (3, 1)), (70, (7, 3))])
def test_tiny_levels_windows_and_records(tiny_engine, synth_videos, quick_synth_options, seconds, levels):
    calls = spy(tiny_engine)
    events = list(synthesize(tiny_engine, synth_videos[seconds], quick_synth_options(types=("Temporal", "Speed")),
                             video_root=synth_videos["root"]))
    result = events[-1].result
    assert isinstance(events[0], Planned) and isinstance(events[-1], Done)
    assert dict(result.calls) == {"level1": levels[0], "level2": levels[1], "level3": 1, "qa": 2}
    assert len(calls) == sum(result.calls.values()) == events[0].plan.total_steps
    # level 1 sees the frames of its window only (1 fps, original timestamps); levels 2, 3 and QA are text only
    video_calls = [c for c in calls if c[0] == "video"]
    assert len(video_calls) == levels[0]
    for k, (_, prompt, clip) in enumerate(video_calls):
        start, end = 10 * k, min(10 * (k + 1), seconds)
        assert clip.timestamps == pytest.approx(list(range(start, end)))
        assert clip.duration == pytest.approx(seconds) and len(clip.frames) == end - start
        assert f"seconds {start} to {end}" in prompt
        assert ("The part just before" in prompt) == (k > 0)  # the previous level-1 as context
    # recurrent order: each level-2 right after its last level-1, then level 3, then QA
    started = [e for e in events if isinstance(e, CallStarted)]
    stages = [e.stage for e in started]
    expected = {25: ["level1"] * 3 + ["level2"], 70: (["level1"] * 3 + ["level2"]) * 2 + ["level1", "level2"]}
    assert stages == expected[seconds] + ["level3", "qa", "qa"]
    assert [e.step for e in started] == list(range(1, len(stages) + 1))
    # each call says what it is about: a description's window, a QA call's question type
    assert [e.question_type for e in started if e.stage == "qa"] == ["Temporal", "Speed"]
    assert all(e.window is not None and e.question_type is None for e in started if e.stage != "qa")
    assert [e.question_type for e in events if isinstance(e, QAParsed)] == ["Temporal", "Speed"]
    described = [(e.description.level, e.description.index) for e in events if isinstance(e, DescriptionWritten)]
    assert [lvl for lvl, _ in described] == [1 if s == "level1" else 2 if s == "level2" else 3
                                             for s in stages if s != "qa"]
    assert result.caption == result.level(3)[0].text != ""
    # records: the caption validates; gibberish QA is counted as unparseable, never crashes
    records = result.records()
    assert len(records["cap"]) == 1
    assert sum(result.rejects.values()) + len(result.pairs) >= 1
    for task, recs in records.items():
        for r in recs:
            assert ds.validate_record(r, task) == []
            assert r["conversations"][0]["value"].startswith("<image>\n")
            assert r["prompt_version"] == PROMPT_VERSION and r["model"] == tiny_engine.model_id
    cap = records["cap"][0]
    assert cap["video"] == Path(synth_videos[seconds]).relative_to(synth_videos["root"]).as_posix()
    assert cap["frames"]["count"] == seconds and cap["windows"]["level1"][-1] == [10 * (levels[0] - 1), seconds]


def test_tiny_all_types_per_type_and_joint(tiny_engine, synth_videos, quick_synth_options):
    result = run_synthesis(tiny_engine, synth_videos[25], quick_synth_options())
    assert result.calls["qa"] == 16 and len(result.qa_outputs) == 16
    result = run_synthesis(tiny_engine, synth_videos[25], quick_synth_options(qa_mode="joint"))
    assert result.calls["qa"] == 1


def test_tiny_stop_event_ends_the_run(tiny_engine, synth_videos, quick_synth_options):
    stop = threading.Event()
    kinds = []
    for event in synthesize(tiny_engine, synth_videos[25], quick_synth_options(), stop=stop):
        kinds.append(type(event))
        if isinstance(event, DescriptionWritten):
            stop.set()
    assert kinds[-1] is Stopped and Done not in kinds and kinds.count(DescriptionWritten) == 1
    stop.clear()
    with pytest.raises(SynthStopped):
        run_synthesis(tiny_engine, synth_videos[25], quick_synth_options(), stop=stop,
                      on_event=lambda e: stop.set() if isinstance(e, CallStarted) else None)


def test_scripted_joint_mode(synth_videos, scripted_engine):
    result = run_synthesis(scripted_engine(), synth_videos[25], SynthOptions(qa_mode="joint"))
    assert result.calls["qa"] == 1 and [p.question_type for p in result.pairs] == ["Speed"]
    assert len(result.records()["mc"]) == 1


def test_batched_qa_gives_the_sequential_calls_results(tiny_engine, synth_videos, quick_synth_options):
    """The per-type QA calls answered as one batch: the same outputs, pairs and records as one call
    after another, with far fewer forward passes of the language model."""
    forwards = []
    hook = tiny_engine.model.lm.register_forward_pre_hook(lambda *a: forwards.append(1))
    try:
        results = {}
        for batched in (False, True):
            forwards.clear()
            options = quick_synth_options(qa_batch=batched)
            results[batched] = run_synthesis(tiny_engine, synth_videos[25], options, video_root=synth_videos["root"])
            results[batched, "forwards"] = len(forwards)
    finally:
        hook.remove()
    sequential, batch = results[False], results[True]
    assert len(batch.qa_outputs) == len(sequential.qa_outputs) == 16
    assert batch.qa_outputs == sequential.qa_outputs and batch.caption == sequential.caption
    def without_time(records):
        return {task: [{k: v for k, v in r.items() if k != "created"} for r in rs] for task, rs in records.items()}

    assert without_time(batch.records()) == without_time(sequential.records())
    qa_tokens = 6  # quick_synth_options
    assert results[True, "forwards"] <= results[False, "forwards"] - 16 * qa_tokens + qa_tokens + 2
