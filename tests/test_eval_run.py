"""Benchmark runs (eval/run.py) with a scripted engine: records with provenance, skips said and
counted, resume (also after a real kill -9 of the CLI), settings that must not mix; then the real
engine on the tiny checkpoint through the CLI for every benchmark's fixture, and `eval compare`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_fixtures import WRITERS, write
from scripted_eval import PAUSE_DIR_ENV, ScriptedEvalEngine

from llava_video_app.config import AppConfig
from llava_video_app.eval.run import run_eval, with_eval_settings
from llava_video_app.jsonl import read_jsonl
from llava_video_app.prompts import build_prompt

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONFIG = AppConfig(frames=4)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from llava_video_app.sample_videos import make_video

    return make_video(tmp_path_factory.mktemp("eval-video") / "v.mp4", seconds=4, fps=4, size=(64, 48))


def records(out: Path) -> list[dict]:
    return read_jsonl(out / "samples.jsonl").records


def test_a_run_writes_records_with_provenance_and_reports_skips(video, tmp_path):
    expected = write("nextqa", tmp_path / "data", video)
    engine = ScriptedEvalEngine(CONFIG)  # always "The answer is B."
    events = []
    summary = run_eval("nextqa", tmp_path / "data", tmp_path / "out", CONFIG, engine=engine, progress=False,
                       on_sample=lambda sid, status, eta: events.append((sid, status, eta is not None)))
    assert events == [("4010069381_6", "done", True), ("4010069381_7", "done", True)]
    assert (summary.questions, summary.answered, summary.resumed, len(summary.skipped)) == (3, 2, 0, 1)
    assert "5555_1" in summary.skipped[0] and "lacks a3" in summary.skipped[0]
    assert (tmp_path / "out" / "skipped.txt").read_text() == summary.skipped[0] + "\n"
    got = {r["id"]: r for r in records(tmp_path / "out")}
    assert set(got) == {k for k, v in expected.items() if v != "skip"}
    first = got["4010069381_6"]
    assert (first["raw_answer"], first["parsed"], first["answer"], first["correct"]) == \
        ("The answer is B.", "B", "B", True)
    assert got["4010069381_7"]["correct"] is False
    prov = first["provenance"]
    assert len(prov["frame_indices"]) == 4 and prov["settings"]["frames"] == 4
    assert prov["settings"]["max_new_tokens"] == 1024 and prov["settings"]["time_instruction"] is True
    prompt = build_prompt(engine.questions[0], duration=4.0, timestamps=prov["timestamps"])
    assert prov["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    report = summary.report.overall
    assert (report.n, report.correct, report.unparseable, report.score) == (2, 1, 0, 50.0)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["report"]["overall"]["correct"] == 1


def test_resume_asks_only_what_is_left_and_other_settings_are_refused(video, tmp_path):
    write("videomme", tmp_path / "data", video)
    first = ScriptedEvalEngine(CONFIG)
    run_eval("videomme", tmp_path / "data", tmp_path / "out", CONFIG, engine=first, limit=2, progress=False)
    second = ScriptedEvalEngine(CONFIG)
    summary = run_eval("videomme", tmp_path / "data", tmp_path / "out", CONFIG, engine=second, progress=False)
    assert (len(first.questions), len(second.questions)) == (2, 1)
    assert (summary.answered, summary.resumed, len(summary.skipped)) == (1, 2, 1)
    ids = [r["id"] for r in records(tmp_path / "out")]
    assert sorted(ids) == ["000-1", "001-1", "002-1"]
    assert summary.report.categories["Counting Problem"].n == 2 and summary.report.durations["medium"].n == 1
    lmms = with_eval_settings(CONFIG, frames=20, pool_mode="average", time_instruction=False)
    with pytest.raises(ValueError, match="other settings pool_mode, frames, time_instruction"):
        run_eval("videomme", tmp_path / "data", tmp_path / "out", lmms, engine=second, progress=False)
    with pytest.raises(ValueError, match="other benchmark videomme"):
        run_eval("videomme_sub", tmp_path / "data", tmp_path / "out", CONFIG, engine=second, progress=False)


def test_a_video_that_cannot_be_read_is_a_skip_not_a_crash(video, tmp_path):
    write("longvideobench", tmp_path / "data", video)
    (tmp_path / "data" / "videos" / "v1.mp4").unlink()
    (tmp_path / "data" / "videos" / "v1.mp4").write_text("not a video")
    summary = run_eval("longvideobench", tmp_path / "data", tmp_path / "out", CONFIG,
                       engine=ScriptedEvalEngine(CONFIG), progress=False)
    assert summary.answered == 0 and len(summary.skipped) == 3
    assert sum("v1.mp4" in line for line in summary.skipped) == 2 and not records(tmp_path / "out")


CLI = [sys.executable, "-m", "llava_video_app.cli"]


def _env(pause_dir: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(REPO), env.get("PYTHONPATH")) if p)
    env[PAUSE_DIR_ENV] = str(pause_dir)
    return env


def test_resume_after_kill_9(video, tmp_path):
    """The CLI killed (SIGKILL) after its 3rd answer: the rerun asks only the 4 left, and every
    question has exactly one record."""
    import pandas as pd

    data = tmp_path / "data"
    write("videomme", data, video)
    table = data / "videomme" / "test-00000-of-00001.parquet"
    rows = pd.read_parquet(table)
    more = pd.concat([rows.iloc[:3]] * 2 + [rows.iloc[3:]], ignore_index=True)
    more["question_id"] = [f"{i:03d}-9" for i in range(len(more))]
    more.to_parquet(table)  # 6 runnable questions, 1 skipped
    pause = tmp_path / "pause"
    pause.mkdir()
    (pause / "pause-after").write_text("3")
    out = tmp_path / "out"
    args = [*CLI, "eval", "videomme", "--data", str(data), "--out", str(out), "--frames", "4", "--quiet",
            "--engine-factory", "scripted_eval:scripted_eval_engine"]
    proc = subprocess.Popen(args, env=_env(pause), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pause / "paused").exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the run never reached its pause"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(records(out)) == 3
    (pause / "pause-after").unlink()
    again = subprocess.run(args, env=_env(pause), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "7 questions: 3 answered now, 3 already done, 1 skipped" in again.stdout
    ids = [r["id"] for r in records(out)]
    assert len(ids) == len(set(ids)) == 6


# --- the real engine on the tiny checkpoint, through the CLI ------------------------------------------

@pytest.mark.slow
def test_every_benchmark_end_to_end_on_the_tiny_checkpoint_and_compare(tiny_checkpoint, video, tmp_path):
    from typer.testing import CliRunner

    from llava_video_app import cli

    runner = CliRunner()
    base = ["--model", str(tiny_checkpoint), "--quant", "fp32", "--device", "cpu", "--frames", "4",
            "--max-new-tokens", "3", "--quiet"]
    for name in WRITERS:
        expected = write(name, tmp_path / name, video)
        out = tmp_path / "runs" / name
        run = runner.invoke(cli.app, ["eval", name, "--data", str(tmp_path / name), "--out", str(out), *base])
        assert run.exit_code == 0, (name, run.output, run.exception)
        answered = {k for k, v in expected.items() if v != "skip"}
        assert {r["id"] for r in records(out)} == answered, name
        assert f"{len(expected) - len(answered)} skipped" in run.stdout
        for r in records(out):
            assert r["provenance"]["settings"]["model"] == str(tiny_checkpoint) and r["raw_answer"] is not None
    # lmms-eval's llava_vid settings on the same questions, then the comparison of the two runs
    lmms = tmp_path / "runs" / "nextqa-lmms"
    run = runner.invoke(cli.app, ["eval", "nextqa", "--data", str(tmp_path / "nextqa"), "--out", str(lmms), *base,
                                  "--pool-mode", "average", "--no-time-instruction"])
    assert run.exit_code == 0, run.output
    prompts = {r["provenance"]["prompt_sha256"] for r in records(lmms)}
    assert prompts.isdisjoint(r["provenance"]["prompt_sha256"] for r in records(tmp_path / "runs" / "nextqa"))
    compared = runner.invoke(cli.app, ["eval", "compare", str(tmp_path / "runs" / "nextqa"), str(lmms)])
    assert compared.exit_code == 0, compared.output
    assert "B - A on 2 questions" in compared.stdout and "pool_mode: None -> average" in compared.stdout
    assert "time_instruction: True -> False" in compared.stdout and "overall" in compared.stdout
    wrong = runner.invoke(cli.app, ["eval", "compare", str(tmp_path / "runs" / "mlvu"), str(lmms)])
    assert wrong.exit_code == 1 and "different benchmarks" in wrong.stderr


def test_cli_mistakes_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from llava_video_app import cli

    runner = CliRunner()
    for args, message in ((["eval", "nextqa"], "--data DIR"),
                          (["eval", "imagenet", "--data", str(tmp_path)], "unknown benchmark 'imagenet'"),
                          (["eval", "nextqa", "--data", str(tmp_path)], "NExT-QA multiple-choice annotation"),
                          (["eval", "compare", str(tmp_path)], "two run folders"),
                          (["eval", "compare", str(tmp_path), str(tmp_path)], "not an eval run folder"),
                          (["eval", "nextqa", "--data", str(tmp_path), "--frames", "2.5"], "frames must be a whole"),
                          (["eval", "nextqa", "--data", str(tmp_path), "--workers", "2"], "need --executor ray")):
        run = runner.invoke(cli.app, args)
        assert run.exit_code == 1 and message in run.stderr and run.stderr.count("\n") == 1, (args, run.stderr)


def test_the_engine_drops_the_time_instruction_when_told(tiny_model, sample_video):
    """lmms-eval's llava_vid prompt: "<image>\\n" and the question, no time line (config.time_instruction)."""
    from llava_video_app.config import GenerationSettings
    from llava_video_app.engine import Engine

    lengths = {}
    for flag in (True, False):
        engine = Engine(tiny_model, AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=4,
                                              max_new_tokens=2, time_instruction=flag))
        clip = engine.load_clip(sample_video)
        engine.ask(clip, "What moves?", settings=GenerationSettings(max_new_tokens=1))
        lengths[flag] = engine.last_stats.prompt_tokens
        prompt = build_prompt("What moves?", duration=clip.duration, timestamps=clip.timestamps,
                              with_time_instruction=flag)
        assert ("The video lasts for" in prompt) is flag
        assert int(engine.prompt_logits(clip, "What moves?").argmax()) >= 0
        expected = tiny_model.tokenize(prompt)
        lengths[f"text {flag}"] = len(expected)
    assert lengths[True] - lengths[False] == lengths["text True"] - lengths["text False"] > 20


def test_an_answer_cut_short_by_stop_is_not_recorded(video, tmp_path):
    import threading

    write("egoschema", tmp_path / "data", video)
    stop = threading.Event()

    def stopped_mid_answer(question):
        stop.set()  # Ctrl-C while the model writes: what it returns is a partial answer
        return "The ans"

    summary = run_eval("egoschema", tmp_path / "data", tmp_path / "out", CONFIG,
                       engine=ScriptedEvalEngine(CONFIG, answer=stopped_mid_answer), progress=False, stop=stop)
    assert summary.stopped and summary.answered == 0 and not records(tmp_path / "out")
    again = run_eval("egoschema", tmp_path / "data", tmp_path / "out", CONFIG, engine=ScriptedEvalEngine(CONFIG),
                     progress=False)
    assert again.answered == 1 and [r["parsed"] for r in records(tmp_path / "out")] == ["B"]
