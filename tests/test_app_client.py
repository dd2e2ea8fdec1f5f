"""The app as people run it: `python app.py` in a subprocess on a free local port, with the tiny
checkpoint, driven over HTTP by gradio_client (upload, streamed answers, question types, bad input,
the upload limit, requests past the answering workers waiting in Gradio's queue with their place)."""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status

from app_process import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url(tiny_checkpoint, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "LLAVA_VIDEO_MAX_NEW_TOKENS": "12", "LLAVA_VIDEO_MAX_UPLOAD_MB": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "app.py", "--model", str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu",
               "--port", str(port), "--frames", "8"]
    url = f"http://127.0.0.1:{port}/"
    with serving(command, url, env=env, log=log):
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_named_endpoints_take_the_video_first(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/caption", "/ask", "/ask_type", "/ask_record", "/batch"} <= set(api)
    ask = [p["parameter_name"] for p in api["/ask"]["parameters"]]
    assert ask[:2] == ["video", "question"]
    assert ask[2:] == ["frames", "start", "end", "max_new_tokens", "temperature", "top_p", "seed"]
    assert [p["parameter_name"] for p in api["/ask_record"]["parameters"]] == ask
    assert all(p["parameter_has_default"] for p in api["/ask"]["parameters"][2:])
    assert [p["parameter_name"] for p in api["/caption"]["parameters"]][0] == "video"


def test_ask_streams_a_growing_answer(client, sample_video):
    job = client.submit(handle_file(str(sample_video)), "What happens in the video?", api_name="/ask")
    received = list(job)  # each item is the answer so far, as it streams
    assert job.status().success
    # How many updates arrive depends on the machine's load (chunks made while the server is busy come
    # joined), so only their order is asserted here; one update per chunk is test_web_ask.py's, paced.
    assert received and all(b.startswith(a) for a, b in zip(received, received[1:]))
    assert received[-1] == job.outputs()[-1]


def test_a_question_type_task_and_a_trimmed_caption(client, sample_video):
    answer = client.predict(handle_file(str(sample_video)), "Camera Direction", api_name="/ask_type")
    assert isinstance(answer, str) and answer
    caption = client.predict(handle_file(str(sample_video)), frames=8, start=1.0, end=3.0, max_new_tokens=4,
                             api_name="/caption")
    assert isinstance(caption, str) and caption, "the trimmed clip is captioned"


def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, sample_video, tmp_path):
    not_video = tmp_path / "holiday.mp4"
    not_video.write_bytes(b"this is a text file with a video's name" * 10)
    with pytest.raises(AppError, match="holiday.mp4 is a text file, not a video file"):
        client.predict(handle_file(str(not_video)), "What?", api_name="/ask")
    with pytest.raises(AppError, match="past the end"):
        client.predict(handle_file(str(sample_video)), "What?", start=2.0, end=99.0, api_name="/ask")
    with pytest.raises(AppError, match="unknown question type"):
        client.predict(handle_file(str(sample_video)), "Astrology", api_name="/ask_type")
    assert client.predict(handle_file(str(sample_video)), "Still there?", max_new_tokens=3, api_name="/ask")


def test_uploads_over_the_size_limit_are_refused(client, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(1_500_000))  # the app runs with LLAVA_VIDEO_MAX_UPLOAD_MB=1
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(str(big)), "What?", api_name="/ask")


def test_requests_past_the_answering_workers_see_their_place_and_all_are_answered(client, sample_video):
    """MODEL_EVENT_WORKERS answering requests run at once (they read their videos, then take the GPU in
    turns: tests/test_gpu_queue.py, tests/test_app_fair.py); the ones past them wait in Gradio's queue."""
    from llava_video_app.web.serving import MODEL_EVENT_WORKERS

    video = handle_file(str(sample_video))
    jobs = [client.submit(video, f"Describe everything, take {i}.", max_new_tokens=60, api_name="/ask")
            for i in range(MODEL_EVENT_WORKERS + 3)]
    running_states = (Status.PROCESSING, Status.ITERATING)
    waited_with_rank = False
    deadline = time.monotonic() + 90
    while not all(job.done() for job in jobs) and time.monotonic() < deadline:
        # (the client's view of "running" lags a little, so overlap is not asserted here; the
        # concurrency group itself is checked in test_web_app.py)
        statuses = [job.status() for job in jobs]
        running = any(s.code in running_states for s in statuses)
        if running and any(s.code == Status.IN_QUEUE and s.rank is not None for s in statuses):
            waited_with_rank = True
        time.sleep(0.01)
    assert waited_with_rank, "requests wait in the queue, with their place, while the workers run"
    answers = [job.result(timeout=60) for job in jobs]
    assert all(isinstance(a, str) and a for a in answers), "every queued request gets its answer"


