"""The allowlist (video/admission.py): every playlist, concat and protocol trick is refused with one
line before any decoder opens it, and the secret file it names is never opened (inotify watches it);
the containers people use still open, each with its own demuxer, and decord only sees what it cannot
misread."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from llava_video_app import video as video_stage
from llava_video_app.sample_videos import make_video
from llava_video_app.video import NotAVideoError, UnreadableVideoError, VideoError
from llava_video_app.video.admission import admit, sniff
from opened_files import OpenedFiles
from playlist_tricks import NOT_FOUND, PLAYLIST_MESSAGE, TRICKS, make_tricks, protocol_names, secret_video

ENTRY_POINTS = {"probe_video": video_stage.probe_video, "plan_clip": video_stage.plan_clip,
                "load_video": lambda p: video_stage.load_video(p, num_frames=4)}


@pytest.fixture(scope="module")
def tricks(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tricks")
    return make_tricks(folder) | {"secret": secret_video(folder)}


@pytest.fixture
def watched(tricks):
    with OpenedFiles(tricks["secret"].parent) as opened:
        yield opened


@pytest.fixture
def listener():
    """A TCP port on loopback that records any connection (the http:// tricks point at port 9: this
    one stands in when a test redirects them)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    yield server
    server.close()


def test_the_probe_sees_a_read_of_the_secret(tricks, watched):
    """What makes the checks below able to fail: decoding the secret itself is seen."""
    video_stage.load_video(tricks["secret"], num_frames=2)
    assert "secret.mp4" in watched.take()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("name", list(TRICKS))
def test_every_trick_is_refused_in_one_line_and_its_target_is_never_opened(name, entry, tricks, watched):
    with pytest.raises(NotAVideoError) as refused:
        ENTRY_POINTS[entry](tricks[name])
    assert str(refused.value) == TRICKS[name][1].format(name=tricks[name])
    assert "\n" not in str(refused.value)
    assert watched.take() == []


