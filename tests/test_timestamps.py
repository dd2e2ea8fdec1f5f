"""timestamps.py: the times an answer mentions, with their place in the text and their seconds."""

import pytest

from llava_video_app.timestamps import clock_seconds, find_times, parse_time


def _said(text, duration=None):
    return [(text[m.begin:m.end], m.seconds, m.until) for m in find_times(text, duration)]


@pytest.mark.parametrize("text, said", [
    ("The ball stops at 3.2 s.", [("3.2 s", 3.2, None)]),
    ("at 3.2s", [("3.2s", 3.2, None)]),
    ("around 12 seconds in", [("12 seconds", 12.0, None)]),
    ("after 1 second", [("1 second", 1.0, None)]),
    ("at 4 sec", [("4 sec", 4.0, None)]),
    ("at 0:12 the door opens", [("0:12", 12.0, None)]),
    ("from 00:01:05 on", [("00:01:05", 65.0, None)]),
    ("at 1:02:03.5", [("1:02:03.5", 3723.5, None)]),
    ("between 3.2-4.0 seconds", [("3.2-4.0 seconds", 3.2, 4.0)]),
    ("3.2s–4s", [("3.2s–4s", 3.2, 4.0)]),
    ("from 3 to 5 s", [("3 to 5 s", 3.0, 5.0)]),
    ("from 0:12 to 0:15.", [("0:12 to 0:15", 12.0, 15.0)]),
    ("0:12-0:15", [("0:12-0:15", 12.0, 15.0)]),
    ("after 2 minutes", [("2 minutes", 120.0, None)]),
    ("at 1 min 30 s", [("1 min 30 s", 90.0, None)]),
    ("at 3.2 s, 4 s and 5.5 seconds", [("3.2 s", 3.2, None), ("4 s", 4.0, None), ("5.5 seconds", 5.5, None)]),
    ("AT 2 SECONDS", [("2 SECONDS", 2.0, None)]),
])
def test_the_forms_an_answer_uses(text, said):
    assert _said(text) == said


@pytest.mark.parametrize("text", [
    "a 16:9 picture",  # one-digit seconds: no clock
    "frames 3 and 4",  # no unit
    "3 sheep and 2 cats",  # "s" starts a word
    "version v1.5s",  # inside a word
    "the value 3.2",
    "ratio 1:2",
    "at 12:345",  # three-digit seconds
    "",
])
def test_what_is_not_a_time(text):
    assert _said(text) == []


def test_a_video_length_drops_the_times_past_its_end():
    text = "In the 1990s style, at 7.99 s, at 8 s, at 8.01 s and at 0:09"
    assert [m.seconds for m in find_times(text)] == [1990.0, 7.99, 8.0, 8.01, 9.0]
    assert [m.seconds for m in find_times(text, duration=8.0)] == [7.99, 8.0]


def test_a_backwards_range_keeps_its_start_only():
    assert _said("5-3 s") == [("5-3 s", 5.0, None)]


def test_parse_time_is_one_time_and_nothing_else():
    assert parse_time("3.20 s") == 3.2
    assert parse_time(" 0:12 ") == 12.0
    assert parse_time("at 3 s") is None and parse_time("3 s and 4 s") is None and parse_time("3.2") is None
    assert clock_seconds("00:01:05.5") == 65.5
