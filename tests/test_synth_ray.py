"""The Ray executor (synth/ray_runner.py) on one local Ray per module, 2 CPU workers, the tiny
checkpoint and 3 short videos: the same folder as the in-process runner (records field for field,
creation time aside; manifests too), resumed without duplicates, a worker killed mid-video retried
with nothing lost or doubled, and the CLI joining a running cluster with a manifest of URLs.

QA answers are scripted inside the workers by the engine factory in scripted_engines.py (the random
model cannot write QA JSON); descriptions are the tiny model's own, greedy, so both runners must
produce the same text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ray_fixtures import ray_cluster  # noqa: F401  (the module's local Ray)
from scripted_engines import scripted_qa_engine  # noqa: E402

from llava_video_app import output_folder as folder  # noqa: E402
from llava_video_app.config import AppConfig  # noqa: E402
from llava_video_app.synth.batch import run_batch  # noqa: E402
from llava_video_app.synth.plan import SynthOptions  # noqa: E402
from llava_video_app.synth.ray_runner import run_ray  # noqa: E402
from llava_video_app.synth.result import video_id_for  # noqa: E402

pytestmark = pytest.mark.slow

TYPES = ("Temporal", "Plot Understanding")
TOKENS = 6  # per description: gibberish from the tiny model, but it must be the same gibberish


def _options() -> SynthOptions:
    return SynthOptions.with_limits(description_tokens=TOKENS, types=TYPES)  # what the CLI builds from its flags


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from llava_video_app.sample_videos import make_video

    root = tmp_path_factory.mktemp("ray-videos")
    for name in ("a.mp4", "b.mp4", "sub/c.mp4"):
        make_video(root / name, seconds=12, fps=2, size=(64, 48))
    return root


@pytest.fixture(scope="module")
def config(tiny_checkpoint) -> AppConfig:
    return AppConfig(model=str(tiny_checkpoint), quant="fp32", device="cpu")


@pytest.fixture(scope="module")
def reference(videos, config, tmp_path_factory) -> Path:
    """The in-process runner's folder for the same videos, options and engine factory."""
    out = tmp_path_factory.mktemp("ray-reference") / "out"
    summary = run_batch(videos, out, _options(), engine=scripted_qa_engine(config), progress=False)
    assert (summary.done, summary.failed) == (3, 0)
    assert summary.records == {"cap": 3, "oe": 6, "mc": 6}  # every split, so the comparison covers them all
    return out


def records(out: Path) -> dict[str, dict]:
    """Every record by id, without its creation time; fails on a duplicate id."""
    found: dict[str, dict] = {}
    for path, record in folder.iter_records(out):
        record = dict(record, split_file=path.name)
        record.pop("created")
        assert record["id"] not in found, f"duplicate id {record['id']}"
        found[record["id"]] = record
    return found


def manifests(out: Path) -> dict[str, dict]:
    """The videos' manifests without times (creation, seconds per call)."""
    found = {}
    for path in sorted((out / folder.VIDEOS_DIR).glob("*.json")):
        m = json.loads(path.read_text())
        for key in ("created", "seconds"):
            m.pop(key)
        for d in m["descriptions"]:
            d.pop("seconds")
        found[path.stem] = m
    return found


def run(out: Path, videos: Path, config: AppConfig, **kw):
    return run_ray(videos, out, _options(), config=config, engine_factory=scripted_qa_engine, workers=2,
                   gpus_per_worker=0, progress=False, **kw)


def test_ray_writes_the_in_process_folder_and_a_rerun_adds_nothing(ray_cluster, videos, config, reference, tmp_path):
    out = tmp_path / "out"
    summary = run(out, videos, config)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 0)
    assert summary.records == {"cap": 3, "oe": 6, "mc": 6}
    assert records(out) == records(reference)
    assert manifests(out) == manifests(reference)
    assert sorted(p.name for p in folder.split_files(out, include_json=True)) == \
        sorted(p.name for p in folder.split_files(reference, include_json=True))
    assert not (out / folder.ERRORS_LOG).exists()

    again = run(out, videos, config)
    assert (again.done, again.skipped, again.failed) == (0, 3, 0) and not again.records
    assert records(out) == records(reference)  # no duplicate, nothing lost


def test_a_worker_killed_mid_video_is_retried_with_nothing_lost_or_doubled(ray_cluster, videos, config, reference,
                                                                          tmp_path):
    pause = ray_cluster.pause_dir
    (pause / "pause-on").write_text("b.mp4")
    out = tmp_path / "out"
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=run(out, videos, config)))
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while not (pause / "paused").exists():
            assert time.monotonic() < deadline and runner.is_alive(), "no worker reached the pause"
            time.sleep(0.2)
        pid = int((pause / "paused").read_text())
        manifest = folder.read_manifest(out, video_id_for("b.mp4"))
        assert (manifest["status"], manifest["attempts"]) == ("running", 1)  # under its lock, mid-video
        os.kill(pid, signal.SIGKILL)
    finally:
        runner.join(timeout=600)
        (pause / "pause-on").unlink()
        (pause / "paused").unlink(missing_ok=True)
    assert not runner.is_alive()
    summary = result["summary"]
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 0)  # b.mp4 was retried, not failed
    assert records(out) == records(reference)
    assert manifests(out) == manifests(reference)  # the retry's "done" manifest replaced the "running" one


def test_cli_joins_a_cluster_with_a_manifest_of_urls(ray_cluster, videos, config, reference, tmp_path):
    manifest = tmp_path / "videos.txt"
    manifest.write_text("# the three videos, as URLs\n" + "".join(
        f"file://{videos / name}\n" for name in ("a.mp4", "b.mp4", "sub/c.mp4")))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "llava_video_app.cli", "synth", str(manifest), "--out", str(out),
            "--executor", "ray", "--address", ray_cluster.address, "--workers", "2", "--gpus-per-worker", "0",
            "--video-root", f"file://{videos}", "--types", ",".join(TYPES), "--max-new-tokens", str(TOKENS),
            "--model", config.model, "--quant", "fp32", "--device", "cpu",
            "--engine-factory", "scripted_engines:scripted_qa_engine", "--quiet"]
    env = dict(os.environ)  # PYTHONPATH: this worktree and scripted_engines, as the fixture set it
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 done, 0 skipped" in done.stdout and "cap 3, oe 6, mc 6" in done.stdout
    assert records(out) == records(reference)  # fetched copies, same records
    for vid, m in manifests(out).items():
        assert m["video_path"] == f"file://{videos / m['video']}"  # the URL, not the temporary copy


def test_a_model_that_cannot_load_stops_the_run_with_its_own_error(ray_cluster, videos, tmp_path):
    """The worker's loader error reaches the driver as itself (a CheckpointError the CLI prints in one
    line), carried as text: nothing the workers send is unpickled by the package."""
    from llava_video_app.checkpoint import CheckpointError

    missing = AppConfig(model=str(tmp_path / "no-model-here"), quant="fp32", device="cpu")
    with pytest.raises(CheckpointError, match="no-model-here"):
        run_ray(videos, tmp_path / "out", _options(), config=missing, address=ray_cluster.address, progress=False)
