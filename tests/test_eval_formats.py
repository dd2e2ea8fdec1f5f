"""Benchmark files in their real layouts (tests/eval_fixtures.py) read into samples: ids, correct
letters, problems as skips with one line each; each benchmark's question text as lmms-eval writes
it; Video-MME's subtitles; what a folder without the files says."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_fixtures import WRITERS, write

from llava_video_app.eval.benchmarks import BENCHMARKS, BenchmarkError, load_samples
from llava_video_app.eval.prompts import question_text, read_srt, subtitle_lines


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from llava_video_app.sample_videos import make_video

    return make_video(tmp_path_factory.mktemp("eval-video") / "v.mp4", seconds=4, fps=4, size=(64, 48))


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_benchmark_reads_its_own_layout(name, video, tmp_path):
    expected = write(name, tmp_path / name, video)
    samples = load_samples(name, tmp_path / name)
    assert [s.id for s in samples] == list(expected) or sorted(s.id for s in samples) == sorted(expected)
    for s in samples:
        if expected[s.id] == "skip":
            assert s.problem and "\n" not in s.problem and s.video == ""
        else:
            assert (s.problem, s.answer) == ("", expected[s.id]) and Path(s.video).is_file()
            assert len(s.options) >= 2


def test_the_question_texts_are_lmms_evals(video, tmp_path):
    def first(name):
        write(name, tmp_path / name, video)
        sample = next(s for s in load_samples(name, tmp_path / name) if not s.problem)
        return question_text(BENCHMARKS[name], sample, 4.0)

    assert first("videomme") == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\nQuestion 0?\nA. first 0\nB. second 0\n"
        "C. third 0\nD. fourth 0\nThe best answer is:")
    assert first("videomme_sub").startswith("This video's subtitles are listed below: \nhello from the start\n"
                                            "and the middle\nSelect the best answer")
    assert first("mvbench") == ("Question:Where is the ball?\nOption:\n(A) left\n(B) middle\n(C) right\n"
                                "Only give the best option.\n")
    assert first("nextqa") == ("how do the two man play the instrument\nA. roll the handle\nB. tap their feet\n"
                               "C. strum the string\nD. hit with sticks\nE. pat with hand")
    assert first("egoschema").endswith("E. c does thing 4\nAnswer with the option's letter from the given choices "
                                       "directly.")
    assert first("longvideobench") == ("What colour is the square?\nA. red\nB. green\nC. blue\nD. black\n"
                                       "Answer with the option's letter from the given choices directly.\n")
    assert first("mlvu") == ("Question: What colour is the main character's hat?\nOptions:\n(A) Black\n(B) Red\n"
                             "(C) White\n(D) Blue\nOnly give the best option.\nBest option: (")


def test_videomme_subtitles_are_those_spoken_during_the_video(tmp_path):
    from eval_fixtures import SRT

    srt = tmp_path / "a.srt"
    srt.write_text(SRT)
    assert read_srt(srt)[0] == (0.0, 1.5, "hello from the start")
    assert subtitle_lines(srt, 4.0) == ["hello from the start", "and the middle"]
    assert subtitle_lines(srt, 60.0) == ["hello from the start", "and the middle", "after the video ended"]


def test_a_folder_without_the_files_says_what_it_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in BENCHMARKS:
        with pytest.raises(BenchmarkError) as err:
            load_samples(name, tmp_path / "empty")
        assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BenchmarkError, match="choose one of: videomme"):
        load_samples("imagenet", tmp_path)


def test_video_paths_are_absolute_from_a_relative_data_folder(video, tmp_path, monkeypatch):
    write("egoschema", tmp_path / "ego", video)
    monkeypatch.chdir(tmp_path)
    sample = next(s for s in load_samples("egoschema", Path("ego")) if not s.problem)
    assert Path(sample.video).is_absolute() and sample.video == str(tmp_path / "ego" / "videos" / "q-1.mp4")
