"""Shared fixtures: a tiny random checkpoint in the original format, an engine on it, sample videos,
dataset records and a folder of them, and scripted QA answers for the synthesis recipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """LLaVA-Video-style (grid newlines, bilinear pool) toy checkpoint, built once per session."""
    from llava_video_app.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llava-video"))


@pytest.fixture(scope="session")
def tiny_onevision_checkpoint(tmp_path_factory) -> Path:
    """OneVision-style toy checkpoint (one newline after the whole video)."""
    from llava_video_app.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-onevision"), newline_position="one_token")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from llava_video_app.model import LlavaVideoModel

    return LlavaVideoModel.load(str(tiny_checkpoint), quant="fp32", device="cpu")


@pytest.fixture
def tiny_engine(tiny_model):
    """A fresh engine (empty caches) over the session's tiny fp32 CPU model."""
    from llava_video_app.config import AppConfig
    from llava_video_app.engine import Engine

    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=16)
    return Engine(tiny_model, config)


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> Path:
    """A real 6-second H.264 .mp4 (a moving, colour-changing square)."""
    from llava_video_app.sample_videos import make_video

    return make_video(tmp_path_factory.mktemp("videos") / "square.mp4", seconds=6, fps=10, size=(160, 120))


@pytest.fixture
def scripted_qa():
    """script(engine, pair_for): the random model cannot write a valid QA object, so each QA call of
    the synthesis recipe is answered with pair_for(question type) as JSON; the descriptions still
    come from the model."""
    import json
    import re

    def script(engine, pair_for) -> None:
        text_call = engine.stream_text

        def stream_text(question, *args, **kwargs):
            found = re.search(r'of the type "([^"]+)"', question)
            if not found:
                yield from text_call(question, *args, **kwargs)
                return
            yield json.dumps({"Dimension": found.group(1), **pair_for(found.group(1))})

        engine.stream_text = stream_text

    return script


@pytest.fixture
def record():
    """record(id, task="oe", duration=20.0, source="test", **extra): a valid record of that split."""
    from llava_video_app import dataset as ds

    def make(rid, task="oe", duration=20.0, source="test", **extra):
        human = "What happens?"
        gpt = "A square moves."
        if task == "mc":
            human = ds.mc_human_turn("What moves?", ["A square", "A circle", "A dog"])
            gpt = "A."
        return ds.make_record(rid, "clips/a.mp4", source, human, gpt, task=task, question_type="Temporal",
                              video_duration=duration, **extra)

    return make


@pytest.fixture
def dataset_folder(tmp_path, record):
    """An output folder with 5 records in 5 split files (3 lengths, 2 data sources)."""
    from llava_video_app.output_folder import append_records

    out = tmp_path / "out"
    append_records(out, [record("c1", task="cap", duration=12), record("o1", duration=12),
                         record("o2", duration=45), record("m1", task="mc", duration=100),
                         record("o3", duration=500, source="other")])
    return out
