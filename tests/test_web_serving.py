"""Serving the model (web/serving.py): loading in the background and a failed load, and every answer
running through the GPU wrapper."""

import gradio as gr
import pytest

from llava_video_app.config import AppConfig, GenerationSettings
from llava_video_app.video import VideoClip
from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.serving import EngineHolder
from llava_video_app.web.zerogpu import StopFlag


def test_the_model_runs_through_the_gpu_wrapper(tiny_engine, sample_video):
    wrapped = []

    def gpu(fn, duration):
        def run(*args, **kwargs):
            wrapped.append(args)
            assert duration(*args, **kwargs) > 0
            yield from fn(*args, **kwargs)
        return run

    chat = VideoChat(tiny_engine, gpu=gpu)
    answers = list(chat.api_ask(str(sample_video), "What?", 8, None, None, 3, 0.0, 1.0))
    assert len(wrapped) == 1 and isinstance(wrapped[0][-3], StopFlag)
    assert wrapped[0][-2] == "local", "whose caches: the session (none without a request)"
    clip = wrapped[0][-1]  # decoded before the GPU's turn: nothing reads the file in the wrapped call
    assert isinstance(clip, VideoClip) and len(clip.frame_indices) == 8
    assert answers[-1] and answers[-1] == tiny_engine.ask(str(sample_video), "What?",
                                                          settings=GenerationSettings(max_new_tokens=3))

def test_loading_state_and_a_failed_load(tmp_path):
    holder = EngineHolder(AppConfig(model=str(tmp_path / "nowhere"), quant="fp32", device="cpu"))
    chat = VideoChat(holder)
    assert "Loading" in chat.status()
    holder.load()  # fails: not a checkpoint
    assert not holder.ready and "could not be loaded" in chat.status()
    assert chat.loading_status()[1].active is False
    with pytest.raises(gr.Error, match="could not be loaded"):
        list(chat.api_ask("v.mp4", "What?"))


class _Visitor:
    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def test_sessions_keep_at_most_their_capacity_dropping_the_least_recently_used_idle_ones():
    from llava_video_app.web.serving import Sessions

    sessions = Sessions(capacity=3)
    busy = sessions.get(_Visitor("busy"))
    busy.idle.clear()  # mid-answer: never dropped
    kept = sessions.get(_Visitor("kept"))
    for n in range(100):  # API clients: a new session each, no unload ever
        sessions.get(_Visitor(f"client-{n}"))
        sessions.get(_Visitor("kept"))  # used again: stays
    assert len(sessions) == 3
    assert sessions.get(_Visitor("busy")) is busy and sessions.get(_Visitor("kept")) is kept
    busy.idle.set()
    for n in range(3):
        sessions.get(_Visitor(f"late-{n}"))
    assert sessions.get(_Visitor("busy")) is not busy, "once idle, it ages out like the others"


def test_the_app_bounds_gradio_sessions_and_deletes_old_uploads():
    from llava_video_app.web.app import build_ui, launch

    config = AppConfig(max_sessions=7, upload_ttl_s=90)
    demo = build_ui(EngineHolder(config))
    assert demo.delete_cache == (90, 90)
    launched = {}
    launch(demo, config, prevent_thread_lock=True)
    try:
        launched["capacity"] = demo.state_session_capacity
    finally:
        demo.close()
    assert launched["capacity"] == 7


def test_uploads_and_their_leftovers_are_swept_once_older_than_the_ttl_but_the_examples_stay(tmp_path):
    import time

    from llava_video_app.web.app import sweep_uploads

    example = tmp_path / "0123abcd" / "example.mp4"
    files = [tmp_path / "tmpold123", tmp_path / "beef" / "upload.mp4", example]
    for path in files:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"video")
    time.sleep(1.2)  # ctime cannot be set back: age them for real, past a 1 s time to live
    sweep_uploads(1, tmp_path, every_s=0.1, keep=lambda: {str(example.resolve())})
    for _ in range(300):  # a guard only: the first sweep comes after 0.1 s
        if not files[0].exists() and not files[1].exists():
            break
        time.sleep(0.1)
    assert not files[0].exists() and not files[1].parent.exists(), "old files and their emptied folder gone"
    assert example.exists(), "an example stays"
