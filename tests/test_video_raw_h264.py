"""Raw H.264 (Annex B, no container; issue 18 item 8): accepted, with frames counted in decode order and
their times from the SPS's rate when it states one, else from FFmpeg's assumed 25 fps, which the video's
`timing` says. The streams are made here (tests/raw_h264.py: frame i is flat grey(i), B-frames on), so the
count, the sampled indices, their times and their pixels are known. A cut stream gets one clear line; a
playlist named .h264 is still a playlist."""

from __future__ import annotations

import json
import shutil

import pytest

from llava_video_app import video as video_stage
from llava_video_app.video import NotAVideoError, UnreadableVideoError
from llava_video_app.video.admission import admit
from opened_files import OpenedFiles
from playlist_tricks import CONCAT_MESSAGE, PLAYLIST_MESSAGE, make_tricks, secret_video
from raw_h264 import grey, make_raw_h264

SPS_TIMING = "frame rate 10 fps from the stream's SPS: raw stream without timestamps"
ASSUMED = "frame rate assumed 25 fps: raw stream without timing"


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    return {"vui": make_raw_h264(folder / "stated.h264", frames=30, fps=10, gop=12),
            "bare": make_raw_h264(folder / "bare.h264", frames=30, fps=10, gop=12, vui_timing=False)}


def _greys(clip) -> list[int]:
    return [int(round(float(frame.mean()))) for frame in clip.frames]


def test_a_raw_stream_is_admitted_with_the_h264_demuxer_and_never_given_to_decord(streams):
    admitted = admit(streams["vui"])
    assert admitted.demuxer == "h264" and not admitted.decord_safe


@pytest.mark.parametrize("kind,fps,timing", [("vui", 10.0, SPS_TIMING), ("bare", 25.0, ASSUMED)])
def test_frames_are_counted_and_timed_from_the_stated_or_assumed_rate(kind, fps, timing, streams):
    info = video_stage.probe_video(streams[kind])
    assert (info.total_frames, info.fps, info.decoder, info.timing) == (30, fps, "pyav", timing)
    assert info.duration == pytest.approx(30 / fps)
    plan = video_stage.plan_clip(streams[kind], num_frames=7)
    assert plan.frame_indices == [0, 4, 9, 14, 19, 24, 29]  # linspace(0, 29, 7, dtype=int)
    assert plan.timestamps == pytest.approx([i / fps for i in plan.frame_indices])
    assert plan.timing == timing
    clip = video_stage.load_video(streams[kind], num_frames=7, size=None)
    assert clip.frame_indices == plan.frame_indices and clip.timestamps == plan.timestamps
    assert clip.timing == timing and clip.decoder == "pyav"
    # the decoder's output order is presentation order: B-frames do not shift the count
    assert _greys(clip) == pytest.approx([grey(i) for i in clip.frame_indices], abs=2)


def test_every_frame_of_the_stream_is_the_one_its_index_names(streams):
    clip = video_stage.load_video(streams["vui"], num_frames=None, size=(32, 24))  # all 30, across 3 GOPs
    assert clip.frame_indices == list(range(30))
    assert _greys(clip) == pytest.approx([grey(i) for i in range(30)], abs=2)


def test_a_trim_and_a_sampling_rate_use_the_same_times(streams):
    clip = video_stage.load_video(streams["vui"], num_frames=4, start=1.0, end=2.5, size=None)
    assert clip.frame_indices == [10, 15, 20, 25]  # frames at 1.0 s to 2.5 s, 10 fps
    assert _greys(clip) == pytest.approx([grey(i) for i in clip.frame_indices], abs=2)
    at_1fps = video_stage.load_video(streams["bare"], num_frames=None, sample_fps=5.0, size=None)
    assert at_1fps.frame_indices == [0, 5, 10, 15, 20, 25]  # 25 fps assumed: every 5th frame is 5 per second
    with pytest.raises(video_stage.InvalidRangeError, match=r"past the end of the video \(1.20s\)"):
        video_stage.plan_clip(streams["bare"], num_frames=4, start=0.5, end=2.0)  # 30 frames at 25 fps


def test_forcing_decord_on_a_raw_stream_says_why_not(streams, monkeypatch):
    monkeypatch.setenv(video_stage.DECODER_ENV, "decord")
    with pytest.raises(UnreadableVideoError) as refused:
        video_stage.probe_video(streams["vui"])
    assert str(refused.value) == (f"{streams['vui']} could not be opened with decord (LLAVA_VIDEO_DECODER=decord): "
                                  "a raw stream has no timestamps, which decord finds frames by")


@pytest.mark.parametrize("keep,message", [
    (lambda size: 40, "looks like a raw H.264 stream but is damaged or truncated (no complete picture in it)"),
    (lambda size: size - 20, "is a damaged or truncated raw stream: one of its frames could not be decoded"),
])
def test_a_cut_stream_gets_one_clear_line(keep, message, streams, tmp_path):
    data = streams["vui"].read_bytes()
    cut = tmp_path / "cut.h264"
    cut.write_bytes(data[:keep(len(data))])
    with pytest.raises(UnreadableVideoError) as refused:
        video_stage.load_video(cut, num_frames=4)
    assert str(refused.value) == f"{cut} {message}"


