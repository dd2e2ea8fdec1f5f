"""Batch runs (synth/batch.py): a folder into the output folder's split files, loadable with
`datasets`; all three splits from a scripted engine; resuming; a failing video; a missing model; the
`llava-video synth` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from llava_video_app import output_folder as folder
from llava_video_app.dataset_report import check_dataset
from llava_video_app.jsonl import read_jsonl
from llava_video_app.prompts import QUESTION_TYPES
from llava_video_app.synth.batch import run_batch
from llava_video_app.synth.plan import SynthOptions
from llava_video_app.synth.result import record_id, video_id_for

ALL_TYPES = [t.name for t in QUESTION_TYPES]


def test_tiny_batch_output_loads_with_datasets(tiny_engine, synth_videos, quick_synth_options, tmp_path):
    import datasets

    out = tmp_path / "out"
    summary = run_batch(synth_videos["root"], out, quick_synth_options(types=("Count",)), engine=tiny_engine,
                        progress=False)
    assert (summary.done, summary.failed) == (2, 0) and summary.records["cap"] == 2
    assert check_dataset(out) == (2, [])
    for path in folder.split_files(out):
        for f in (path, path.with_suffix(".json")):  # JSON Lines and the exported array
            data = datasets.load_dataset("json", data_files=str(f), split="train", cache_dir=str(tmp_path / "hf"))
            assert len(data) == 1 and data[0]["conversations"][0]["value"].startswith("<image>\n")


def test_scripted_run_makes_all_three_splits(synth_videos, scripted_engine, tmp_path):
    import datasets

    engine = scripted_engine()
    out = tmp_path / "out"
    summary = run_batch(synth_videos[70], out, SynthOptions(data_source="My Source"), engine=engine, progress=False,
                        video_root=synth_videos["root"])
    assert summary.done == 1 and engine.calls == {"video": 7, "text": 3 + 1 + 16}
    # 16 types: Count None, Spatial lacks info, Camera Direction duplicates Temporal, Speed truncated
    assert summary.rejects == {"none": 1, "lacks_info": 1, "duplicate": 1, "malformed": 1}
    assert summary.records == {"cap": 1, "oe": 12, "mc": 11} and summary.mc_skipped == 1  # Binary: 1 distractor
    names = sorted(p.name for p in folder.split_files(out))
    assert names == ["1_2_m_my_source_cap_processed.jsonl", "1_2_m_my_source_mc_qa_processed.jsonl",
                     "1_2_m_my_source_oe_qa_processed.jsonl"]
    assert check_dataset(out) == (24, [])
    cap = read_jsonl(out / names[0]).records[0]
    assert "<image>" not in cap["conversations"][1]["value"]  # model text is cleaned of placeholders
    for record in read_jsonl(out / names[1]).records:
        human, answer = (t["value"] for t in record["conversations"])
        assert re.fullmatch(r"<image>\n.+\n(?:[A-E]\. .+\n){3,5}Please respond with only the letter of the correct "
                            r"answer\.", human)
        assert answer == f"{record['answer_letter']}." and record["options"][ord(answer[0]) - 65].startswith("Right")
    oe = {r["question_type"]: r for r in read_jsonl(out / names[2]).records}
    assert set(oe) == set(ALL_TYPES) - {"Count", "Spatial", "Camera Direction", "Speed"}
    assert oe["Temporal"]["id"] == record_id(video_id_for("sub/long.mp4"), "oe", "Temporal")
    for name in names:  # every split loads with datasets, exported arrays too
        data = datasets.load_dataset("json", data_files=str((out / name).with_suffix(".json")), split="train",
                                     cache_dir=str(tmp_path / "hf"))
        assert all(c[0]["value"].startswith("<image>\n") for c in data["conversations"])
    manifest = json.loads(folder.manifest_path(out, video_id_for("sub/long.mp4")).read_text())
    assert manifest["status"] == "done" and [d["level"] for d in manifest["descriptions"]].count(1) == 7



def test_resume_after_an_interrupted_folder_run(scripted_engine, tmp_path):
    from llava_video_app.sample_videos import make_video

    root = tmp_path / "videos"
    for name in ("a", "b", "c"):
        make_video(root / f"{name}.mp4", seconds=12, fps=2, size=(64, 48))
    out = tmp_path / "out"
    options = SynthOptions(types=("Temporal", "Plot Understanding"))
    stop = threading.Event()
    seen = []

    def on_video(path, status, error):
        seen.append((path.name, status))
        stop.set()  # "Ctrl-C" once the first video is saved: the second is interrupted mid-way

    first = run_batch(root, out, options, engine=scripted_engine(), progress=False, stop=stop, on_video=on_video)
    assert first.done == 1 and first.stopped and seen == [("a.mp4", "done"), ("b.mp4", "stopped")]
    # a crash after writing records but before the manifest: the video is redone, nothing is duplicated
    folder.manifest_path(out, video_id_for("a.mp4")).unlink()
    second = run_batch(root, out, options, engine=scripted_engine(), progress=False)
    assert (second.done, second.skipped, second.failed) == (3, 0, 0)
    assert second.records["cap"] == 2  # a's caption was already there
    third = run_batch(root, out, options, engine=scripted_engine(), progress=False)
    assert (third.done, third.skipped) == (0, 3)
    ids = [r["id"] for _, r in folder.iter_records(out)]
    assert len(ids) == len(set(ids)) == 3 * (1 + 2 + 2)
    assert {r["video"] for _, r in folder.iter_records(out)} == {"a.mp4", "b.mp4", "c.mp4"}


def test_a_failing_video_is_logged_and_the_batch_goes_on(synth_videos, scripted_engine, tmp_path):
    out = tmp_path / "out"
    summary = run_batch(synth_videos["root"], out, SynthOptions(types=("Temporal",)),
                        engine=scripted_engine(fail_on="short.mp4"), progress=False)
    assert (summary.done, summary.failed) == (1, 1) and "scripted failure" in summary.format()
    assert "short.mp4" in (out / "errors.log").read_text()
    manifest = json.loads(folder.manifest_path(out, video_id_for("short.mp4")).read_text())
    assert manifest["status"] == "failed"
    again = run_batch(synth_videos["root"], out, SynthOptions(types=("Temporal",)), engine=scripted_engine(),
                      progress=False)
    assert (again.done, again.skipped) == (1, 1)  # the failed one is retried


def test_an_engine_that_cannot_load_stops_the_batch(synth_videos, tmp_path):
    def broken():
        raise FileNotFoundError("no such model: nowhere/model")

    with pytest.raises(FileNotFoundError, match="no such model"):
        run_batch(synth_videos["root"], tmp_path / "out", make_engine=broken, progress=False)


# --- the CLI ------------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "llava_video_app.cli"]


@pytest.mark.slow
def test_cli_synth_on_a_folder_then_resume(tiny_checkpoint, tmp_path):
    from llava_video_app.sample_videos import make_video

    root = tmp_path / "videos"
    make_video(root / "one.mp4", seconds=14, fps=2, size=(64, 48))
    make_video(root / "nested" / "two.webm", seconds=8, fps=2, size=(64, 48), codec="vp9")
    (root / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    args = ["synth", str(root), "--out", str(out), "--types", "Temporal,Camera Direction", "--types", "Speed",
            "--max-frames", "60", "--data-source", "test", "--model", str(tiny_checkpoint), "--quant", "fp32",
            "--device", "cpu", "--max-new-tokens", "4", "--qa-max-new-tokens", "4", "--quiet"]
    run = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)  # as a user runs it
    assert run.returncode == 0, run.stderr
    assert "2 done" in run.stdout and "cap 2" in run.stdout and "qa 6" in run.stdout
    assert check_dataset(out)[1] == []
    # the same command again, and a bad one, need no model: in this process (no new interpreter)
    from typer.testing import CliRunner

    from llava_video_app import cli

    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "0 done, 2 skipped" in again.stdout
    bad = CliRunner().invoke(cli.app, ["synth", str(root), "--out", str(out), "--types", "Smell"])
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit) and "Camera Direction" in bad.stderr


def test_cli_synth_executor_flags_are_checked_before_any_work(synth_videos, tmp_path):
    from typer.testing import CliRunner

    from llava_video_app import cli

    base = ["synth", str(synth_videos["root"]), "--out", str(tmp_path / "out")]
    for extra, message in ((["--workers", "2"], "need --executor ray"),
                           (["--executor", "spark"], "--executor must be local or ray, not 'spark'"),
                           (["--engine-factory", "nowhere"], "must be module:function"),
                           (["--engine-factory", "json:no_such_factory"], "no_such_factory")):
        run = CliRunner().invoke(cli.app, base + extra)
        assert run.exit_code == 1 and message in run.stderr, (extra, run.stderr)
    assert not (tmp_path / "out").exists()
