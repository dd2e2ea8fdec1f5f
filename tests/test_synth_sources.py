"""What a run covers (synth/sources.py: folders, globs, manifests, fsspec URLs fetched to a local
file), the per-video step both runners share (synth/one_video.py: attempts after worker deaths,
remote videos), and the Ray runner's pure parts (worker planning, the message without Ray), none of
which needs Ray."""

from __future__ import annotations

import json
import sys

import pytest

from llava_video_app import output_folder as folder
from llava_video_app.config import AppConfig
from llava_video_app.synth.batch import run_batch
from llava_video_app.synth.one_video import MAX_ATTEMPTS, process_video
from llava_video_app.synth.plan import SynthOptions
from llava_video_app.ray_pool import WorkerPlan, import_ray, plan_workers, worker_config
from llava_video_app.synth.result import video_id_for
from llava_video_app.synth.sources import VideoSource, list_videos, local_copy


@pytest.fixture
def tree(tmp_path):
    """videos/{a.mp4, sub/b.webm, notes.txt, .hidden/c.mp4} as empty files (listing reads no video)."""
    root = tmp_path / "videos"
    for name in ("a.mp4", "sub/b.webm", "notes.txt", ".hidden/c.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def relatives(listing):
    return [s.relative for s in listing.sources]


def test_a_folder_a_file_and_a_glob(tree, monkeypatch):
    assert relatives(list_videos(tree)) == ["a.mp4", "sub/b.webm"]  # by extension, hidden folders skipped
    single = list_videos(tree / "sub" / "b.webm")
    assert relatives(single) == ["b.webm"] and single.root == str(tree / "sub")
    monkeypatch.chdir(tree.parent)
    globbed = list_videos("videos/**/*.webm")
    assert relatives(globbed) == ["sub/b.webm"] and globbed.root == str(tree)  # the folder before the wildcard
    assert globbed.sources[0].location == str(tree / "sub" / "b.webm")  # absolute: workers have other cwds
    with pytest.raises(FileNotFoundError, match="no file matches"):
        list_videos("videos/*.mkv")


def test_a_manifest_lists_paths_relative_to_itself(tree, tmp_path):
    manifest = tree / "list.txt"
    manifest.write_text("# clips\na.mp4\n\n  sub/b.webm  \n")
    listing = list_videos(manifest)
    assert relatives(listing) == ["a.mp4", "sub/b.webm"]
    assert [s.video_id for s in listing.sources] == [video_id_for("a.mp4"), video_id_for("sub/b.webm")]
    outside = tmp_path / "lists" / "other.txt"  # its entries are not under its folder
    outside.parent.mkdir()
    outside.write_text(f"{tree / 'a.mp4'}\n{tmp_path / 'elsewhere.mp4'}\n")
    with pytest.raises(ValueError, match="not inside the video root.*pass --video-root"):
        list_videos(outside)
    assert relatives(list_videos(outside, video_root=tmp_path)) == ["videos/a.mp4", "elsewhere.mp4"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no video"):
        list_videos(tmp_path / "empty.txt")
    (tmp_path / "globs.txt").write_text("videos/*.mp4\n")
    with pytest.raises(ValueError, match="globs.txt:1: a manifest lists files, not globs"):
        list_videos(tmp_path / "globs.txt")


def test_urls_list_and_fetch_through_fsspec(tree):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/clips/x.mp4", b"video bytes")
    memory.pipe("/clips/deeper/y.mkv", b"more")
    memory.pipe("/clips/readme.md", b"not a video")
    try:
        listing = list_videos("memory://clips")
        assert relatives(listing) == ["deeper/y.mkv", "x.mp4"]
        assert relatives(list_videos("memory://clips/*.mp4")) == ["x.mp4"]
        (source,) = list_videos("memory://clips/x.mp4").sources
        assert source.is_remote and source.relative == "x.mp4"
        with local_copy(source) as (path, root):
            assert path.read_bytes() == b"video bytes" and path.relative_to(root).as_posix() == "x.mp4"
        assert not path.exists()  # the temporary copy is gone afterwards
        manifest = tree / "urls.txt"
        manifest.write_text("memory://clips/x.mp4\nmemory:///clips/deeper/y.mkv\n")
        assert relatives(list_videos(manifest)) == ["clips/x.mp4", "clips/deeper/y.mkv"]  # no root: the path
        assert relatives(list_videos(manifest, video_root="memory://clips")) == ["x.mp4", "deeper/y.mkv"]
        with pytest.raises(FileNotFoundError, match="memory://clips/none.mp4 does not exist"):
            list_videos("memory://clips/none.mp4")
    finally:
        memory.rm("/clips", recursive=True)


def test_a_url_without_its_filesystem_package_is_one_line(tree):
    pytest.importorskip("fsspec")
    if "s3fs" in sys.modules or _importable("s3fs"):
        pytest.skip("s3fs is installed here")
    with pytest.raises(ValueError, match=r"^s3://bucket/a\.mp4: .*s3fs"):
        list_videos("s3://bucket/a.mp4")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- the per-video step ----------------------------------------------------------------------------

def test_remote_videos_run_from_a_fetched_copy_with_the_url_in_the_manifest(synth_videos, scripted_engine, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/short.mp4", synth_videos[25].read_bytes())
    try:
        out = tmp_path / "out"
        summary = run_batch("memory://bucket", out, SynthOptions(types=("Temporal",)), engine=scripted_engine(),
                            progress=False)
    finally:
        memory.rm("/bucket", recursive=True)
    assert (summary.done, summary.failed) == (1, 0) and summary.records["cap"] == 1
    local = tmp_path / "local"
    run_batch(synth_videos[25], local, SynthOptions(types=("Temporal",)), engine=scripted_engine(), progress=False)
    vid = video_id_for("short.mp4")  # the same record path, so the same ids as from the local file
    assert folder.read_manifest(out, vid)["video_path"] == "memory:///bucket/short.mp4"  # as fsspec lists it
    strip = lambda r: {k: v for k, v in r.items() if k != "created"}  # noqa: E731
    assert [strip(r) for _, r in folder.iter_records(out)] == [strip(r) for _, r in folder.iter_records(local)]


def test_a_video_that_killed_its_worker_too_often_is_logged_as_failed(synth_videos, scripted_engine, tmp_path):
    out = tmp_path / "out"
    source = list_videos(synth_videos[25]).sources[0]
    options = SynthOptions(types=("Temporal",))
    # What a worker that died mid-video leaves behind: the "running" mark, its attempts counted, its run.
    folder.write_manifest(out, source.video_id, {"status": "running", "attempts": MAX_ATTEMPTS, "run": "run-1"})
    engine = scripted_engine()
    outcome = process_video(source, out, options, lambda: engine, run_id="run-1")
    assert outcome.status == "failed" and f"died during this video {MAX_ATTEMPTS} times" in outcome.error
    assert engine.calls == {}  # not run again
    assert folder.read_manifest(out, source.video_id)["status"] == "failed"
    assert "died during this video" in (out / folder.ERRORS_LOG).read_text()
    again = process_video(source, out, options, lambda: engine)  # a new run tries it afresh
    assert again.status == "done" and folder.read_manifest(out, source.video_id)["status"] == "done"


def test_a_video_killed_mid_run_three_times_by_separate_runs_is_retried_by_the_next(synth_videos, scripted_engine,
                                                                                   tmp_path):
    """Three processes (runs) each SIGKILLed during the same video, as `kill -9` of `llava-video synth`
    does: deaths count within a run, so the fourth run retries the video instead of logging it failed."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    source = list_videos(synth_videos[25]).sources[0]
    script = (
        "import os, signal, sys\n"
        "from llava_video_app.synth.one_video import process_video\n"
        "from llava_video_app.synth.plan import SynthOptions\n"
        "from llava_video_app.synth.sources import list_videos\n"
        "class Killed:\n"
        "    def __getattr__(self, name):  # the recipe's first use of the engine: mid-video\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "source = list_videos(sys.argv[1]).sources[0]\n"
        "process_video(source, sys.argv[2], SynthOptions(types=('Temporal',)), Killed)\n")
    for _ in range(3):
        killed = subprocess.run([sys.executable, "-c", script, str(synth_videos[25]), str(out)], timeout=120)
        assert killed.returncode == -signal.SIGKILL
        assert folder.read_manifest(out, source.video_id)["status"] == "running"
    outcome = process_video(source, out, SynthOptions(types=("Temporal",)), scripted_engine)
    assert outcome.status == "done", outcome.error
    assert folder.read_manifest(out, source.video_id)["status"] == "done"


def test_one_death_is_retried_and_a_stop_leaves_no_running_mark(synth_videos, scripted_engine, tmp_path):
    import threading

    out = tmp_path / "out"
    source = list_videos(synth_videos[25]).sources[0]
    options = SynthOptions(types=("Temporal",))
    folder.write_manifest(out, source.video_id, {"status": "running", "attempts": 1})
    assert process_video(source, out, options, scripted_engine).status == "done"
    stopped = tmp_path / "stopped"
    stop = threading.Event()
    stop.set()
    from llava_video_app.synth.one_video import VideoStopped

    with pytest.raises(VideoStopped):
        process_video(source, stopped, options, scripted_engine, stop=stop)
    assert not folder.manifest_path(stopped, source.video_id).exists()  # a stop is not a crash: nothing counted


def test_an_engine_is_made_only_for_a_video_to_run(synth_videos, tmp_path):
    out = tmp_path / "out"
    source = VideoSource(str(synth_videos[25]), "short.mp4", str(synth_videos["root"]))
    folder.write_manifest(out, source.video_id, {"status": "done"})

    def no_engine():
        raise AssertionError("the engine was asked for")

    assert process_video(source, out, SynthOptions(), no_engine).status == "skipped"
    assert json.loads(folder.manifest_path(out, source.video_id).read_text()) == {"status": "done"}


# --- the Ray runner's pure parts ---------------------------------------------------------------------

def test_workers_follow_the_cluster():
    assert plan_workers({"CPU": 64, "GPU": 8}) == WorkerPlan(8, 1.0)  # one model per GPU
    assert plan_workers({"CPU": 64, "GPU": 8}, gpus_per_worker=2) == WorkerPlan(4, 2.0)
    assert plan_workers({"CPU": 64, "GPU": 8}, workers=3) == WorkerPlan(3, 1.0)
    assert plan_workers({"CPU": 2}) == WorkerPlan(2, 0.0)  # CPU workers, one core each
    assert plan_workers({"CPU": 2}, workers=1) == WorkerPlan(1, 0.0)
    assert plan_workers({"CPU": 16, "GPU": 2}, gpus_per_worker=0, workers=4) == WorkerPlan(4, 0.0)
    with pytest.raises(ValueError, match="no GPU: pass --gpus-per-worker 0"):
        plan_workers({"CPU": 2}, gpus_per_worker=1)
    with pytest.raises(ValueError, match="9 workers x 1 GPU need 9 GPUs; the Ray cluster has 8"):
        plan_workers({"CPU": 64, "GPU": 8}, workers=9)
    with pytest.raises(ValueError, match="3 CPU workers need 3 CPUs; the Ray cluster has 2"):
        plan_workers({"CPU": 2}, workers=3)


def test_a_worker_loads_its_model_where_it_runs():
    gpu, cpu = WorkerPlan(2, 1.0), WorkerPlan(2, 0.0)
    assert worker_config(AppConfig(), gpu).device == "cuda" and worker_config(AppConfig(), gpu).model is None
    assert worker_config(AppConfig(), cpu).device == "cpu"
    with pytest.raises(ValueError, match="sees only its own GPU"):
        worker_config(AppConfig(device="cuda:3"), gpu)
    with pytest.raises(ValueError, match="needs GPU workers"):
        worker_config(AppConfig(device="cuda"), cpu)


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    with pytest.raises(ValueError, match=r"pip install -e '\.\[ray\]'"):
        import_ray()
