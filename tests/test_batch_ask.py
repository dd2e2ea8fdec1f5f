"""One question over many videos (batch_ask.py, `llava-video ask SPEC "q" --jsonl OUT`) on the tiny
checkpoint: a record per video with its provenance, resumable, a bad video counted and retried."""

import shutil

import pytest
from typer.testing import CliRunner

from llava_video_app import cli
from llava_video_app.batch_ask import ask_many
from llava_video_app.config import AppConfig
from llava_video_app.jsonl import read_jsonl
from llava_video_app.request import check_request


@pytest.fixture
def folder(tmp_path, sample_video):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy(sample_video, videos / "a.mp4")
    shutil.copy(sample_video, videos / "sub" / "b.mp4")
    return videos


def test_every_video_gets_one_record_with_provenance_and_a_rerun_resumes(tiny_engine, folder, tmp_path):
    out = tmp_path / "answers.jsonl"
    request = check_request(AppConfig(frames=8), frames=8, max_new_tokens=6, temperature=1.2, seed=3)
    lines = []
    summary = ask_many(tiny_engine, str(folder), "What happens?", request, out, progress=lines.append)
    records = read_jsonl(out).records
    assert summary.answered == 2 and not summary.failed
    assert sorted(r["video"] for r in records) == ["a.mp4", "sub/b.mp4"]
    for r in records:
        assert r["question"] == "What happens?" and r["answer"]
        assert r["provenance"]["seed"] == 3 and r["provenance"]["settings"]["frames"] == 8
        assert r["provenance"]["video"]["name"] in ("a.mp4", "b.mp4") and r["provenance"]["visual_tokens"] > 0
    assert records[0]["answer"] == records[1]["answer"], "the same video bytes, seed and settings: the same answer"
    assert len(lines) == 2 and lines[0].startswith("[1/2]")

    again = ask_many(tiny_engine, str(folder), "What happens?", request, out)
    assert (again.answered, again.skipped) == (0, 2) and len(read_jsonl(out).records) == 2
    other = ask_many(tiny_engine, str(folder), "Anything else?", request, out)
    assert other.answered == 2 and len(read_jsonl(out).records) == 4, "another question: new records"


def test_a_bad_video_is_counted_not_recorded_and_the_rest_are_answered(tiny_engine, folder, tmp_path):
    (folder / "broken.mp4").write_text("not a video\n" * 10)
    out = tmp_path / "answers.jsonl"
    request = check_request(AppConfig(frames=8), frames=8, max_new_tokens=4)
    summary = ask_many(tiny_engine, str(folder / "*.mp4"), "What happens?", request, out)
    assert summary.answered == 1 and [video for video, _ in summary.failed] == ["broken.mp4"]
    assert [r["video"] for r in read_jsonl(out).records] == ["a.mp4"]
    assert ask_many(tiny_engine, str(folder / "*.mp4"), "What happens?", request, out).failed, "tried again"


def test_the_cli_batch_writes_jsonl_and_names_the_missing_flag(tiny_checkpoint, folder, tmp_path):
    out = tmp_path / "captions.jsonl"
    flags = ["--model", str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu", "--frames", "8",
             "--max-new-tokens", "4"]
    result = CliRunner().invoke(cli.app, ["caption", str(folder), *flags, "--jsonl", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(out).records) == 2 and "answered 2" in result.stderr
    result = CliRunner().invoke(cli.app, ["ask", str(folder), "What?", *flags])
    assert result.exit_code == 1 and "add --jsonl" in result.stderr


def test_a_raw_h264_stream_in_the_folder_is_answered_and_its_assumed_rate_recorded(tiny_engine, folder, tmp_path):
    from raw_h264 import make_raw_h264

    make_raw_h264(folder / "camera.h264", frames=40, fps=10, vui_timing=False)
    out = tmp_path / "answers.jsonl"
    request = check_request(AppConfig(frames=8), frames=8, max_new_tokens=4)
    summary = ask_many(tiny_engine, str(folder), "What happens?", request, out)
    assert summary.answered == 3 and not summary.failed
    raw = next(r for r in read_jsonl(out).records if r["video"] == "camera.h264")
    assert raw["provenance"]["video_timing"] == "frame rate assumed 25 fps: raw stream without timing"
    assert raw["provenance"]["timestamps"] == [round(i / 25, 3) for i in raw["provenance"]["frame_indices"]]


@pytest.mark.parametrize("args, message", [
    (["ask", "{folder}", "What?", "--executor", "ray"], "--executor ray answers many videos into a file: add --jsonl"),
    (["caption", "{folder}", "--jsonl", "{out}", "--workers", "2"], "need --executor ray"),
    (["ask", "{folder}", "What?", "--jsonl", "{out}", "--executor", "spark"], "--executor must be local or ray"),
    (["synth", "{folder}", "--out", "{out}", "--gpus-per-worker", "1"], "need --executor ray"),
    (["eval", "mvbench", "--data", "{folder}", "--address", "auto"], "need --executor ray"),
])
def test_the_executor_flags_are_checked_alike_before_anything_runs(folder, tmp_path, args, message):
    """One set of executor flags and one check for ask/caption --jsonl, synth and eval (cli._check_executor)."""
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli.app, [a.format(folder=folder, out=out) for a in args])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not out.exists(), "nothing was written"


def test_on_a_shared_gpu_each_answer_waits_for_its_turn_and_a_stop_while_waiting_runs_nothing(tiny_engine,
                                                                                              sample_video):
    """The Batch tab's answers take turns in the GPU's line (gpu_queue) with the other tabs' model calls."""
    import threading

    from gpu_line import start_waiting

    from llava_video_app.batch_ask import answer_video
    from llava_video_app.gpu_queue import GpuQueue
    from llava_video_app.synth.sources import VideoSource

    line = GpuQueue()
    request = check_request(AppConfig(frames=8), frames=8, max_new_tokens=4)

    def start(stop):
        records = []
        return records, start_waiting(line, lambda: records.append(answer_video(
            tiny_engine, VideoSource(str(sample_video), sample_video.name), "What happens?", request, stop,
            turn=lambda s: line.turn("a batch answer", s))))

    other = line.join("another visitor's answer")  # has the GPU
    records, worker = start(threading.Event())
    assert len(line) == 2 and not records  # waits, nothing ran
    other.leave()
    worker.join(300)
    assert records[0]["answer"] and records[0]["provenance"]["settings"]["frames"] == 8 and len(line) == 0

    other, stop = line.join("another visitor's answer"), threading.Event()
    records, worker = start(stop)
    stop.set()  # the visitor's Stop while the answer waits for the GPU
    worker.join(300)
    other.leave()
    assert records == [{"video": sample_video.name, "question": "What happens?", "answer": "",
                        "provenance": {"stopped": True}}]
