"""One record (dataset.py): length buckets, the multiple-choice turn, and the schema check."""

from __future__ import annotations

import pytest

from llava_video_app import dataset as ds


@pytest.mark.parametrize("seconds,bucket", [(0, "0_30_s"), (29.9, "0_30_s"), (30, "30_60_s"), (75, "1_2_m"),
                                            (150, "2_3_m"), (180, "over_3_m"), (3600, "over_3_m")])
def test_length_buckets(seconds, bucket):
    assert ds.length_bucket(seconds) == bucket


def test_valid_records(record):
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
def test_invalid_records_say_why(record, change, message):
    r = record("x")
    change(r)
    errors = ds.validate_record(r)
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize("answer,message", [("D.", "not one of the options"), ("The square", "a letter like"),
                                            ("A. A square", "a letter like")])
def test_multiple_choice_answers_are_checked(record, answer, message):
    r = record("m", task="mc")
    r["conversations"][1]["value"] = answer
    assert any(message in e for e in ds.validate_record(r, "mc"))
    r = record("n", task="mc")
    r["conversations"][0]["value"] = "<image>\nWhat?\nA. x\nB. y\nPlease respond with only the letter."
    assert any("3 to 5" in e for e in ds.validate_record(r, "mc"))


def test_mc_human_turn_is_exact():
    assert ds.mc_human_turn("How many?", ["Two", "One", "Three"]) == (
        "How many?\nA. Two\nB. One\nC. Three\nPlease respond with only the letter of the correct answer.")
