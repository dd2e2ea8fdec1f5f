"""One question over many videos on the Ray executor (batch_ask_ray.py, `llava-video ask SPEC "q"
--jsonl OUT --executor ray`): one local Ray with 2 CPU workers, each loading the tiny checkpoint
itself (the project's engine, greedy): the same records as the in-process run, timings aside, a bad
video reported and not recorded, resumed by either executor without duplicates, and the CLI joining
the running cluster. The local Ray and its gate: tests/ray_fixtures.py (separate from test_batch_ask.py
so that those tests run without the extra)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ray_fixtures import ray_cluster  # noqa: F401  (the module's local Ray)

from llava_video_app.batch_ask import ask_many
from llava_video_app.batch_ask_ray import ask_many_ray
from llava_video_app.config import AppConfig
from llava_video_app.jsonl import read_jsonl
from llava_video_app.ray_pool import default_engine
from llava_video_app.request import check_request

pytestmark = pytest.mark.slow

QUESTION = "What happens?"


@pytest.fixture(scope="module")
def config(tiny_checkpoint) -> AppConfig:
    return AppConfig(model=str(tiny_checkpoint), quant="fp32", device="cpu", frames=8)


@pytest.fixture(scope="module")
def request_settings(config):
    return check_request(config, frames=8, max_new_tokens=5, seed=7)  # the seed is in the provenance


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from llava_video_app.sample_videos import make_video

    root = tmp_path_factory.mktemp("batch-ray")
    make_video(root / "a.mp4", seconds=4, fps=4, size=(64, 48))
    make_video(root / "sub" / "b.mp4", seconds=5, fps=4, size=(48, 64))
    return root


def without_timings(path: Path) -> dict[str, dict]:
    """The file's records by id, without what differs run to run (times, speed); fails on a duplicate id."""
    found = {}
    for r in read_jsonl(path).records:
        p = r["provenance"]
        for key in ("created", "timings", "tokens_per_s"):
            p.pop(key)
        assert r["id"] not in found, f"duplicate id {r['id']}"
        found[r["id"]] = r
    return found


def test_ray_writes_the_in_process_records_and_either_executor_resumes(ray_cluster, folder, config,
                                                                      request_settings, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(folder, videos)
    (videos / "broken.mp4").write_text("not a video\n" * 10)
    reference = tmp_path / "local.jsonl"
    local = ask_many(default_engine(config), str(videos), QUESTION, request_settings, reference)
    assert local.answered == 2 and [v for v, _ in local.failed] == ["broken.mp4"]

    out = tmp_path / "ray.jsonl"
    lines: list[str] = []
    summary = ask_many_ray(str(videos), QUESTION, request_settings, out, config, workers=2, gpus_per_worker=0,
                           progress=lines.append)
    assert (summary.answered, summary.skipped) == (2, 0)
    assert summary.failed == local.failed, "the bad video: reported with the same reason, not recorded"
    ray_records, local_records = without_timings(out), without_timings(reference)
    assert ray_records.keys() == local_records.keys()
    for rid, record in ray_records.items():
        assert record == local_records[rid], {k: (v, local_records[rid].get(k)) for k, v in record.items()
                                              if v != local_records[rid].get(k)}
    assert sorted(line.split("] ")[1].split(":")[0] for line in lines) == ["a.mp4", "broken.mp4", "sub/b.mp4"]

    again = ask_many_ray(str(videos), QUESTION, request_settings, out, config, workers=2, gpus_per_worker=0)
    assert (again.answered, again.skipped, len(again.failed)) == (0, 2, 1), "only the bad video is asked again"
    in_process = ask_many(default_engine(config), str(videos), QUESTION, request_settings, out)
    assert (in_process.answered, in_process.skipped) == (0, 2), "the in-process run resumes Ray's file"
    assert without_timings(out) == without_timings(reference)


def test_cli_asks_on_a_running_cluster(ray_cluster, folder, config, tmp_path):
    out = tmp_path / "answers.jsonl"
    args = [sys.executable, "-m", "llava_video_app.cli", "ask", str(folder), QUESTION, "--jsonl", str(out),
            "--executor", "ray", "--address", ray_cluster.address, "--workers", "2", "--gpus-per-worker", "0",
            "--model", config.model, "--quant", "fp32", "--device", "cpu", "--frames", "8", "--max-new-tokens", "4"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answered 2, already in answers.jsonl 0, failed 0" in done.stderr
    assert "2 workers (the model on CPU each)" in done.stderr
    assert sorted(r["video"] for r in read_jsonl(out).records) == ["a.mp4", "sub/b.mp4"]


def test_a_model_that_cannot_load_stops_the_run_with_its_own_error(ray_cluster, folder, request_settings, tmp_path):
    from llava_video_app.checkpoint import CheckpointError

    missing = AppConfig(model=str(tmp_path / "no-model-here"), quant="fp32", device="cpu")
    with pytest.raises(CheckpointError, match="no-model-here"):
        ask_many_ray(str(folder), QUESTION, request_settings, tmp_path / "out.jsonl", missing, gpus_per_worker=0)
    assert not (tmp_path / "out.jsonl").exists() or not read_jsonl(tmp_path / "out.jsonl").records
