"""`python app.py` with every model call logged, for tests that check which calls a running app made:
each call of Engine.stream / stream_text / answer_texts writes "start" and "end" lines (its question,
the chunks it made, whether the engine's Stop ended it, whether the video came from the cache and how
many prompt tokens were reused) to $LLAVA_TEST_CALL_LOG, and waits
$LLAVA_TEST_TOKEN_DELAY s per chunk, as a GPU would per token (the tiny model is much faster), so that
a test can act while a call runs. $LLAVA_TEST_STALL: files whose name contains it block in their open
for good (as on a stalled disk; tests/test_video_deadline.py's injection), with the header-read deadline
set to $LLAVA_TEST_PROBE_DEADLINE s. $LLAVA_TEST_HOLD: files whose name contains it block in their open
until the file $LLAVA_TEST_HOLD_RELEASE exists (a read that stalls until the test lets it go).
Run as `python tests/app_call_log.py <app.py's flags>`."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llava_video_app.cli import app_main  # noqa: E402
from llava_video_app.engine import Engine  # noqa: E402

LOG = os.environ["LLAVA_TEST_CALL_LOG"]
DELAY = float(os.environ.get("LLAVA_TEST_TOKEN_DELAY", "0"))


def _log(line: str) -> None:
    with open(LOG, "a") as out:
        out.write(line + "\n")


def _logged(name: str, question_at: int):
    original = getattr(Engine, name)

    @functools.wraps(original)
    def call(self, *args, **kwargs):
        question = args[question_at] if len(args) > question_at else kwargs.get("question", kwargs.get("questions"))
        label = repr(question if isinstance(question, str) else f"{len(question)} questions")[:60]
        _log(f"start {name} {label}")
        chunks = 0
        try:
            for chunk in original(self, *args, **kwargs):
                chunks += 1
                yield chunk
                time.sleep(DELAY)
        finally:
            stats = self.last_stats
            _log(f"end {name} {label} chunks={chunks} stopped={getattr(stats, 'stopped', None)} "
                 f"cached={getattr(stats, 'video_cached', None)} reused={getattr(stats, 'reused_tokens', None)}")

    setattr(Engine, name, call)


STALL = os.environ.get("LLAVA_TEST_STALL")  # files whose name contains this never finish opening
HOLD = os.environ.get("LLAVA_TEST_HOLD")  # files whose name contains this open once HOLD_RELEASE exists
if STALL or HOLD:
    from llava_video_app.video import deadline, probe
    from llava_video_app.video.admission import open_container

    def _stalling_open(admitted):
        if STALL and STALL in admitted.path:  # a stalled disk or mount: the read never returns
            _log(f"stalled {Path(admitted.path).name}")
            threading.Event().wait()
        if HOLD and HOLD in admitted.path:
            _log(f"held {Path(admitted.path).name}")
            while not os.path.exists(os.environ["LLAVA_TEST_HOLD_RELEASE"]):
                time.sleep(0.05)
            _log(f"released {Path(admitted.path).name}")
        return open_container(admitted)

    probe.open_container = _stalling_open
    deadline.PROBE_DEADLINE_S = float(os.environ.get("LLAVA_TEST_PROBE_DEADLINE", deadline.PROBE_DEADLINE_S))

if os.environ.get("LLAVA_TEST_LOG_TURNS"):  # also log each answer joining the GPU's line ("join an answer")
    from llava_video_app.gpu_queue import GpuQueue

    _join = GpuQueue.join

    def _logged_join(self, label):
        ticket = _join(self, label)
        if label != "a synthesis call":
            _log(f"join {label}")
        return ticket

    GpuQueue.join = _logged_join

_logged("stream", 1)  # stream(video, question, ...)
_logged("stream_text", 0)  # stream_text(question, ...)
_logged("answer_texts", 0)  # answer_texts(questions, ...)

if __name__ == "__main__":
    app_main()
