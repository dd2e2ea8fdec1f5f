"""The deadline on every probe and decode (video/deadline.py): a read that blocks where nothing can
interrupt it (a stalled disk, injected here by holding the container's open) ends the caller's wait
with a message, other videos are read meanwhile, and stuck reads are bounded."""

from __future__ import annotations

import threading

import pytest

from llava_video_app import video as video_stage
from llava_video_app.video import UnreadableVideoError, deadline, probe
from llava_video_app.video.admission import open_container


@pytest.fixture
def stall(monkeypatch):
    """Files whose name contains "stall" block in their open until `release` is set."""
    release = threading.Event()
    entered: list[str] = []

    def stalling_open(admitted):
        if "stall" in admitted.path:
            entered.append(admitted.path)
            release.wait()
        return open_container(admitted)

    monkeypatch.setattr(probe, "open_container", stalling_open)
    monkeypatch.setattr(deadline, "PROBE_DEADLINE_S", 0.5)
    yield release, entered
    release.set()
    for thread in threading.enumerate():
        if thread.name == "video-read":
            thread.join(timeout=30)


@pytest.mark.parametrize("entry", ["probe_video", "plan_clip"])
def test_a_stalled_read_ends_in_a_message_and_other_videos_are_read_meanwhile(entry, stall, sample_video,
                                                                              tmp_path):
    release, entered = stall
    stalled = tmp_path / "stall.mp4"
    stalled.write_bytes(sample_video.read_bytes())
    with pytest.raises(UnreadableVideoError) as refused:
        getattr(video_stage, entry)(stalled)
    assert str(refused.value) == f"{stalled} could not be read within 0.5 s (a stalled disk, mount or file?)"
    assert entered == [str(stalled)] and deadline.stuck_reads() == 1  # still blocked, abandoned
    assert video_stage.probe_video(sample_video).total_frames == 60  # another video meanwhile
    release.set()
    for thread in threading.enumerate():
        if thread.name == "video-read":
            thread.join(timeout=30)
    assert deadline.stuck_reads() == 0


def test_too_many_stuck_reads_refuse_new_work_at_once_until_they_end(stall, sample_video, tmp_path, monkeypatch):
    release, entered = stall
    monkeypatch.setattr(deadline, "MAX_STUCK", 2)
    for i in range(2):
        stalled = tmp_path / f"stall-{i}.mp4"
        stalled.write_bytes(sample_video.read_bytes())
        with pytest.raises(UnreadableVideoError, match="within 0.5 s"):
            video_stage.probe_video(stalled)
    with pytest.raises(UnreadableVideoError) as refused:
        video_stage.load_video(sample_video, num_frames=2)
    assert str(refused.value) == (f"{sample_video} was not read: 2 earlier reads are still stalled on this server "
                                  "(a hung disk or mount?); try again later")
    assert len(entered) == 2, "the refused read never started"
    release.set()
    for thread in threading.enumerate():
        if thread.name == "video-read":
            thread.join(timeout=30)
    assert video_stage.load_video(sample_video, num_frames=2).frames.shape[0] == 2


def test_errors_and_results_cross_the_thread_unchanged(sample_video, tmp_path):
    assert video_stage.plan_clip(sample_video, num_frames=4).frame_indices == [0, 19, 39, 59]
    with pytest.raises(video_stage.InvalidRangeError, match="past the end"):
        video_stage.plan_clip(sample_video, num_frames=4, start=99)
    assert deadline.stuck_reads() == 0
