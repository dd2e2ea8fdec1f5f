"""The Batch tab's handlers (web/batch_tab.py) over the tiny model: a row per video and question with
the answer's provenance, a bad video a row with its message (the batch goes on), the JSON Lines and
CSV downloads, Stop keeping the rows so far, bad input one message, and /batch's function."""

import csv
import hashlib
import json
import shutil

import pytest

from llava_video_app.batch_ask import asked_settings, record_id
from llava_video_app.prompts import question_type
from llava_video_app.request import check_request
from llava_video_app.web.batch_tab import COLUMNS, BatchPanel


@pytest.fixture
def videos(tmp_path, sample_video):
    a, b, broken = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "holiday.mp4"
    shutil.copy(sample_video, a)
    shutil.copy(sample_video, b)
    broken.write_text("not a video at all\n" * 20)
    return a, broken, b


def run_all(panel, *args):
    return list(panel.run(*args))


def test_a_row_per_video_and_question_a_bad_video_gets_its_message_and_both_downloads(tiny_engine, videos):
    a, broken, b = videos
    panel = BatchPanel(tiny_engine)
    steps = run_all(panel, [str(a), str(broken), str(b)], "What happens?", ["Camera Direction"], 8, 4, 5)
    progress, table, files = steps[-1]
    assert progress == "Done: 4 answered, 2 not (see the note)."
    camera = question_type("Camera Direction").preset
    assert [row[:2] for row in table] == [["a.mp4", "What happens?"], ["a.mp4", camera],
                                          ["holiday.mp4", "What happens?"], ["holiday.mp4", camera],
                                          ["b.mp4", "What happens?"], ["b.mp4", camera]]
    bad = [row for row in table if row[0] == "holiday.mp4"]
    assert all(row[2] == "" and row[3].startswith("not answered: ") and "holiday.mp4" in row[3] for row in bad)
    assert str(broken.parent) not in bad[0][3], "the server's folder is not shown"
    good = [row for row in table if row[0] != "holiday.mp4"]
    assert all(row[2] and row[3] == "" and row[4] == 8 and row[5] == 5 and row[6] > 0 for row in good)
    assert table[0][2] == table[4][2], "the same bytes, question, seed and settings: the same answer"
    assert [len(step[1]) for step in steps[1:]] == [1, 2, 3, 4, 5, 6, 6], "a row as each job ends"

    jsonl, table_csv = files
    records = [json.loads(line) for line in open(jsonl, encoding="utf-8")]
    assert len(records) == 6 and records[2] == {"video": "holiday.mp4", "question": "What happens?",
                                                "error": bad[0][3].removeprefix("not answered: ")}
    first = records[0]
    request = check_request(tiny_engine.config, frames=8, max_new_tokens=4, seed=5)
    asked = asked_settings(request, tiny_engine.model_id, tiny_engine.quant)
    assert first["id"] == record_id("a.mp4", "What happens?", asked), "the id `llava-video ask --jsonl` gives it"
    sha = hashlib.sha256(a.read_bytes()).hexdigest()
    assert first["provenance"]["video"]["sha256"] == sha and first["provenance"]["seed"] == 5
    with open(table_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS and len(rows) == 7
    assert rows[1][:3] == ["a.mp4", "What happens?", first["answer"]] and rows[1][-1] == sha


def test_stop_ends_the_batch_and_keeps_the_rows_so_far(tiny_engine, videos):
    a, _, b = videos
    panel = BatchPanel(tiny_engine)
    steps = panel.run([str(a), str(b), str(a)], "What happens?", [], 8, 4, 1)
    assert next(steps)[0] == "0/3: answering…"
    progress, table, files = next(steps)
    assert progress == "1/3: a.mp4 answered." and len(table) == 1
    panel.sessions.get(None).stop.set()  # Stop pressed while the first row shows
    progress, table, files = list(steps)[-1]
    assert progress == "Stopped after 1 of 3." and len(table) == 1
    assert len(open(files[0], encoding="utf-8").readlines()) == 1, "what was answered stays downloadable"
    assert not panel.sessions.get(None).stop.is_set(), "the next batch starts unstopped"


@pytest.mark.parametrize("videos_given, question, types, frames, message", [
    (False, "What?", [], 8, "Upload one or more videos first."),
    (True, "   ", [], 8, "Type a question, or tick at least one question type."),
    (True, "What?", ["Astrology"], 8, "unknown question type"),
    (True, "What?", [], 10_000, "frames"),
])
def test_bad_input_is_one_message_in_the_progress_line(tiny_engine, videos, videos_given, question, types, frames,
                                                        message):
    panel = BatchPanel(tiny_engine)
    steps = run_all(panel, [str(videos[0])] if videos_given else [], question, types, frames, 4, None)
    assert len(steps) == 1 and message in steps[0][0]
    assert steps[0][1] is not None and not isinstance(steps[0][1], list), "the table is left as it is (skip)"


def test_the_api_streams_the_records_so_far_as_json_lines(tiny_engine, videos):
    a, broken, _ = videos
    panel = BatchPanel(tiny_engine)
    updates = list(panel.api_batch([str(a), str(broken)], "What happens?", [], 8, 3, 2))
    assert [len(u.splitlines()) for u in updates] == [1, 2, 2]
    records = [json.loads(line) for line in updates[-1].splitlines()]
    assert records[0]["answer"] and records[0]["provenance"]["seed"] == 2
    assert records[1]["video"] == "holiday.mp4" and "error" in records[1]


def test_build_ui_wires_the_tab_and_the_batch_endpoint_into_the_one_model_queue(tiny_engine):
    from llava_video_app.web.app import build_ui
    from llava_video_app.web.batch_tab import batch_tab
    from llava_video_app.web.serving import MODEL_EVENT_WORKERS, MODEL_EVENTS

    demo = build_ui(tiny_engine, extra_tabs=[batch_tab])
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    # the answering events' workers; the model itself runs one call at a time, in turns (gpu_queue)
    assert fns["batch"].concurrency_id == MODEL_EVENTS and fns["batch"].concurrency_limit == MODEL_EVENT_WORKERS
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == MODEL_EVENTS]
    assert len(model_events) == 11  # ask, regenerate, edit, Compare, the five endpoints, Run, /batch
    api = demo.get_api_info()["named_endpoints"]
    assert set(api) == {"/caption", "/ask", "/ask_type", "/ask_record", "/compare", "/batch"}, "Run and Stop private"
    assert [p["parameter_name"] for p in api["/batch"]["parameters"]] == ["videos", "question", "types", "frames",
                                                                          "max_new_tokens", "seed"]
    run = next(fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "run")
    assert any(fn.cancels and run._id in fn.cancels for fn in demo.fns.values()), "Stop cancels Run"
