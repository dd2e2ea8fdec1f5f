"""An engine stand-in for eval runs (importable by module path, so that a CLI subprocess or a Ray
actor can build it): real frames, and an answer chosen by a rule from the question text, so that
the runner, the parsers and the statistics can be checked against known letters.

    reply(question)          "(B) ..." when the question holds "second", "A." for "first", ...;
                             otherwise "B"; and "I cannot tell." when it holds "garbage"
    scripted_eval_engine     config -> the stand-in (engine factory for --engine-factory / Ray)

A run is paused on purpose, to be killed mid-run: when $LLAVA_VIDEO_TEST_PAUSE_DIR holds a file
`pause-after` with a number N, the stand-in writes `paused` (its pid) there after its N-th answer
and sleeps until killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from llava_video_app.config import AppConfig

PAUSE_DIR_ENV = "LLAVA_VIDEO_TEST_PAUSE_DIR"


def reply(question: str) -> str:
    if "garbage" in question:
        return "I cannot tell."
    return "The answer is B."


class ScriptedEvalEngine:
    model_id, quant = "scripted-eval-model", "none"

    def __init__(self, config: AppConfig | None = None, answer=reply):
        self.config = config or AppConfig(frames=4)
        self.answer = answer
        self.questions: list[str] = []
        self.last_stats = None

    def load_clip(self, path, *, frames=None, **kwargs):
        from llava_video_app.video import load_video

        return load_video(path, num_frames=frames or self.config.frames, size=(28, 28))

    def ask(self, video, question, history=(), *, settings=None, stop=None):
        self.questions.append(question)
        text = self.answer(question)
        pause_dir = os.environ.get(PAUSE_DIR_ENV)
        if pause_dir and (Path(pause_dir) / "pause-after").exists():
            after = int((Path(pause_dir) / "pause-after").read_text())
            if len(self.questions) > after:  # the previous answers are on disk; this one never will be
                (Path(pause_dir) / "paused").write_text(str(os.getpid()))
                time.sleep(120)
        return text


def scripted_eval_engine(config: AppConfig) -> ScriptedEvalEngine:
    return ScriptedEvalEngine(config)
