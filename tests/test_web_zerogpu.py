"""ZeroGPU (web/zerogpu.py): a Stop that reaches a pickled copy, and the GPU time each call asks for."""

import pickle

from llava_video_app.config import GenerationSettings
from llava_video_app.web.zerogpu import StopFlag, gpu_duration, synth_call_duration


def test_stop_flag_reaches_a_pickled_copy():
    """On ZeroGPU the model runs in a forked worker that gets its arguments pickled."""
    flag = StopFlag()
    remote = pickle.loads(pickle.dumps(flag))
    assert not remote.is_set()
    flag.set()
    assert remote.is_set()
    flag.clear()
    assert not remote.is_set()


def test_gpu_duration_covers_64_frames():
    seconds = gpu_duration("v.mp4", "q", (), 64, None, None, GenerationSettings(max_new_tokens=1024), StopFlag())
    assert seconds == 97, "the figure the README and spaces/app.py quote"
    assert gpu_duration("v.mp4", "q", (), 128, None, None, GenerationSettings(max_new_tokens=8000), None) == 300


def test_synthesis_calls_ask_for_their_own_durations():
    from types import SimpleNamespace

    level1 = SimpleNamespace(frame_indices=range(10))
    assert synth_call_duration(level1, "", (), GenerationSettings(max_new_tokens=512), None) == 48
    assert synth_call_duration(None, "", (), GenerationSettings(max_new_tokens=256), None) == 32