def test_a_stream_cut_inside_its_only_frame_is_not_shown_as_a_picture(tmp_path):
    one = make_raw_h264(tmp_path / "one.h264", frames=1)
    data = one.read_bytes()
    cut = tmp_path / "cut.h264"
    cut.write_bytes(data[:len(data) - 8])  # the parameter sets whole, the (flat, short) picture's tail missing
    with pytest.raises(UnreadableVideoError) as refused:
        video_stage.load_video(cut, num_frames=1)
    assert str(refused.value) == f"{cut} is a damaged or truncated raw stream: frame 0 is incomplete"


@pytest.mark.parametrize("trick,message", [("absolute.m3u8", PLAYLIST_MESSAGE), ("concat.ffconcat", CONCAT_MESSAGE)])
def test_a_playlist_or_concat_list_named_h264_is_still_refused_and_reads_nothing(trick, message, tmp_path):
    tricks = make_tricks(tmp_path)
    renamed = shutil.copy(tricks[trick], tmp_path / "uploads" / "clip.h264")
    with OpenedFiles(secret_video(tmp_path).parent) as opened:
        opened.take()
        with pytest.raises(NotAVideoError) as refused:
            video_stage.load_video(renamed, num_frames=2)
        assert opened.take() == []
    assert str(refused.value) == message.format(name=renamed)



# Every interface says the rate was assumed: the Ask tab's header and each answer's provenance, inspect,
# and the synthetic records.

@pytest.fixture(scope="module")
def long_bare(tmp_path_factory):
    """60 frames, no VUI timing: 2.4 s at the assumed 25 fps (6 s at the rate it was made with)."""
    return make_raw_h264(tmp_path_factory.mktemp("long") / "bare.h264", frames=60, fps=10, vui_timing=False)


def test_the_ask_tab_and_each_answers_provenance_say_the_rate_was_assumed(tiny_engine, long_bare):
    from llava_video_app.web.ask_tab import VideoChat

    chat = VideoChat(tiny_engine)
    start, end, info, state, _, _ = chat.on_video(str(long_bare))
    assert (start, end) == (0, 2.4)
    header, note = info.split("\n\n")
    assert header == f"2.40 s · 25 fps · 64×48 · 60 frames · {ASSUMED}"
    assert note.startswith("**No preview:** browsers cannot play bare.h264 (a raw H.264 stream with no container)")
    outputs = list(chat.ask(str(long_bare), "What happens?", 0, None, 8, 4, 0.0, 1.0, state))
    record = outputs[-1][1].records[-1]
    assert record["video_timing"] == ASSUMED
    assert record["timestamps"] == pytest.approx([i / 25 for i in record["frame_indices"]], abs=1e-3)
    line, _ = chat.show_history(outputs[-1][1])
    assert ASSUMED in line


def test_inspect_shows_the_rate_and_where_it_came_from(long_bare, streams):
    from test_cli import invoke

    text = invoke("inspect", long_bare, "--model", "lmms-lab/LLaVA-Video-7B-Qwen2", "--frames", "4")
    assert text.returncode == 0, text.stderr
    assert f"timing     {ASSUMED}" in text.stdout and "(2.40 s at 25.000 fps)" in text.stdout
    assert "timestamps 0.00s, 0.76s, 1.56s, 2.36s" in text.stdout  # frames 0, 19, 39, 59 at 25 fps
    plan = json.loads(invoke("inspect", streams["vui"], "--json", "--model", "lmms-lab/LLaVA-Video-7B-Qwen2",
                             "--frames", "4").stdout)
    assert (plan["fps"], plan["timing"], plan["duration"]) == (10.0, SPS_TIMING, 3.0)


def test_synthetic_records_carry_the_assumed_rate(scripted_engine, long_bare):
    from llava_video_app.synth.plan import SynthOptions
    from llava_video_app.synth.recipe import run_synthesis
    from llava_video_app.synth.result import SynthResult

    result = run_synthesis(scripted_engine(), long_bare, SynthOptions())
    records = [r for task in result.records().values() for r in task]
    assert records and all(r["video_timing"] == ASSUMED for r in records)
    assert SynthResult.from_manifest(json.loads(json.dumps(result.to_manifest()))).video_timing == ASSUMED


def test_an_mp4s_stream_remuxed_raw_gives_the_mp4s_frames_at_the_same_indices(tmp_path):
    """`ffmpeg -i clip.mp4 -c copy -bsf h264_mp4toannexb clip.h264`, through PyAV: the same count, rate (from
    the SPS), sampled indices and pixels as the mp4, whose container has timestamps."""
    import av
    import numpy as np

    from llava_video_app.sample_videos import make_video

    mp4 = make_video(tmp_path / "clip.mp4", seconds=4, fps=10, size=(96, 64), pattern="index", gop=15)
    raw = tmp_path / "clip.h264"
    with av.open(str(mp4)) as source, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        annexb = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", source.streams.video[0], stream)
        for packet in source.demux(source.streams.video[0]):
            for filtered in annexb.filter(packet if packet.size else None):
                out.mux(filtered)
    contained = video_stage.load_video(mp4, num_frames=9, size=None)
    bare = video_stage.load_video(raw, num_frames=9, size=None)
    assert (bare.total_frames, bare.fps, bare.frame_indices, bare.timestamps) == (
        contained.total_frames, contained.fps, contained.frame_indices, contained.timestamps)
    assert bare.timing == SPS_TIMING and contained.timing is None
    assert np.array_equal(bare.frames, contained.frames)