def test_ask_record_returns_the_answer_with_its_provenance_and_a_seed_repeats_it(client, sample_video):
    video = handle_file(str(sample_video))
    record = json.loads(client.predict(video, "What happens?", temperature=1.5, seed=21, end=4,
                                       api_name="/ask_record"))
    assert record["schema"] == "llava-video/conversations/1"
    (conversation,) = record["conversations"]
    (turn,) = conversation["turns"]
    provenance = turn["provenance"]
    assert provenance["seed"] == 21 and provenance["trim"] == {"start": None, "end": 4.0}
    assert provenance["video"]["sha256"] == hashlib.sha256(sample_video.read_bytes()).hexdigest()
    assert provenance["settings"]["temperature"] == 1.5 and provenance["settings"]["frames"] == 8
    assert provenance["visual_tokens"] > 0 and provenance["timings"]["time_to_first_token"] > 0
    streamed = client.predict(video, "What happens?", temperature=1.5, seed=21, end=4, api_name="/ask")
    assert streamed == turn["answer"] and streamed, "the same seed and settings give the same answer"
    with pytest.raises(AppError, match="seed must be a whole number"):
        client.predict(video, "What happens?", seed=-1, api_name="/ask")


def test_compare_answers_each_variant_with_its_provenance_and_the_differences(client, sample_video):
    video = handle_file(str(sample_video))
    result = json.loads(client.predict(video, "What happens?", "as asked | frames=4\ntemperature=1.5, seed=9",
                                       api_name="/compare"))
    assert result["schema"] == "llava-video/comparison/1" and result["question"] == "What happens?"
    assert [a["variant"] for a in result["answers"]] == ["as asked", "frames=4", "temperature=1.5, seed=9"]
    assert all(a["answer"] and a["error"] is None for a in result["answers"])
    assert result["differences"]["frames"] == [8, 4, 8]
    assert result["differences"]["temperature"] == [0.0, 0.0, 1.5]
    frames = [a["provenance"]["settings"]["frames"] for a in result["answers"]]
    assert frames == [8, 4, 8]
    assert result["answers"][2]["reused"]["frames"], "the third variant's clip is the first one's"
    again = json.loads(client.predict(video, "What happens?", "temperature=1.5, seed=9", api_name="/compare"))
    assert again["answers"][0]["answer"] == result["answers"][2]["answer"], "the same seed, the same answer"
    with pytest.raises(AppError, match="pool must be one of"):
        client.predict(video, "What happens?", "pool=median", api_name="/compare")


def test_batch_answers_every_video_and_a_bad_one_gets_its_message(client, sample_video, tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_bytes(b"a text file with a video's name" * 10)
    video = handle_file(str(sample_video))
    job = client.submit([video, handle_file(str(not_video))], "What happens?", ["Camera Direction"], 8, 4, 9,
                        api_name="/batch")
    updates = list(job)  # the records so far, as JSON Lines, after each answer
    assert job.status().success and [len(u.splitlines()) for u in updates][-1] == 4
    records = [json.loads(line) for line in job.outputs()[-1].splitlines()]
    assert [(r["video"], "error" in r) for r in records] == [("square.mp4", False), ("square.mp4", False),
                                                             ("notes.mp4", True), ("notes.mp4", True)]
    assert records[0]["question"] == "What happens?" and records[0]["answer"]
    assert records[0]["provenance"]["seed"] == 9 and records[0]["provenance"]["settings"]["frames"] == 8
    assert records[0]["provenance"]["video"]["sha256"] == hashlib.sha256(sample_video.read_bytes()).hexdigest()
    assert "is a text file, not a video file" in records[2]["error"]
    with pytest.raises(AppError, match="Type a question, or tick at least one question type"):
        client.predict([video], "", [], api_name="/batch")
