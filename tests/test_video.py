"""Video stage: the authors' sampling, decoders that agree on what frame i is, clear errors."""

from __future__ import annotations

import threading
import wave

import av
import numpy as np
import pytest

from llava_video_app.prompts import format_timestamps
from llava_video_app.sample_videos import available_codecs, make_video, read_index
from llava_video_app.video.decord_reader import DecordSource
from llava_video_app.video.pyav_reader import PyAVSource
from llava_video_app.video import (
    EmptyVideoError,
    InvalidRangeError,
    NotAVideoError,
    UnreadableVideoError,
    VideoError,
    load_video,
    plan_clip,
    probe_video,
    sample_indices,
)

DECODERS = ["decord", "pyav"]


def authors(first: int, last: int, count: int) -> list[int]:
    return np.linspace(first, last, count, dtype=int).tolist()


@pytest.fixture(params=DECODERS)
def decoder(request, monkeypatch) -> str:
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", request.param)
    return request.param


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Small videos whose frames encode their own index; short GOPs so that decoding has to seek."""
    folder = tmp_path_factory.mktemp("video-stage")
    made = {"h264": make_video(folder / "index.mp4", seconds=12, fps=25, size=(160, 120), pattern="index", gop=25)}
    made["mpeg4"] = make_video(folder / "index-mpeg4.mp4", seconds=4, fps=25, size=(160, 120), pattern="index",
                               codec="mpeg4", gop=20)
    made["vp9"] = make_video(folder / "index.webm", seconds=4, fps=25, size=(160, 120), pattern="index", codec="vp9",
                             gop=20)
    made["short"] = make_video(folder / "short.mp4", seconds=2, fps=10, size=(160, 120), pattern="index")
    made["square"] = make_video(folder / "square.mp4", seconds=6, fps=10, size=(160, 120))
    return made


# --- sampling -------------------------------------------------------------------------------------

def test_64_frames_from_a_25_second_video_are_the_authors_indices():
    indices = sample_indices(625, 25.0, num_frames=64)
    assert indices == authors(0, 624, 64)
    assert indices[:4] == [0, 9, 19, 29] and indices[-1] == 624


def test_fewer_frames_than_requested_repeats_frames_like_the_authors():
    indices = sample_indices(20, 10.0, num_frames=64)
    assert indices == authors(0, 19, 64) and len(indices) == 64 and indices.count(0) == 4


def test_a_trim_samples_inside_the_range_in_the_original_videos_time():
    # first = ceil(start * fps), last = min(n - 1, floor(end * fps))
    assert sample_indices(625, 25.0, num_frames=8, start=2.0, end=10.0) == authors(50, 250, 8)
    assert sample_indices(625, 25.0, num_frames=8, start=2.01, end=9.99) == authors(51, 249, 8)
    assert sample_indices(625, 25.0, num_frames=8, start=20.0) == authors(500, 624, 8)
    assert sample_indices(625, 25.0, num_frames=8, end=25.0) == authors(0, 624, 8)  # end = duration is fine
    assert sample_indices(625, 25.0, num_frames=4, start=0.4, end=0.44) == [10, 10, 10, 11]


@pytest.mark.parametrize("kwargs", [
    dict(start=-1.0), dict(start=25.0), dict(start=30.0), dict(start=5.0, end=5.0), dict(start=5.0, end=4.0),
    dict(end=26.0), dict(num_frames=0), dict(sample_fps=0.0), dict(sample_fps=1.0, max_frames=0),
    dict(start=0.41, end=0.43),  # between two frames: no frame in the range
])
def test_impossible_ranges_are_invalid_range_errors(kwargs):
    with pytest.raises(InvalidRangeError) as err:
        sample_indices(625, 25.0, **{"num_frames": 8, **kwargs})
    assert "\n" not in str(err.value) and str(err.value)


def test_sample_fps_takes_one_frame_per_second_and_caps_uniformly():
    assert sample_indices(1750, 25.0, sample_fps=1.0) == list(range(0, 1750, 25))  # 70 s, 70 frames
    capped = sample_indices(1750, 25.0, sample_fps=1.0, max_frames=32)
    every_second = list(range(0, 1750, 25))
    assert capped == [every_second[k] for k in authors(0, 69, 32)]
    assert sample_indices(1750, 25.0, sample_fps=2.0, start=10.0, end=12.0) == [250, 262, 275, 288, 300]
    assert sample_indices(300, 29.97, sample_fps=1.0)[:4] == [0, 30, 60, 90]
    # sample_fps wins over num_frames
    assert sample_indices(1750, 25.0, num_frames=64, sample_fps=1.0) == every_second


# --- decoding -------------------------------------------------------------------------------------

def test_timestamps_duration_and_the_prompts_timestamp_text(videos):
    clip = load_video(videos["square"], num_frames=8)
    assert clip.total_frames == 60 and clip.fps == 10.0 and clip.duration == 6.0
    assert clip.frame_indices == authors(0, 59, 8) == [0, 8, 16, 25, 33, 42, 50, 59]
    assert format_timestamps(clip.timestamps) == "0.00s,0.80s,1.60s,2.50s,3.30s,4.20s,5.00s,5.90s"
    trimmed = load_video(videos["square"], num_frames=4, start=2.0, end=4.0)
    assert trimmed.frame_indices == authors(20, 40, 4) and trimmed.timestamps == [2.0, 2.6, 3.3, 4.0]
    assert trimmed.duration == 6.0 and (trimmed.start, trimmed.end) == (2.0, 4.0)


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp9"])
def test_decoded_frames_are_the_requested_indices_under_both_decoders(videos, decoder, codec):
    for kwargs in (dict(num_frames=64), dict(num_frames=7, start=1.0, end=3.5), dict(sample_fps=4.0)):
        clip = load_video(videos[codec], size=None, **kwargs)
        assert clip.decoder == decoder
        assert [read_index(frame) for frame in clip.frames] == clip.frame_indices, kwargs


def test_short_video_duplicates_are_decoded_too(videos, decoder):
    clip = load_video(videos["short"], num_frames=64, size=(96, 64))
    assert clip.frames.shape == (64, 64, 96, 3)
    assert [read_index(frame) for frame in clip.frames] == clip.frame_indices == authors(0, 19, 64)


def test_both_decoders_give_identical_pixels_at_native_size(videos, monkeypatch):
    frames = {}
    for name in DECODERS:
        monkeypatch.setenv("LLAVA_VIDEO_DECODER", name)
        frames[name] = load_video(videos["square"], num_frames=16, size=None).frames
    assert np.array_equal(frames["decord"], frames["pyav"])


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_pyav_seeking_and_frame_skipping_match_a_plain_sequential_decode(videos, monkeypatch, codec):
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", "pyav")
    clip = load_video(videos[codec], num_frames=13, size=None)
    with av.open(str(videos[codec])) as container:
        every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert np.array_equal(clip.frames, np.stack([every[i] for i in clip.frame_indices]))


def test_a_file_replaced_in_place_is_read_afresh_not_from_the_remembered_frame_table(tmp_path, monkeypatch):
    """PyAV remembers each file's frame table (a whole-file read); a new file under the same name
    must not be decoded with the old table."""
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", "pyav")
    path = make_video(tmp_path / "clip.mp4", seconds=2, fps=25, size=(160, 120), pattern="index", gop=10)
    first = load_video(path, num_frames=8, size=None)
    assert first.total_frames == 50 and [read_index(f) for f in first.frames] == first.frame_indices
    again = load_video(path, num_frames=5, size=None)  # same file, another sampling: the table is reused
    assert [read_index(f) for f in again.frames] == again.frame_indices == authors(0, 49, 5)

    replacement = make_video(tmp_path / "other.mp4", seconds=3, fps=25, size=(160, 120), pattern="index", gop=7)
    replacement.replace(path)
    second = load_video(path, num_frames=8, size=None)
    assert second.total_frames == 75
    assert [read_index(f) for f in second.frames] == second.frame_indices == authors(0, 74, 8)


def test_scaled_decode_returns_the_models_input_size(videos, decoder):
    clip = load_video(videos["square"], num_frames=8)
    assert clip.frames.shape == (8, 384, 384, 3) and clip.frames.dtype == np.uint8
    native = load_video(videos["square"], num_frames=8, size=None)
    assert native.frames.shape == (8, 120, 160, 3)
    # the scaled frame is the native one resized (the square's colour survives)
    assert np.abs(clip.frames.mean(axis=(1, 2)) - native.frames.mean(axis=(1, 2))).max() < 3


def test_sample_fps_with_a_cap_on_a_real_video(videos):
    clip = load_video(videos["h264"], sample_fps=1.0, max_frames=8)  # 12 s at 25 fps: 12 candidates
    every_second = list(range(0, 300, 25))
    assert clip.frame_indices == [every_second[k] for k in authors(0, 11, 8)]
    assert [read_index(frame) for frame in clip.frames] == clip.frame_indices


def test_probe_agrees_with_load_and_decodes_nothing(videos, decoder):
    info = probe_video(videos["h264"])
    clip = load_video(videos["h264"], num_frames=4)
    assert (info.total_frames, info.fps, info.duration, info.decoder) == (300, 25.0, 12.0, decoder)
    assert (clip.total_frames, clip.fps, clip.duration) == (info.total_frames, info.fps, info.duration)
    assert (info.width, info.height) == (160, 120)


def test_a_clip_plan_is_what_load_video_decodes_and_decodes_nothing(videos, decoder, monkeypatch):
    clip = load_video(videos["h264"], num_frames=6, start=2.0, end=9.5)
    for source in (PyAVSource, DecordSource):
        monkeypatch.setattr(source, "read", lambda *a, **k: pytest.fail("plan_clip decoded frames"))
    plan = plan_clip(videos["h264"], num_frames=6, start=2.0, end=9.5)
    assert (plan.frame_indices, plan.timestamps, plan.duration, plan.fps, plan.total_frames, plan.decoder) == (
        clip.frame_indices, clip.timestamps, clip.duration, clip.fps, clip.total_frames, clip.decoder)
    assert plan.num_frames == 6 and (plan.width, plan.height) == (160, 120)
    with pytest.raises(InvalidRangeError, match="index.mp4"):
        plan_clip(videos["h264"], num_frames=6, start=11.0, end=10.0)


@pytest.mark.skipif("av1" not in available_codecs(), reason="no AV1 encoder in this PyAV build")
def test_pyav_takes_over_silently_when_decord_cannot_read_the_codec(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAVA_VIDEO_DECODER", raising=False)
    path = make_video(tmp_path / "index-av1.mp4", seconds=3, fps=25, size=(160, 120), pattern="index", codec="av1",
                      gop=20)
    clip = load_video(path, num_frames=16, size=None)
    assert clip.decoder == "pyav" and probe_video(path).decoder == "pyav"
    assert [read_index(frame) for frame in clip.frames] == clip.frame_indices == authors(0, 74, 16)
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", "decord")  # forced: no fallback, a clear error
    with pytest.raises(UnreadableVideoError, match="decord"):
        load_video(path)


def test_an_unknown_forced_decoder_is_a_configuration_error(videos, monkeypatch):
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", "opencv")
    with pytest.raises(ValueError, match="LLAVA_VIDEO_DECODER"):
        load_video(videos["square"])


def test_concurrent_loads_of_one_file_are_safe(videos, decoder):
    expected = load_video(videos["h264"], num_frames=16).frames
    results, errors = [], []

    def work():
        try:
            results.append(load_video(videos["h264"], num_frames=16).frames)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4 and all(np.array_equal(r, expected) for r in results)


# --- PyAV versions -------------------------------------------------------------------------------

def test_a_pyav_without_metadata_errors_still_opens_videos(videos, monkeypatch, decoder):
    """PyAV 19 removed av.open's `metadata_errors`: the first open finds that out, later ones do not pass it."""
    import llava_video_app.video.container as container

    real_open, calls = av.open, []

    def pyav19_open(path, *args, **kwargs):
        calls.append(sorted(kwargs))
        if "metadata_errors" in kwargs:
            raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", pyav19_open)
    monkeypatch.setattr(container, "_takes_metadata_errors", None)
    clip = load_video(videos["square"], num_frames=4)
    assert len(clip.frames) == 4 and probe_video(videos["square"]).total_frames == 60
    with_keyword = [kwargs for kwargs in calls if "metadata_errors" in kwargs]
    assert "metadata_errors" in calls[0] and len(with_keyword) == 1 and len(calls) > 2


