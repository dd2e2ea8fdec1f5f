"""A shared app is fair (issue 18 item 2, issue 20 item 12), against `python app.py` with its model calls
logged and paced like a GPU's (tests/app_call_log.py), through gradio_client: a video whose read stalls
holds only its own request, and an Ask that arrives while a synthesis runs waits for one synthesis call,
not for the synthesis. Asserted on the order of the logged events (which call started and ended when,
which request was still pending), never on times. The GPU's line itself: tests/test_gpu_queue.py."""

import os
import re
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from app_process import free_port, serving

pytestmark = pytest.mark.slow

NEXT_QUESTION = "Who is next in line?"


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    calls, release = folder / "calls.log", folder / "release"
    calls.touch()
    port = free_port()
    # 20 ms a token: a level-1 description (512 tokens) takes 10 s, far longer than an Ask's upload and read.
    # Reads of a "hold" file block until `release` exists; their deadline is out of this test's reach.
    env = {**os.environ, "LLAVA_TEST_CALL_LOG": str(calls), "LLAVA_TEST_TOKEN_DELAY": "0.02",
           "LLAVA_TEST_HOLD": "hold", "LLAVA_TEST_HOLD_RELEASE": str(release), "LLAVA_TEST_PROBE_DEADLINE": "600",
           "LLAVA_TEST_LOG_TURNS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "LLAVA_VIDEO_OUTPUT_DIR": str(folder / "out")}
    command = [sys.executable, "tests/app_call_log.py", "--model", str(tiny_checkpoint), "--quant", "fp32",
               "--device", "cpu", "--port", str(port), "--frames", "8"]
    url = f"http://127.0.0.1:{port}/"
    with serving(command, url, env=env, log=folder / "app.log"):
        yield url, calls, release


def calls_since(log: Path, start: int) -> list[str]:
    return log.read_text().splitlines()[start:]


def wait_until(log: Path, start: int, holds) -> list[str]:
    """The log's lines since `start` once `holds(lines)` (events of the app), or fail after a generous while."""
    for _ in range(3000):
        lines = calls_since(log, start)
        if holds(lines):
            return lines
        time.sleep(0.1)
    pytest.fail(f"the app's call log never came to that: {calls_since(log, start)}")


def starts(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith("start")]


def most_calls_at_once(lines: list[str]) -> int:
    running = most = 0
    for line in lines:
        running += {"start": 1, "end": -1}.get(line.split()[0], 0)
        most = max(most, running)
    return most


def ask_next(url: str, video: Path) -> str:
    return Client(url, verbose=False).predict(handle_file(str(video)), NEXT_QUESTION, max_new_tokens=3,
                                              api_name="/ask")


def test_a_read_that_stalls_holds_only_its_own_request_the_next_client_is_served_meanwhile(app, sample_video,
                                                                                          tmp_path):
    url, log, release = app
    held_video = tmp_path / "hold.mp4"  # the launcher holds the open of this name until `release` exists
    held_video.write_bytes(sample_video.read_bytes())
    start = len(calls_since(log, 0))
    held = Client(url, verbose=False).submit(handle_file(str(held_video)), "What?", max_new_tokens=3,
                                             api_name="/ask")
    wait_until(log, start, lambda lines: "held hold.mp4" in lines)  # its read is stuck
    assert ask_next(url, sample_video), "another client is answered"
    assert not held.done(), "... while the stalled request is still pending"
    lines = calls_since(log, start)
    assert "released hold.mp4" not in lines and f"end stream {NEXT_QUESTION!r}" in " ".join(lines)
    release.touch()
    assert held.result(timeout=300), "the stalled request is answered once its read goes on"
    lines = calls_since(log, start)
    assert lines.index("released hold.mp4") > lines.index(next(x for x in lines if x.startswith("end stream")))


def test_an_ask_during_a_synthesis_waits_for_one_call_and_never_runs_beside_one(app, sample_video):
    url, log, _ = app
    start = len(calls_since(log, 0))
    synthesis = Client(url, verbose=False).submit(handle_file(str(sample_video)), api_name="/synth")
    first = next(iter(synthesis))  # "step 1/N: level1": the first model call is running
    total_steps = int(re.match(r"step 1/(\d+): level1", first).group(1))
    assert ask_next(url, sample_video), "the visitor's question is answered"
    assert not synthesis.done(), "... before the synthesis ends"
    answered = f"end stream {NEXT_QUESTION!r}"
    # the synthesis goes on after the answer: a call of it starts after the answer's call ended
    lines = wait_until(log, start, lambda lines: any(line.startswith(answered) for line in lines)
                       and starts(lines)[-1] > next(i for i, x in enumerate(lines) if x.startswith(answered)))
    synthesis.cancel()
    joined = lines.index("join an answer")
    asked = next(i for i in starts(lines) if NEXT_QUESTION in lines[i])
    assert [i for i in starts(lines) if joined < i < asked] == [], \
        f"no synthesis call started between the answer joining the GPU's line and its turn: {lines}"
    assert 1 <= len([i for i in starts(lines) if i < asked]) < total_steps, "it went between two synthesis calls"
    lines = wait_until(log, start, lambda lines: len(starts(lines)) == sum(x.startswith("end") for x in lines))
    assert most_calls_at_once(lines) == 1, f"never two model calls at once: {lines}"
