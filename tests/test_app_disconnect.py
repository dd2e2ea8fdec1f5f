"""A client that leaves frees the model for the next one, for every endpoint, /synth included: against
`python app.py` (tests/app_call_log.py: the same app, its model calls logged and paced like a GPU's),
a synthesis is left mid-call by gradio_client's cancel and by a raw SSE reader closing its connection,
and a second client's /ask then runs. Asserted on the model calls' log (which calls ran, in what order,
which the engine's Stop cut short), never on times."""

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from app_process import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

NEXT_QUESTION = "Who is next in line?"


@pytest.fixture(scope="module")
def app(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    calls = folder / "calls.log"
    calls.touch()
    port = free_port()
    # 20 ms a token: a level-1 description (512 tokens) would take 10 s, far longer than a disconnect.
    env = {**os.environ, "LLAVA_TEST_CALL_LOG": str(calls), "LLAVA_TEST_TOKEN_DELAY": "0.02",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "LLAVA_VIDEO_OUTPUT_DIR": str(folder / "out")}
    command = [sys.executable, "tests/app_call_log.py", "--model", str(tiny_checkpoint), "--quant", "fp32",
               "--device", "cpu", "--port", str(port), "--frames", "8"]
    url = f"http://127.0.0.1:{port}/"
    with serving(command, url, env=env, log=folder / "app.log"):
        yield url, calls


def calls_since(log: Path, start: int) -> list[str]:
    return log.read_text().splitlines()[start:]


def check_the_synthesis_was_cut_short(lines: list[str], total_steps: int) -> None:
    """One synthesis call ran (the one running when its client left), the engine's Stop ended it, and
    the next client's /ask started only after it had ended."""
    asked = next(i for i, line in enumerate(lines) if line.startswith("start") and NEXT_QUESTION in line)
    synth = [line for line in lines if NEXT_QUESTION not in line]
    assert [line.split()[0] for line in synth] == ["start", "end"], f"one synthesis call, then none: {lines}"
    assert synth[1].endswith("stopped=True"), f"the call was stopped, not run to its end: {synth[1]}"
    assert int(re.search(r"chunks=(\d+)", synth[1]).group(1)) < 512
    assert lines.index(synth[1]) < asked, "the /ask waited for the stopped call to end (one at a time)"
    assert total_steps > 1, "the synthesis had more calls to make"


def ask_next(url: str, sample_video: Path) -> str:
    other = Client(url, verbose=False)  # another visitor
    return other.predict(handle_file(str(sample_video)), NEXT_QUESTION, max_new_tokens=3, api_name="/ask")


def test_a_cancelled_synth_frees_the_model_for_the_next_client(app, sample_video):
    url, log = app
    start = len(log.read_text().splitlines())
    job = Client(url, verbose=False).submit(handle_file(str(sample_video)), api_name="/synth")
    first = next(iter(job))  # "step 1/N: level1": the first model call is running
    total_steps = int(re.match(r"step 1/(\d+): level1", first).group(1))
    job.cancel()
    assert ask_next(url, sample_video)
    check_the_synthesis_was_cut_short(calls_since(log, start), total_steps)


def test_a_raw_sse_reader_that_leaves_frees_the_model(app, sample_video):
    url, log = app
    start = len(log.read_text().splitlines())
    with httpx.Client(base_url=url + "gradio_api", timeout=60) as http:
        with open(sample_video, "rb") as f:
            path = http.post("/upload", files={"files": (sample_video.name, f, "video/mp4")}).json()[0]
        data = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
        event_id = http.post("/call/synth", json=data).json()["event_id"]
        with http.stream("GET", f"/call/synth/{event_id}") as events:
            lines = events.iter_lines()
            while next(lines) != "event: generating":
                pass
            first = json.loads(next(lines).removeprefix("data: "))[0]
        # leaving the `with` closed the connection, as a browser tab or a script that dies does
    total_steps = int(re.match(r"step 1/(\d+): level1", first).group(1))
    assert ask_next(url, sample_video)
    check_the_synthesis_was_cut_short(calls_since(log, start), total_steps)