# --- bad input ------------------------------------------------------------------------------------

def _wav(path):
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)


def _empty_mp4(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()


def _png(path):
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 10, 10)).save(path, format="PNG")


BAD_FILES = {
    "missing": (None, UnreadableVideoError),
    "zero bytes": (lambda p: p.write_bytes(b""), EmptyVideoError),
    "text renamed .mp4": (lambda p: p.write_text("this is a text file, not a video\n" * 20), NotAVideoError),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), NotAVideoError),
    "png renamed .mp4": (_png, NotAVideoError),
    "audio only": (_wav, NotAVideoError),
    "no frames": (_empty_mp4, EmptyVideoError),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_typed_errors_with_one_readable_line(case, tmp_path, decoder):
    make, expected = BAD_FILES[case]
    path = tmp_path / "clip.mp4"
    if make is not None:
        make(path)
    for call in (lambda: load_video(path), lambda: probe_video(path)):
        with pytest.raises(expected) as err:
            call()
        message = str(err.value)
        assert isinstance(err.value, VideoError) and isinstance(err.value, ValueError)
        assert "clip.mp4" in message and "\n" not in message and len(message) < 300, message


def test_a_folder_is_not_a_video(tmp_path):
    with pytest.raises(UnreadableVideoError, match="folder"):
        load_video(tmp_path)


