"""The plan of a run (synth/plan.py): the window rule of each level, the options and their token
limits."""

from __future__ import annotations

import pytest

from llava_video_app.config import GenerationSettings
from llava_video_app.synth.plan import SynthOptions, plan_windows


def plan_for(duration, fps=1.0, **kw):
    timestamps = [k / fps for k in range(int(duration * fps - 1e-9) + 1)]
    options = SynthOptions(**kw)
    if len(timestamps) > options.max_frames:  # what the video stage does under the cap
        import numpy as np

        timestamps = [timestamps[i] for i in np.linspace(0, len(timestamps) - 1, options.max_frames, dtype=int)]
    return plan_windows(timestamps, duration, options)


@pytest.mark.parametrize("duration,calls", [
    (25, (3, 1)), (70, (7, 3)), (5, (1, 1)), (30, (3, 1)), (31, (3, 1)),  # 1 s tail joins the last window
    (33, (4, 2)), (90, (9, 3)), (91.5, (9, 3)), (180, (18, 6)),
])
def test_calls_per_level(duration, calls):
    plan = plan_for(duration)
    assert (len(plan.level1), len(plan.level2)) == calls
    assert plan.calls == {"level1": calls[0], "level2": calls[1], "level3": 1, "qa": 16}
    assert plan.level1[0].start == 0 and plan.level1[-1].end == duration
    assert all(a.end == b.start for a, b in zip(plan.level1, plan.level1[1:]))
    assert sorted(p for w in plan.level1 for p in w.frames) == list(range(plan.frame_count))
    assert [c for w in plan.level2 for c in w.children] == list(range(len(plan.level1)))


def test_window_spans_and_frames_for_25_and_70_seconds():
    plan = plan_for(25)
    assert plan.windows_info() == {"level1": [[0, 10], [10, 20], [20, 25]], "level2": [[0, 25]], "level3": [[0, 25]]}
    assert [len(w.frames) for w in plan.level1] == [10, 10, 5]
    plan = plan_for(70)
    assert plan.windows_info()["level2"] == [[0, 30], [30, 60], [60, 70]]
    assert [w.children for w in plan.level2] == [(0, 1, 2), (3, 4, 5), (6,)]


def test_without_partial_level2_the_tail_goes_to_level3():
    plan = plan_for(70, keep_partial_level2=False)
    assert len(plan.level2) == 2 and plan.level3.tail == (6,)
    plan = plan_for(25, keep_partial_level2=False)  # 3 windows: a full group
    assert len(plan.level2) == 1 and plan.level3.tail == ()
    plan = plan_for(15, keep_partial_level2=False)
    assert plan.level2 == [] and plan.level3.tail == (0, 1)


def test_frame_cap_skips_windows_without_frames():
    plan = plan_for(600, max_frames=30)  # one frame every ~20 s
    assert plan.frame_count == 30 and plan.capped and plan.skipped_windows > 0
    assert len(plan.level1) + plan.skipped_windows == 60
    assert all(w.frames for w in plan.level1)


def test_options_validate_types_and_mode():
    assert SynthOptions(types=("camera direction",)).types == ("Camera Direction",)
    with pytest.raises(ValueError, match="Camera Direction"):
        SynthOptions(types=("Camera Angle",))
    with pytest.raises(ValueError):
        SynthOptions(qa_mode="both")
    assert SynthOptions(qa_mode="joint").qa_calls() == 1 and SynthOptions().qa_calls() == 16


def test_token_limits_have_one_owner():
    options = SynthOptions()
    assert options.description_settings == GenerationSettings(max_new_tokens=SynthOptions.DESCRIPTION_TOKENS)
    assert options.qa_settings.max_new_tokens == SynthOptions.QA_TOKENS_PER_TYPE == 256
    assert SynthOptions(qa_mode="joint").qa_settings.max_new_tokens == SynthOptions.QA_TOKENS_JOINT == 2048
    limited = SynthOptions.with_limits(description_tokens=40, qa_tokens=None, temperature=0.5, top_p=0.9,
                                       qa_mode="joint", types=("Count", "Speed"))
    assert limited.description_settings == GenerationSettings(40, 0.5, 0.9)
    assert limited.qa_settings == GenerationSettings(2048, 0.5, 0.9) and limited.types == ("Count", "Speed")
