"""A shared app, visited by several clients at once, against `python app.py` (tests/app_call_log.py: the
same app, its model calls logged and paced like a GPU's). Asserted on the model calls' log (which calls
ran, in what order, which the engine's Stop cut short, what came from a cache), never on times.

- A client that leaves frees the model for the next one, /synth included: a synthesis is left mid-call
  by gradio_client's cancel and by a raw SSE reader closing its connection; a second client's /ask runs.
- Two visitors asking about the same video share no cache hit, and one's Clear leaves the other's cache.
- A video whose read stalls is refused at the header-read deadline, and the app serves the next client."""

import json
import os
import re
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

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
           "LLAVA_TEST_STALL": "stall", "LLAVA_TEST_PROBE_DEADLINE": "3",
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
    assert "stopped=True" in synth[1].split(), f"the call was stopped, not run to its end: {synth[1]}"
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


def last_call(log: Path, question: str) -> dict[str, str]:
    """The key=value fields of the last "end" line of a call about `question`."""
    line = [line for line in log.read_text().splitlines() if line.startswith("end") and question in line][-1]
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


def clear_as_the_page_does(url: str, session_hash: str) -> None:
    """Press "Clear / new video" in the browser session `session_hash`: the page's own request (the event
    is not an API endpoint, so gradio_client cannot send it), joined to the queue and read to its end."""
    with httpx.Client(base_url=url + "gradio_api", timeout=60) as http:
        config = http.get(url + "config").json()
        button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "clear")
        event = next(d for d in config["dependencies"] if [button, "click"] in d["targets"])
        fn_index, inputs = event["id"], [None] * len(event["inputs"])  # a State input: the session's own value
        http.post("/queue/join", json={"data": inputs, "fn_index": fn_index, "session_hash": session_hash,
                                       "trigger_id": button, "event_data": None}).raise_for_status()
        with http.stream("GET", "/queue/data", params={"session_hash": session_hash}) as events:
            for line in events.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:]).get("msg") == "process_completed":
                    assert json.loads(line[6:])["success"], line
                    return


def upload(http: httpx.Client, video: Path) -> dict:
    with open(video, "rb") as f:
        path = http.post("/upload", files={"files": (video.name, f, "video/mp4")}).json()[0]
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def ask_as(http: httpx.Client, session_hash: str, video: dict, question: str) -> str:
    """/ask from the browser session `session_hash`, about an uploaded file, read to its end."""
    body = {"data": [video, question, 8, 0, None, 3, 0, 1, 0], "session_hash": session_hash}
    event_id = http.post("/call/ask", json=body).json()["event_id"]
    with http.stream("GET", f"/call/ask/{event_id}") as events:
        lines = list(events.iter_lines())
    assert "event: complete" in lines, lines
    return json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))[0]


def test_two_visitors_share_no_cache_hit_and_a_clear_touches_only_its_own(app, sample_video):
    """Both visitors name the same uploaded file (the worst case: same path, same bytes, same time), each
    from a browser session of its own, as the page and the HTTP API do (gradio_client uploads the file
    anew for every call, which alone would miss every cache)."""
    url, log = app
    question = "What colour is the sky in this one?"
    with httpx.Client(base_url=url + "gradio_api", timeout=60) as http:
        video = upload(http, sample_video)

        def ask(visitor: str) -> dict[str, str]:
            assert ask_as(http, visitor, video, question)
            return last_call(log, question)

        first = ask("alice")
        assert first["cached"] == "False"
        again = ask("alice")
        assert again["cached"] == "True" and int(again["reused"]) > 0, "alice's repeat hits alice's own caches"
        bob = ask("bob")
        assert bob["cached"] == "False" and bob["reused"] == "0", "bob's same video and question: no hit on alice's"
        assert ask("bob")["cached"] == "True", "bob's repeat hits bob's own caches"
        clear_as_the_page_does(url, "bob")
        assert ask("alice")["cached"] == "True", "bob's Clear left alice's caches"
        assert ask("bob")["cached"] == "False", "bob's Clear emptied bob's caches"


def test_a_stalled_read_is_refused_at_its_deadline_and_the_next_client_is_served(app, sample_video, tmp_path):
    url, log = app
    stalled = tmp_path / "stall.mp4"  # the app's launcher makes the open of this name block for good
    stalled.write_bytes(sample_video.read_bytes())
    start = len(log.read_text().splitlines())
    attacker, visitor = Client(url, verbose=False), Client(url, verbose=False)
    held = attacker.submit(handle_file(str(stalled)), "What?", max_new_tokens=3, api_name="/ask")
    for _ in range(600):  # until the read is stuck (an event in the log)
        if "stalled stall.mp4" in calls_since(log, start):
            break
        time.sleep(0.1)
    served = visitor.submit(handle_file(str(sample_video)), NEXT_QUESTION, max_new_tokens=3, api_name="/ask")
    assert served.result(timeout=120), "the other client is answered"
    with pytest.raises(AppError, match=r"stall\.mp4 could not be read within 3 s"):
        held.result(timeout=120)
    lines = calls_since(log, start)
    # the read stalled first; the next client's model call ran all the same (that read stays stuck; it is read
    # outside the GPU's line: tests/test_app_fair.py shows the next client served while it is pending)
    assert lines[0] == "stalled stall.mp4" and f"end stream {NEXT_QUESTION!r}" in " ".join(lines)