@pytest.mark.parametrize("index", range(5))
def test_names_ffmpeg_reads_as_protocols_are_only_file_names(index, tricks, watched, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a relative name resolves here, where no such file exists
    name = protocol_names(tricks["secret"])[index]
    watched.take()  # making the data: name read the secret
    with pytest.raises(VideoError) as refused:
        video_stage.load_video(name, num_frames=2)
    assert str(refused.value).startswith(NOT_FOUND.format(name="")) or "could not be read" in str(refused.value)
    assert watched.take() == []


def test_a_live_playlist_and_a_fifo_are_refused_at_once_not_waited_on(tricks, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    outcomes: list[str] = []

    def probe_all() -> None:
        for path in (tricks["live.m3u8"], fifo, Path("/dev/zero")):
            try:
                video_stage.probe_video(path)
            except VideoError as err:
                outcomes.append(str(err))

    worker = threading.Thread(target=probe_all, daemon=True)
    worker.start()
    worker.join(timeout=60)  # a guard against a hang only: the refusals read no more than 1 KB each
    assert not worker.is_alive(), "a live playlist, a FIFO or a device blocked the probe"
    assert outcomes[0] == PLAYLIST_MESSAGE.format(name=tricks["live.m3u8"])
    assert outcomes[1] == f"{fifo} is not a regular file (a pipe, socket or device): only a video file is accepted"
    assert outcomes[2].startswith("/dev/zero is not a regular file")


def test_a_playlist_under_any_name_or_with_a_byte_order_mark_is_refused(tricks, tmp_path):
    for name in ("clip.ts", "clip.mkv", "clip", "clip.avi"):
        copy = shutil.copy(tricks["absolute.m3u8"], tmp_path / name)
        with pytest.raises(NotAVideoError, match="is an HLS playlist"):
            video_stage.probe_video(copy)
    bom = tmp_path / "bom.m3u8"
    bom.write_bytes(b"\xef\xbb\xbf" + tricks["absolute.m3u8"].read_bytes())
    with pytest.raises(NotAVideoError, match="is an HLS playlist"):
        video_stage.probe_video(bom)


def test_the_http_trick_connects_nowhere(tricks, listener, tmp_path):
    port = listener.getsockname()[1]
    playlist = tmp_path / "remote.m3u8"
    playlist.write_text(tricks["http.m3u8"].read_text().replace(":9/", f":{port}/"))
    with pytest.raises(NotAVideoError):
        video_stage.load_video(playlist, num_frames=2)
    with pytest.raises(socket.timeout):
        listener.accept()


def test_a_symlink_is_followed_to_the_file_it_names_and_judged_by_that(tricks, tmp_path):
    link = tmp_path / "link.mp4"
    link.symlink_to(tricks["secret"])
    assert video_stage.probe_video(link).total_frames == 10  # a CLI user's own link to a video
    (tmp_path / "to-playlist.mp4").symlink_to(tricks["absolute.m3u8"])
    with pytest.raises(NotAVideoError, match="is an HLS playlist"):
        video_stage.probe_video(tmp_path / "to-playlist.mp4")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with pytest.raises(UnreadableVideoError, match="video file not found"):
        video_stage.probe_video(tmp_path / "dangling.mp4")


@pytest.mark.parametrize("container,codec,demuxer", [("mp4", "h264", "mov"), ("mov", "h264", "mov"),
                                                     ("mkv", "h264", "matroska"), ("avi", "mpeg4", "avi"),
                                                     ("ts", "h264", "mpegts"), ("flv", "h264", "flv")])
def test_the_containers_people_use_are_admitted_with_their_own_demuxer(container, codec, demuxer, tmp_path):
    path = _encode(tmp_path / f"clip.{container}", codec)
    assert admit(path).demuxer == demuxer
    clip = video_stage.load_video(path, num_frames=4)
    assert clip.frames.shape[0] == 4


def test_decord_only_sees_plain_names_of_its_own_containers(tmp_path):
    plain = make_video(tmp_path / "clip.mkv", seconds=1, fps=10, size=(64, 48), codec="h264")
    assert admit(plain).decord_safe
    for odd in ("clip%03d.mkv", "clip*.mkv", "clip.jpg", "clip.bin"):
        renamed = Path(shutil.copy(plain, tmp_path / odd))
        assert not admit(renamed).decord_safe
        assert video_stage.probe_video(renamed).decoder == "pyav"  # an image pattern or glob reads nothing else
    ts = _encode(tmp_path / "clip.ts", "h264")
    assert admit(ts).decord_safe


@pytest.mark.parametrize("frames", [10, 60])  # one keyframe; x264 marks later I-frames as keys in MPEG-TS
def test_short_mpeg_ts_clips_are_read_by_pyav_from_the_start(frames, tmp_path, monkeypatch):
    monkeypatch.setenv(video_stage.DECODER_ENV, "pyav")  # decord reads them too; PyAV is its fallback
    clip = video_stage.load_video(_encode(tmp_path / "clip.ts", "h264", frames), num_frames=4, size=None)
    assert clip.frame_indices == [0, (frames - 1) // 3, 2 * (frames - 1) // 3, frames - 1]
    assert [int(f.mean()) for f in clip.frames] == pytest.approx([_grey(i) for i in clip.frame_indices], abs=3)


def test_sniffing_reads_only_the_signatures():
    assert sniff(b"\x00\x00\x00\x20ftypisom") == "mov"
    assert sniff(b"\x1a\x45\xdf\xa3\x01") == "matroska"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # audio
    assert sniff(b"\x47" + bytes(187) + b"\x47" + bytes(187) + b"\x47") == "mpegts"
    assert sniff(b"\x47" + bytes(187) + b"\x00") is None
    assert sniff(b"\x00\x00\x00\x01\x67\x64") == "h264"  # SPS: a raw stream (tests/test_video_raw_h264.py)
    assert sniff(b"\x00\x00\x00\x01\x65") is None  # a slice first: not the start of a stream
    assert sniff(b"#EXTM3U\n") is None and sniff(b"ffconcat version 1.0\n") is None


def _grey(i: int) -> int:
    return 16 + (i * 20) % 220


def _encode(path: Path, codec: str, frames: int = 10) -> Path:
    """`frames` flat grey frames (frame i is _grey(i)) at 10 fps."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), _grey(i), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# --- the interfaces: the Ask tab's handlers and synthesis over a folder (the API and the CLI: test_hostile.py) ---

@pytest.mark.parametrize("name", ["absolute.m3u8", "self.m3u8", "live.m3u8", "concat.ffconcat",
                                  "playlist-renamed.mp4"])
def test_the_ask_tab_refuses_each_trick_in_one_line_and_opens_nothing(name, tricks, watched, tiny_engine):
    import gradio as gr

    from llava_video_app.web.ask_tab import VideoChat

    chat, video = VideoChat(tiny_engine), str(tricks[name])
    expected = TRICKS[name][1].format(name=name)
    with pytest.warns(UserWarning, match="not a video file"):
        *_, info, state, _, _ = chat.on_video(video)  # dropping the file in: the header probe
    assert info == f"**Not a usable video:** {expected}"
    with pytest.raises(gr.Error) as refused:
        list(chat.ask(video, "What?", 0, None, 8, 4, 0.0, 1.0, None))
    assert refused.value.message == expected
    assert watched.take() == []


def test_synthesis_over_a_folder_logs_a_renamed_playlist_as_failed_and_reads_only_the_videos(
        tricks, watched, tiny_engine, quick_synth_options, tmp_path):
    from llava_video_app import output_folder as folder
    from llava_video_app.synth.batch import run_batch

    videos = tmp_path / "downloads"
    make_video(videos / "real.mp4", seconds=4, fps=2, size=(64, 48))
    shutil.copy(tricks["playlist-renamed.mp4"], videos / "renamed.mp4")  # names the secret by its absolute path
    out = tmp_path / "out"
    summary = run_batch(videos, out, quick_synth_options(types=("Count",)), engine=tiny_engine, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    assert PLAYLIST_MESSAGE.format(name=videos / "renamed.mp4") in (out / "errors.log").read_text()
    assert {record["video"] for _, record in folder.iter_records(out)} == {"real.mp4"}
    assert watched.take() == []
