"""Records and files (dataset.py): the schema check, safe appends (SIGKILLed writers, concurrent
writers), torn lines, stats, export, and the `dataset` CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from llava_video_app import dataset as ds

CLI = [sys.executable, "-m", "llava_video_app.cli"]
ROOT = Path(__file__).resolve().parents[1]


def record(rid, task="oe", duration=20.0, source="test", **extra):
    human = "What happens?"
    gpt = "A square moves."
    if task == "mc":
        human = ds.mc_human_turn("What moves?", ["A square", "A circle", "A dog"])
        gpt = "A."
    return ds.make_record(rid, "clips/a.mp4", source, human, gpt, task=task, question_type="Temporal",
                          video_duration=duration, **extra)


# --- names and schema --------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds,bucket", [(0, "0_30_s"), (29.9, "0_30_s"), (30, "30_60_s"), (75, "1_2_m"),
                                            (150, "2_3_m"), (180, "over_3_m"), (3600, "over_3_m")])
def test_length_buckets(seconds, bucket):
    assert ds.length_bucket(seconds) == bucket


def test_split_file_names_follow_llava_video_178k():
    assert ds.split_filename("cap", "0_30_s", "My Videos") == "0_30_s_my_videos_cap_processed.jsonl"
    assert ds.split_filename("oe", "1_2_m", "yt", ".json") == "1_2_m_yt_oe_qa_processed.json"
    assert ds.split_filename("mc", "2_3_m", "yt") == "2_3_m_yt_mc_qa_processed.jsonl"
    # ours and the public dataset's own names are both recognised
    for name, task in [("0_30_s_yt_cap_processed.jsonl", "cap"), ("0_30_s_academic_oe_v0_1_qa_processed.json", "oe"),
                       ("2_3_m_academic_mc_v0_1_qa_processed.json", "mc"), ("0_30_s_academic_v0_1_cap_processed.json",
                                                                            "cap"), ("notes.json", None)]:
        assert ds.task_of_filename(name) == task


def test_valid_records():
    assert ds.validate_record(record("a")) == []
    assert ds.validate_record(record("b", task="mc"), "mc") == []
    multi = record("c")
    multi["conversations"] += [{"from": "human", "value": "And then?"}, {"from": "gpt", "value": "It stops."}]
    assert ds.validate_record(multi) == []


@pytest.mark.parametrize("change,message", [
    (lambda r: r.pop("id"), "'id' must be a non-empty string"),
    (lambda r: r.update(video="/abs/a.mp4"), "relative to the video root"),
    (lambda r: r.update(video="../a.mp4"), "relative to the video root"),
    (lambda r: r.update(data_source=""), "'data_source'"),
    (lambda r: r.update(conversations=[]), "at least 2 turns"),
    (lambda r: r["conversations"][0].update(value="What happens?"), "must start with '<image>\\n'"),
    (lambda r: r["conversations"][0].update(value="<image>What happens?"), "must start with '<image>\\n'"),
    (lambda r: r["conversations"][1].update(value="<image>\nA square."), "exactly once"),
    (lambda r: r["conversations"][1].update({"from": "human"}), "turn 1 must be from 'gpt'"),
    (lambda r: r["conversations"][1].update(value="  "), "turn 1 has an empty value"),
    (lambda r: r["conversations"].pop(), "at least 2 turns"),
    (lambda r: r["conversations"][1].update(extra=1), "exactly 'from' and 'value'"),
])
def test_invalid_records_say_why(change, message):
    r = record("x")
    change(r)
    errors = ds.validate_record(r)
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize("answer,message", [("D.", "not one of the options"), ("The square", "a letter like"),
                                            ("A. A square", "a letter like")])
def test_multiple_choice_answers_are_checked(answer, message):
    r = record("m", task="mc")
    r["conversations"][1]["value"] = answer
    assert any(message in e for e in ds.validate_record(r, "mc"))
    r = record("n", task="mc")
    r["conversations"][0]["value"] = "<image>\nWhat?\nA. x\nB. y\nPlease respond with only the letter."
    assert any("3 to 5" in e for e in ds.validate_record(r, "mc"))


# --- the store ------------------------------------------------------------------------------------------

def test_append_dedupes_on_id_also_across_store_objects(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    a, b = ds.JsonlStore(path), ds.JsonlStore(path)
    assert a.append([record("1"), record("2"), record("1")]) == ["1", "2"]
    assert b.append([record("2"), record("3")]) == ["3"]  # b reads what a wrote
    assert a.append([record("3"), record("4")]) == ["4"]  # a catches up incrementally
    result = ds.read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "2", "3", "4"] and not result.errors
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())  # locks live in .locks/


def test_torn_last_line_is_ignored_and_repaired_by_the_next_append(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    ds.JsonlStore(path).append([record("1")])
    with open(path, "ab") as f:
        f.write(json.dumps(record("2")).encode()[:40])  # a writer died mid-line
    result = ds.read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1"] and result.torn_tail and not result.errors
    assert ds.JsonlStore(path).append([record("3")]) == ["3"]
    result = ds.read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "3"] and not result.torn_tail


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    path.write_text(json.dumps(record("1")) + "\n" + json.dumps(record("2")))
    assert ds.JsonlStore(path).append([record("2"), record("3")]) == ["3"]
    assert [r["id"] for r in ds.read_jsonl(path).records] == ["1", "2", "3"]


def test_bad_middle_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    path.write_text(json.dumps(record("1")) + "\n{not json\n[1, 2]\n" + json.dumps(record("2")) + "\n")
    result = ds.read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "2"]
    assert [(e.line, e.message.split(" (")[0]) for e in result.errors] == [
        (2, "not valid JSON"), (3, "a record must be a JSON object, not list")]


def test_replace_upserts_and_removes(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    store = ds.JsonlStore(path)
    store.append([record("1"), record("2"), record("3")])
    edited = record("2")
    edited["conversations"][1]["value"] = "Edited."
    store.replace([edited, record("4")], remove_ids=["3"])
    records = ds.read_jsonl(path).records
    assert [r["id"] for r in records] == ["1", "2", "4"] and records[1]["conversations"][1]["value"] == "Edited."
    assert store.append([record("4"), record("5")]) == ["5"]  # the id cache follows the rewrite


WRITER = textwrap.dedent("""
    import random, sys
    from llava_video_app.dataset import JsonlStore, make_record
    path, prefix, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    store = JsonlStore(path, fsync=False)
    i = 0
    while count < 0 or i < count:
        batch = []
        for _ in range(rng.randint(1, 4)):
            rid = f"shared-{i}" if prefix == "shared" else f"{prefix}-{i}"
            pad = "x" * rng.choice([10, 2000, 300000])  # big lines make a kill mid-write likely
            batch.append(make_record(rid, "a.mp4", "t", "What?", "That.", task="oe", pad=pad))
            i += 1
        written = store.append(batch)
        print(" ".join(written) or "-", flush=True)
    print("END", flush=True)
