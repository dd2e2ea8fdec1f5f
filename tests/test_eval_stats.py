"""Accuracy, its bootstrap interval and the paired difference of two runs against hand-computed
cases (the resampled mean of n 0/1 values with k ones is Binomial(n, k/n)/n, whose percentiles are
read off its table)."""

from __future__ import annotations

import pytest

from llava_video_app.eval.stats import compare_table, paired_difference, report

# 10 questions, categories X (6) and Y (4). A right on 4, B on 7; B is right wherever A is.
A = [1, 1, 1, 0, 0, 0, 1, 0, 0, 0]
B = [1, 1, 1, 1, 0, 0, 1, 1, 1, 0]
CATS = ["X"] * 6 + ["Y"] * 4


def records(correct, parsed_none=()):
    return [{"id": f"q{i}", "category": c, "duration": "short" if i < 5 else "long", "correct": bool(v),
             "parsed": None if i in parsed_none else "A"} for i, (v, c) in enumerate(zip(correct, CATS))]


def test_accuracy_and_its_interval():
    r = report("bench", records(B, parsed_none=(9,)), resamples=20000)
    o = r.overall
    assert (o.n, o.correct, o.unparseable) == (10, 7, 1) and o.score == pytest.approx(70.0)
    # Binomial(10, 0.7): P(X <= 3) = 0.011, P(X <= 4) = 0.047 -> 2.5th percentile 4; P(X <= 9) = 0.972 -> 97.5th 10
    assert (o.low, o.high) == (pytest.approx(40.0), pytest.approx(100.0))
    assert r.categories["X"].score == pytest.approx(100 * 4 / 6) and r.categories["Y"].score == pytest.approx(75.0)
    assert r.durations["short"].n == 5 and r.durations["short"].correct == 4


def test_mean_of_categories_for_mlvu():
    r = report("mlvu", records(A), overall="categories", resamples=200)
    assert r.overall.score == pytest.approx((50.0 + 25.0) / 2)


def test_paired_difference_by_hand():
    d = paired_difference(records(A), records(B), resamples=20000)
    assert (d.n, d.only_a, d.only_b) == (10, 0, 3)
    assert (d.a, d.b, d.diff) == (pytest.approx(40.0), pytest.approx(70.0), pytest.approx(30.0))
    # paired: the difference per question is 1 on 3 of 10 and 0 elsewhere, so the resampled difference
    # is Binomial(10, 0.3)/10: P(0) = 0.028 -> 2.5th percentile 0; P(X <= 5) = 0.953, P(X <= 6) = 0.989 -> 97.5th 6
    assert (d.low, d.high) == (pytest.approx(0.0), pytest.approx(60.0))
    # an unpaired bootstrap would give A and B independent draws and let the interval reach below 0


def test_compare_table_per_category_and_only_shared_questions():
    table = compare_table(records(A), records(B)[:8], resamples=500)  # B answered 8 of the 10
    assert table["overall"].n == 8
    assert table["X"].diff == pytest.approx(100 * (4 - 3) / 6) and table["Y"].n == 2
    assert table["Y"].diff == pytest.approx(100.0 * (2 - 1) / 2)
    assert set(table) == {"overall", "X", "Y", "duration long", "duration short"}
    mlvu = paired_difference(records(A), records(B), "categories", resamples=200)
    assert mlvu.diff == pytest.approx((100 * 4 / 6 + 75.0) / 2 - (50.0 + 25.0) / 2)
