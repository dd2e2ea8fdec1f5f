"""JSON Lines files (jsonl.py): safe appends (SIGKILLed writers, concurrent writers), torn lines, bad
lines, upserts and atomic rewrites."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from llava_video_app.jsonl import JsonlStore, read_jsonl, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def test_append_dedupes_on_id_also_across_store_objects(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    a, b = JsonlStore(path), JsonlStore(path)
    assert a.append([record("1"), record("2"), record("1")]) == ["1", "2"]
    assert b.append([record("2"), record("3")]) == ["3"]  # b reads what a wrote
    assert a.append([record("3"), record("4")]) == ["4"]  # a catches up incrementally
    result = read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "2", "3", "4"] and not result.errors
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())  # locks live in .locks/


def test_torn_last_line_is_ignored_and_repaired_by_the_next_append(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    JsonlStore(path).append([record("1")])
    with open(path, "ab") as f:
        f.write(json.dumps(record("2")).encode()[:40])  # a writer died mid-line
    result = read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1"] and result.torn_tail and not result.errors
    assert JsonlStore(path).append([record("3")]) == ["3"]
    result = read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "3"] and not result.torn_tail


def test_a_complete_last_line_without_newline_is_kept(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    path.write_text(json.dumps(record("1")) + "\n" + json.dumps(record("2")))
    assert JsonlStore(path).append([record("2"), record("3")]) == ["3"]
    assert [r["id"] for r in read_jsonl(path).records] == ["1", "2", "3"]


def test_bad_middle_lines_are_reported_with_line_numbers(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    path.write_text(json.dumps(record("1")) + "\n{not json\n[1, 2]\n" + json.dumps(record("2")) + "\n")
    result = read_jsonl(path)
    assert [r["id"] for r in result.records] == ["1", "2"]
    assert [(e.line, e.message.split(" (")[0]) for e in result.errors] == [
        (2, "not valid JSON"), (3, "a record must be a JSON object, not list")]


def test_replace_upserts_and_removes(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    store = JsonlStore(path)
    store.append([record("1"), record("2"), record("3")])
    edited = record("2")
    edited["conversations"][1]["value"] = "Edited."
    store.replace([edited, record("4")], remove_ids=["3"])
    records = read_jsonl(path).records
    assert [r["id"] for r in records] == ["1", "2", "4"] and records[1]["conversations"][1]["value"] == "Edited."
    assert store.append([record("4"), record("5")]) == ["5"]  # the id cache follows the rewrite


WRITER = textwrap.dedent("""
    import random, sys
    from llava_video_app.dataset import make_record
    from llava_video_app.jsonl import JsonlStore
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


def collect(proc, acknowledged, first_line=None):
    for line in proc.stdout:
        acknowledged.update(x for x in line.split() if x not in ("-", "END"))
        if first_line is not None:
            first_line.set()


@pytest.mark.slow
def test_sigkilled_writers_never_leave_a_broken_file_or_lose_an_acknowledged_record(record, tmp_path):
    path = tmp_path / "x_oe_qa_processed.jsonl"
    acknowledged: set[str] = set()
    rng = random.Random(1234)
    torn = 0
    for round_ in range(6):
        proc = start_writer(path, f"r{round_}", round_)
        writing = threading.Event()
        reader = threading.Thread(target=collect, args=(proc, acknowledged, writing))
        reader.start()
        # the first acknowledged batch, however long a busy machine takes to start python; then kill it
        # at a random point while it appends
        assert writing.wait(timeout=120), "the writer never acknowledged a batch"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        result = read_jsonl(path)
        assert not result.errors, result.errors[:3]  # every complete line is a record
        torn += result.torn_tail
        ids = [r["id"] for r in result.records]
        assert len(ids) == len(set(ids))
        missing = acknowledged - set(ids)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
    assert len(acknowledged) >= 6  # every writer did get going (one batch at least each)
    print(f"{len(acknowledged)} records acknowledged, {torn} torn last lines seen after a kill")
    JsonlStore(path).append([record("final")])  # repairs a torn tail if the last kill left one
    result = read_jsonl(path)
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
    result = read_jsonl(path)
    ids = [r["id"] for r in result.records]
    assert not result.errors and not result.torn_tail
    assert len(ids) == len(set(ids))  # both "shared" writers tried every shared id: each is there once
    assert {i for i in ids if i.startswith("shared-")} >= {f"shared-{i}" for i in range(200)}
    assert {f"own-{i}" for i in range(100)} <= set(ids)
    assert acknowledged[0] | acknowledged[1] <= set(ids)


def test_write_json_atomic_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
