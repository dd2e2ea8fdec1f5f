"""A full, read-only or forbidden output disk (issue 18): `llava-video synth` ends with one line naming
the folder and the cause and exit 1, nothing written before is lost or torn, and the next run resumes;
the app's Save and Download say the same in their words. The CLI runs on a real tiny tmpfs (full, then
remounted read-only) where this machine lets the tests mount one; the rest injects the OS's error."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from llava_video_app import output_folder as folder
from llava_video_app.dataset_report import check_dataset
from llava_video_app.sample_videos import make_video
from llava_video_app.synth import saving
from llava_video_app.synth.batch import run_batch
from llava_video_app.synth.plan import SynthOptions

CLI = [sys.executable, "-m", "llava_video_app.cli"]
FULL = "the disk is full (No space left on device)"
READ_ONLY = "the file system is read-only (Read-only file system)"
ADVICE = "make room or choose another folder, then run again: what was saved is kept"


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, FULL), (errno.EROFS, READ_ONLY),
                                        (errno.EACCES, "permission denied (Permission denied)")])
def test_a_disk_refusal_becomes_one_line_naming_the_folder_and_other_errors_stay_themselves(code, cause, tmp_path):
    with pytest.raises(folder.FolderNotWritable) as refused:
        with folder.writing_to(tmp_path / "out"):
            raise OSError(code, __import__("os").strerror(code))
    assert str(refused.value) == f"cannot write to {tmp_path / 'out'}: {cause}; {ADVICE}"
    with pytest.raises(OSError) as other:
        with folder.writing_to(tmp_path / "out"):
            raise OSError(errno.EIO, "Input/output error")
    assert not isinstance(other.value, folder.FolderNotWritable)


def _fill_up_after(monkeypatch, videos: int, code: int = errno.ENOSPC) -> None:
    """Saving a video's records works `videos` times, then the disk refuses (as a full disk does)."""
    real = saving.save_result
    calls = []

    def save(out_dir, result, **kw):
        calls.append(result.video_id)
        if len(calls) > videos:
            raise OSError(code, __import__("os").strerror(code))
        return real(out_dir, result, **kw)

    monkeypatch.setattr(saving, "save_result", save)


def _videos(out: Path) -> set[str]:
    return {record["video"] for _, record in folder.iter_records(out)}


@pytest.fixture
def three_videos(tmp_path):
    root = tmp_path / "videos"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_video(root / name, seconds=4, fps=2, size=(64, 48))
    return root


def test_a_disk_that_fills_mid_run_stops_it_with_one_line_and_the_next_run_resumes(three_videos, scripted_engine,
                                                                                   tmp_path, monkeypatch):
    out = tmp_path / "out"
    options = SynthOptions(types=("Temporal",))
    _fill_up_after(monkeypatch, videos=1)
    with pytest.raises(folder.FolderNotWritable) as refused:
        run_batch(three_videos, out, options, engine=scripted_engine(), progress=False)
    assert str(refused.value) == f"cannot write to {out}: {FULL}; {ADVICE}"
    assert _videos(out) == {"a.mp4"} and check_dataset(out)[1] == [], "the first video's records, whole"
    assert not (out / folder.ERRORS_LOG).exists(), "the disk's refusal is not the video's failure"
    monkeypatch.undo()  # room again
    again = run_batch(three_videos, out, options, engine=scripted_engine(), progress=False)
    assert (again.done, again.skipped, again.failed) == (2, 1, 0)
    assert _videos(out) == {"a.mp4", "b.mp4", "c.mp4"} and check_dataset(out)[1] == []


def test_the_app_save_and_download_say_which_folder_and_why(tiny_engine, scripted_qa, tmp_path, monkeypatch):
    from llava_video_app.web.serving import ModelRunner
    from llava_video_app.web.synth_tab import SynthPanel

    video = str(make_video(tmp_path / "clip.mp4", seconds=6, fps=5, size=(64, 48)))
    scripted_qa(tiny_engine, lambda kind: {"Question": "Q?", "Answer": "A.", "Correct Option": "one",
                                           "Wrong Options": ["two", "three", "four"]})
    panel = SynthPanel(ModelRunner(tiny_engine), out_dir=tmp_path / "out")
    outputs = list(panel.generate(video, ["Temporal"], 4, 16))
    table, result = outputs[-1][4], outputs[-1][5]
    real = saving.save_edited_pairs
    monkeypatch.setattr("llava_video_app.web.synth_tab.save_edited_pairs",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(gr.Error) as refused:
        panel.save(result, table)
    assert refused.value.message == f"cannot write to {(tmp_path / 'out').resolve()}: {FULL}; {ADVICE}"
    monkeypatch.setattr("llava_video_app.web.synth_tab.save_edited_pairs", real)
    assert "Saved to" in panel.save(result, table)  # room again: saved, and the folder is valid
    assert check_dataset(tmp_path / "out")[1] == []
    monkeypatch.setattr("llava_video_app.web.synth_tab.export_run",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    with pytest.raises(gr.Error) as refused:
        panel.download()
    assert re.fullmatch(rf"cannot write to \S+/llava-video-exports/\w+: {re.escape(READ_ONLY)}; {ADVICE}",
                        refused.value.message)
    panel.per_session = True  # a shared app names no server path
    panel.save(result, table)  # into the session's own folder
    with pytest.raises(gr.Error) as refused:
        panel.download()
    assert refused.value.message.startswith("cannot write to the server's temporary folder: the file system is "
                                            "read-only")


# --- the CLI on a real tmpfs --------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 48 KB tmpfs at tmp_path/disk, unmounted afterwards; skipped where this machine cannot mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_cli_synth_on_a_full_then_read_only_disk_is_one_line_exit_1_and_resumes(tiny_disk, three_videos,
                                                                                tiny_checkpoint, tmp_path):
    out = tiny_disk / "out"
    args = ["synth", str(three_videos), "--out", str(out), "--types", "Temporal", "--model", str(tiny_checkpoint),
            "--quant", "fp32", "--device", "cpu", "--max-new-tokens", "4", "--qa-max-new-tokens", "4", "--quiet"]
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * (40 * 1024))  # what is left: too little for the run
    full = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.strip().splitlines()[-1] == f"error: cannot write to {out}: {FULL}; {ADVICE}"
    assert check_dataset(out)[1] == [], "what was written is valid"
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    read_only = subprocess.run([*CLI, *args[:3], str(tiny_disk / "new"), *args[4:]], capture_output=True, text=True,
                               timeout=600)
    assert read_only.returncode == 1 and "Traceback" not in read_only.stderr, read_only.stderr
    assert read_only.stderr.strip().splitlines()[-1] == (f"error: cannot write to {tiny_disk / 'new'}: {READ_ONLY}; "
                                                         f"{ADVICE}")
    subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    ballast.unlink()  # room again
    resumed = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _videos(out) == {"a.mp4", "b.mp4", "c.mp4"} and check_dataset(out)[1] == []
