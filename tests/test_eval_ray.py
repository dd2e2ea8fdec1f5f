"""Benchmark runs on the Ray executor (eval/ray_run.py): one local Ray with 2 CPU workers,
the scripted eval engine built inside the workers; the same records as the in-process runner,
resumed without duplicates, and the CLI's --executor ray. The local Ray and its gate: tests/ray_fixtures.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eval_fixtures import write
from ray_fixtures import ray_cluster  # noqa: F401  (the module's local Ray)
from scripted_eval import ScriptedEvalEngine, scripted_eval_engine  # noqa: E402

from llava_video_app.config import AppConfig  # noqa: E402
from llava_video_app.eval.ray_run import run_eval_ray  # noqa: E402
from llava_video_app.eval.run import run_eval  # noqa: E402
from llava_video_app.jsonl import read_jsonl  # noqa: E402

pytestmark = pytest.mark.slow

CONFIG = AppConfig(frames=4, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from llava_video_app.sample_videos import make_video

    root = tmp_path_factory.mktemp("eval-ray")
    video = make_video(root / "v.mp4", seconds=4, fps=4, size=(64, 48))
    write("mvbench", root / "mvbench", video)
    return root / "mvbench"


def records(out: Path) -> dict[str, dict]:
    found = {}
    for r in read_jsonl(out / "samples.jsonl").records:
        r["provenance"].pop("created")
        assert r["id"] not in found
        found[r["id"]] = r
    return found


def test_ray_writes_the_in_process_records_and_resumes(ray_cluster, data, tmp_path):
    reference = tmp_path / "reference"
    local = run_eval("mvbench", data, reference, CONFIG, engine=ScriptedEvalEngine(CONFIG), progress=False)
    out = tmp_path / "ray"
    summary = run_eval_ray("mvbench", data, out, CONFIG, engine_factory=scripted_eval_engine, workers=2,
                           gpus_per_worker=0, progress=False)
    assert (summary.answered, len(summary.skipped)) == (2, 1) == (local.answered, len(local.skipped))
    assert records(out) == records(reference)
    assert summary.report.overall == local.report.overall
    again = run_eval_ray("mvbench", data, out, CONFIG, engine_factory=scripted_eval_engine, workers=2,
                         gpus_per_worker=0, progress=False)
    assert (again.answered, again.resumed) == (0, 2) and records(out) == records(reference)


def test_cli_eval_on_a_running_cluster(ray_cluster, data, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    args = [sys.executable, "-m", "llava_video_app.cli", "eval", "mvbench", "--data", str(data), "--out", str(out),
            "--executor", "ray", "--address", ray_cluster.address, "--workers", "2", "--gpus-per-worker", "0",
            "--frames", "4", "--device", "cpu", "--engine-factory", "scripted_eval:scripted_eval_engine", "--quiet"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 questions: 2 answered now, 0 already done, 1 skipped" in done.stdout
    assert len(records(out)) == 2
