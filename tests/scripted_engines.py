"""The real engine with scripted QA answers, importable by module path so that Ray actors can build it
too (the random tiny model cannot write a valid QA object; its descriptions stay the model's own).

    script_qa(engine, pair_for)    answer each QA call with pair_for(question type) as JSON
    scripted_qa_engine(config)     Engine.from_config(config) with script_qa(..., numbered_pair):
                                   the engine factory the Ray tests hand to their workers

Ray tests also pause a worker on purpose, to kill it mid-video: when the folder named by
$LLAVA_VIDEO_TEST_PAUSE_DIR holds a file `pause-on` naming a video, the first text-only call on that
video (its first level-2 description: mid-video) writes `paused` (the worker's pid) there and sleeps
until it is killed; the retry sees `paused` and goes on.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

PAUSE_DIR_ENV = "LLAVA_VIDEO_TEST_PAUSE_DIR"
PAUSE_SECONDS = 120  # longer than any test waits for the kill


def script_qa(engine: Any, pair_for: Callable[[str], dict]) -> None:
    """Make each QA call of the synthesis recipe on `engine` answer pair_for(question type) as JSON;
    every other call (the descriptions) still goes to the model."""
    from llava_video_app.synth.prompts import qa_prompt_types

    text_call = engine.stream_text

    def stream_text(question, *args, **kwargs):
        types = qa_prompt_types(question)
        if types is None:  # not a QA call: the model answers
            yield from text_call(question, *args, **kwargs)
            return
        yield json.dumps({"Dimension": types[0], **pair_for(types[0])})

    def answer_texts(questions, *args, **kwargs):  # the batched per-type QA calls, where the recipe batches
        for k, question in enumerate(questions):
            yield k, "".join(stream_text(question, *args, **kwargs))

    engine.stream_text, engine.answer_texts = stream_text, answer_texts


def numbered_pair(question_type: str) -> dict:
    return {"Question": f"What about {question_type.lower()}?", "Answer": f"An answer about {question_type}.",
            "Correct Option": f"Right {question_type}", "Wrong Options": ["Wrong one", "Wrong two", "Wrong three"]}


def scripted_qa_engine(config):
    """An engine factory (config -> engine) for the runners: the real engine, scripted QA."""
    from llava_video_app.engine import Engine

    engine = Engine.from_config(config)
    script_qa(engine, numbered_pair)
    pause_dir = os.environ.get(PAUSE_DIR_ENV)
    if pause_dir:
        _pause_on_request(engine, Path(pause_dir))
    return engine


def _pause_on_request(engine: Any, folder: Path) -> None:
    load_clip, stream_text = engine.load_clip, engine.stream_text
    current = {"video": ""}

    def load(path, *args, **kwargs):
        current["video"] = Path(path).name
        return load_clip(path, *args, **kwargs)

    def text(question, *args, **kwargs):
        request = folder / "pause-on"
        if (request.exists() and request.read_text().strip() == current["video"]
                and not (folder / "paused").exists()):
            (folder / "paused").write_text(str(os.getpid()))
            time.sleep(PAUSE_SECONDS)
        yield from stream_text(question, *args, **kwargs)

    engine.load_clip, engine.stream_text = load, text
