"""Shared fixtures: a tiny random checkpoint in the original format, an engine on it, sample videos,
dataset records and a folder of them, and scripted QA answers for the synthesis recipe."""

from __future__ import annotations

import json
import os
from collections import Counter
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
    come from the model (scripted_engines.script_qa, which Ray workers import too)."""
    from scripted_engines import script_qa

    return script_qa


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory):
    """{"root": folder, 25: short.mp4 (25 s), 70: sub/long.mp4 (70 s)}: videos for the synthesis recipe."""
    from llava_video_app.sample_videos import make_video

    root = tmp_path_factory.mktemp("synth-videos")
    return {"root": root,
            25: make_video(root / "short.mp4", seconds=25, fps=2, size=(160, 120)),
            70: make_video(root / "sub" / "long.mp4", seconds=70, fps=2, size=(160, 120))}


@pytest.fixture
def quick_synth_options():
    """SynthOptions(**kw) with 6 new tokens per call: gibberish from the tiny model, but never empty."""
    from llava_video_app.config import GenerationSettings
    from llava_video_app.synth.plan import SynthOptions

    def options(**kw):
        quick = GenerationSettings(max_new_tokens=6, ignore_eos=True)
        return SynthOptions(description_settings=quick, qa_settings=quick, **kw)

    return options


class ScriptedEngine:
    """Engine stand-in: real frames, canned text. QA replies depend on the question type asked."""

    model_id, quant = "scripted-model", "none"

    def __init__(self, fail_on: str | None = None):
        self.calls = Counter()
        self.fail_on = fail_on

    def load_clip(self, path, *, frames=None, start=None, end=None, sample_fps=None, max_frames=None):
        from llava_video_app.video import load_video

        if self.fail_on and self.fail_on in str(path):
            raise ValueError(f"{path}: scripted failure")
        return load_video(path, num_frames=frames, sample_fps=sample_fps, max_frames=max_frames, size=(28, 28))

    def stream(self, video, question, history=(), *, settings=None, stop=None):
        self.calls["video"] += 1
        yield "A red square "
        yield f"moves right at {video.timestamps[0]:.0f}s."

    def stream_text(self, question, history=(), *, settings=None, stop=None):
        from llava_video_app.synth.prompts import qa_prompt_types

        self.calls["text"] += 1
        types = qa_prompt_types(question)
        if types is None:  # a level-2 or level-3 description
            yield "A red square moves from left to right <image> while its colour changes."
            return
        yield self.reply(types[0] if len(types) == 1 else None)

    @staticmethod
    def reply(kind):
        if kind is None:  # joint mode
            return json.dumps([{"Dimension": "Speed", "Question": "How fast does the square move?",
                                "Answer": "Steadily.", "Correct Option": "Steadily",
                                "Wrong Options": ["Very fast", "It stops", "It speeds up"]}])
        if kind == "Count":
            return "None"
        if kind == "Spatial":
            return '{"Question": "Where is the camera?", "Answer": "The description does not specify."}'
        if kind == "Camera Direction":
            return "```json\n{'Question': 'How many squares are there?', 'Answer': 'One.',}\n```"  # duplicate below
        if kind == "Binary":
            return '{"Question": "Is the square red?", "Answer": "Yes.", "Correct Option": "Yes", "Wrong Options": ["No"]}'
        if kind == "Speed":
            return "Sure: {\"Question\": \"Does the square speed up?\", \"Answer\": \"No, it moves ste"  # truncated
        question = "How many squares are there?" if kind == "Temporal" else f"What about {kind.lower()}?"
        return json.dumps({"Dimension": kind, "Question": question, "Answer": f"An answer about {kind}.",
                           "Correct Option": f"Right {kind}", "Wrong Options": ["Wrong one", "Wrong two", "Wrong three"]})


@pytest.fixture
def scripted_engine():
    """ScriptedEngine(fail_on=None): an engine stand-in with known outputs, so QA records can be checked."""
    return ScriptedEngine


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