def test_missing_file_reads_like_file_not_found(tmp_path):
    with pytest.raises(UnreadableVideoError, match="not found: .*nothing.mp4"):
        load_video(tmp_path / "nothing.mp4")


def test_an_mp4_cut_in_half_with_its_index_at_the_end_is_unreadable(videos, tmp_path, decoder):
    data = videos["h264"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableVideoError, match="cut.mp4.*(damaged|truncated)"):
        load_video(cut)


def test_an_mp4_cut_in_half_with_its_index_first_decodes_what_is_there(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAVA_VIDEO_DECODER", raising=False)
    whole = make_video(tmp_path / "whole.mp4", seconds=8, fps=25, size=(160, 120), pattern="index", gop=25,
                       faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert probe_video(cut).total_frames == 200  # the index still lists every frame
    head = load_video(cut, num_frames=8, end=2.0, size=None)  # frames present in the first half
    assert head.decoder == "pyav"  # decord is never handed a truncated file
    assert [read_index(frame) for frame in head.frames] == head.frame_indices == authors(0, 50, 8)
    with pytest.raises(UnreadableVideoError, match="cut.mp4.*(damaged|truncated)"):
        load_video(cut, num_frames=8)  # the last frames are gone


def test_range_errors_name_the_file(videos):
    with pytest.raises(InvalidRangeError, match=r"square.mp4: start \(7.00s\) is at or past the end of the video \(6.00s\)"):
        load_video(videos["square"], start=7.0)
    with pytest.raises(InvalidRangeError, match="square.mp4: end"):
        load_video(videos["square"], start=3.0, end=2.0)
    with pytest.raises(InvalidRangeError, match="square.mp4: the number of frames"):
        load_video(videos["square"], num_frames=0)


def test_sample_videos_patterns_and_codecs(tmp_path):
    for pattern in ("moving_square", "pan", "index"):
        path = make_video(tmp_path / f"{pattern}.mp4", seconds=1, fps=10, size=(64, 48), pattern=pattern)
        info = probe_video(path)
        assert (info.total_frames, info.width, info.height) == (10, 64, 48)
    assert {"h264", "mpeg4", "vp9"} <= set(available_codecs())
    with pytest.raises(ValueError, match="pattern"):
        make_video(tmp_path / "x.mp4", seconds=1, pattern="stripes")


def test_auto_uses_pyav_where_it_reproduces_decords_count_and_decord_elsewhere(videos, monkeypatch):
    monkeypatch.delenv("LLAVA_VIDEO_DECODER", raising=False)
    assert probe_video(videos["h264"]).decoder == "pyav"  # mp4 states its frame count (decord's len)
    assert probe_video(videos["vp9"]).decoder == "decord"  # webm does not: decord's own estimate
    auto = load_video(videos["h264"], num_frames=16)
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", "decord")
    forced = load_video(videos["h264"], num_frames=16)
    assert (auto.frame_indices, auto.total_frames, auto.fps) == (forced.frame_indices, forced.total_frames, forced.fps)