""")


def start_writer(path, prefix, seed, count=-1):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix, str(seed), str(count)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def collect(proc, acknowledged):
    for line in proc.stdout:
        acknowledged.update(x for x in line.split() if x not in ("-", "END"))


@pytest.mark.slow
def test_sigkilled_writers_never_leave_a_broken_file_or_lose_an_acknowledged_record(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    acknowledged: set[str] = set()
    rng = random.Random(1234)
    torn = 0
    for round_ in range(6):
        proc = start_writer(path, f"r{round_}", round_)
        reader = threading.Thread(target=collect, args=(proc, acknowledged))
        reader.start()
        time.sleep(rng.uniform(0.2, 0.5))  # python start-up is ~0.1 s: kill it while appending
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        result = ds.read_jsonl(path)
        assert not result.errors, result.errors[:3]  # every complete line is a record
        torn += result.torn_tail
        ids = [r["id"] for r in result.records]
        assert len(ids) == len(set(ids))
        missing = acknowledged - set(ids)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
    assert len(acknowledged) > 8  # the writers did get going
    print(f"{len(acknowledged)} records acknowledged, {torn} torn last lines seen after a kill")
    ds.JsonlStore(path).append([record("final")])  # repairs a torn tail if the last kill left one
    result = ds.read_jsonl(path)
    assert not result.errors and not result.torn_tail
    assert acknowledged | {"final"} <= {r["id"] for r in result.records}


@pytest.mark.slow
def test_two_concurrent_writers_lose_nothing_and_duplicate_nothing(tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    acknowledged = [set(), set()]
    procs = [start_writer(path, "shared", 7, 200), start_writer(path, "shared", 8, 200),
             start_writer(path, "own", 9, 100)]
    readers = [threading.Thread(target=collect, args=(p, acknowledged[min(i, 1)])) for i, p in enumerate(procs)]
    for t in readers:
        t.start()
    for p in procs:
        assert p.wait(timeout=120) == 0
    for t in readers:
        t.join()
    result = ds.read_jsonl(path)
    ids = [r["id"] for r in result.records]
    assert not result.errors and not result.torn_tail
    assert len(ids) == len(set(ids))  # both "shared" writers tried every shared id: each is there once
    assert {i for i in ids if i.startswith("shared-")} >= {f"shared-{i}" for i in range(200)}
    assert {f"own-{i}" for i in range(100)} <= set(ids)
    assert acknowledged[0] | acknowledged[1] <= set(ids)


# --- folders: stats, check, export -------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "out"
    ds.append_records(out, [record("c1", task="cap", duration=12), record("o1", duration=12),
                            record("o2", duration=45), record("m1", task="mc", duration=100),
                            record("o3", duration=500, source="other")])
    return out


def test_append_records_routes_to_split_files(folder):
    assert sorted(p.name for p in ds.split_files(folder)) == [
        "0_30_s_test_cap_processed.jsonl", "0_30_s_test_oe_qa_processed.jsonl", "1_2_m_test_mc_qa_processed.jsonl",
        "30_60_s_test_oe_qa_processed.jsonl", "over_3_m_other_oe_qa_processed.jsonl"]


def test_stats_per_split_type_and_length(folder):
    stats = ds.dataset_stats(folder).to_dict()
    assert stats["records"] == 5 and stats["by_task"] == {"cap": 1, "oe": 3, "mc": 1}
    assert stats["by_length"] == {"0-30s": 2, "30-60s": 1, "1-2min": 1, "2-3min": 0, "longer": 1}
    assert stats["by_question_type"] == {"Temporal": 5}


def test_check_passes_then_reports_each_bad_line(folder):
    assert ds.check_dataset(folder) == (5, [])
    bad = folder / "0_30_s_test_oe_qa_processed.jsonl"
    broken = record("o2")  # same id as in another file
    broken["conversations"][0]["value"] = "no image tag"
    with open(bad, "a") as f:
        f.write("{oops\n" + json.dumps(broken) + "\n")
    checked, errors = ds.check_dataset(folder)
    text = [str(e) for e in errors]
    assert checked == 6
    assert any(t.endswith(":2: not valid JSON (Expecting property name enclosed in double quotes at column 2)")
               for t in text), text
    assert any(":3: the first human turn must start with" in t for t in text)
    assert any("30_60_s_test_oe_qa_processed.jsonl:1: id 'o2' already used at 0_30_s_test_oe_qa_processed.jsonl:3"
               in t for t in text), text


def test_export_json_arrays_and_zip(folder, tmp_path):
    import zipfile

    paths = ds.export_json(folder)
    assert len(paths) == 5
    for p in paths:
        assert isinstance(json.loads(p.read_text()), list)
    assert ds.check_dataset(folder) == (5, [])  # an export next to its .jsonl is not counted twice
    z = ds.export_zip(folder, tmp_path / "run.zip")
    assert sorted(zipfile.ZipFile(z).namelist()) == sorted(p.name for p in paths)


def test_write_json_atomic_leaves_no_temporary_files(tmp_path):
    ds.write_json_atomic(tmp_path / "a.json", {"x": 1})
    ds.write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_public_format_json_arrays_are_read(tmp_path):
    path = tmp_path / "0_30_s_academic_oe_v0_1_qa_processed.json"
    path.write_text(json.dumps([{"id": "v_1", "video": "academic_source/v.mp4", "data_source": "academic",
                                 "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                   {"from": "gpt", "value": "That."}]}]))
    assert ds.check_dataset(tmp_path) == (1, [])
    stats = ds.dataset_stats(tmp_path).to_dict()
    assert stats["by_task"] == {"oe": 1} and stats["by_length"]["0-30s"] == 1


# --- the CLI -------------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_dataset_stats_check_export(folder, tmp_path):
    result = cli("dataset", "stats", folder, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["by_task"] == {"cap": 1, "oe": 3, "mc": 1}
    result = cli("dataset", "stats", folder)
    assert "per split:  cap 1, oe 3, mc 1" in result.stdout and "1-2min 1" in result.stdout
    result = cli("dataset", "check", folder)
    assert result.returncode == 0 and "5 records checked, 0 errors" in result.stderr
    with open(folder / "1_2_m_test_mc_qa_processed.jsonl", "a") as f:
        f.write(json.dumps(record("m2", task="mc") | {"conversations": [
            {"from": "human", "value": "<image>\nWhat?\nA. x\nB. y\nC. z\nPlease respond."},
            {"from": "gpt", "value": "D."}]}) + "\n")
    result = cli("dataset", "check", folder)
    assert result.returncode == 1
    assert "1_2_m_test_mc_qa_processed.jsonl:2: the answer 'D.' is not one of the options A, B, C" in result.stdout
    result = cli("dataset", "export", folder, "--zip", tmp_path / "all.zip")
    assert result.returncode == 0 and (tmp_path / "all.zip").exists()
    result = cli("dataset", "check", tmp_path / "nowhere")
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
