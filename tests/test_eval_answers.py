"""Each benchmark's answer parser (lmms-eval's rules, eval/answers.py) on the answers models give."""

from __future__ import annotations

import pytest

from llava_video_app.eval.answers import mcq_extract, parse_answer

OPTIONS = ["a red square", "a blue circle", "a green star", "a dog", "a hat"]
COMMON = {"B": "B", "(B)": "B", "The answer is B.": "B", "B. a blue circle": "B", "": None, "zzz qq": None,
          "Hmm, no idea at all here really": None}


@pytest.mark.parametrize("parser", ["mcq_extract", "mmmu", "egoschema", "longvideobench", "mvbench"])
def test_the_usual_answers(parser):
    for text, letter in COMMON.items():
        assert parse_answer(parser, text, OPTIONS) == letter, (parser, text)


def test_where_the_parsers_differ():
    # a lower-case letter: only MVBench's lower-casing reads it
    assert [parse_answer(p, "b) a blue circle", OPTIONS) for p in ("mcq_extract", "mmmu", "mvbench")] == \
        [None, None, "B"]
    # MVBench's quirk: the article "a" is a standalone a-e word
    assert parse_answer("mvbench", "a dog", OPTIONS) == "A"
    # a long answer naming an option's text: NExT-QA's and EgoSchema's parsers find it, the others do not
    long = "I think that the shape shown is a green star moving"
    assert [parse_answer(p, long, OPTIONS) for p in ("mmmu", "egoschema", "mcq_extract", "longvideobench")] == \
        ["C", "C", None, None]
    # several letters: NExT-QA takes the last, EgoSchema the first, mcq_extract the highest-ranked form
    both = "(A) or maybe (C)"
    assert (parse_answer("mmmu", both, OPTIONS), parse_answer("egoschema", both, OPTIONS)) == ("C", "A")
    assert mcq_extract("Not A. The best answer is C", "ABCD") == "C"  # ends with a letter: rank 9
    # MLVU's post-prompt ends with "(": the model continues "C) a green star"
    assert parse_answer("mcq_extract", "C) a green star", OPTIONS) == "C"
    # mcq_extract only knows A-D (as Video-MME's and MLVU's tasks pass them)
    assert parse_answer("mcq_extract", "E", OPTIONS) is None
    # LongVideoBench: the first capital A-E once the answer phrases are gone
    assert parse_answer("longvideobench", "The best answer is D, not B", OPTIONS) == "D"
