"""Serving the model (web/serving.py): loading in the background and a failed load, and every answer
running through the GPU wrapper."""

import gradio as gr
import pytest

from llava_video_app.config import AppConfig, GenerationSettings
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
    assert len(wrapped) == 1 and isinstance(wrapped[0][-1], StopFlag)
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
