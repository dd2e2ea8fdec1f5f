"""The Ask tab's time axis: seek links in answers and the trim bar (web/player.py), the frame inspector
(web/frame_inspector.py) and "What the model sees" (web/model_view.py), called as the page calls them.
The browser tests (test_browser.py) check that the page's player really moves."""

import json
import re

import gradio as gr
import pytest
from typer.testing import CliRunner

from llava_video_app import cli
from llava_video_app.config import AppConfig
from llava_video_app.prompts import Turn
from llava_video_app.web import frame_inspector
from llava_video_app.web.conversation import ChatState, chat_messages
from llava_video_app.web.model_view import NO_VIDEO, what_the_model_sees
from llava_video_app.web.player import trim_bar, with_seek_links


def test_times_in_an_answer_become_seek_links():
    assert with_seek_links("It turns at 3.2 s and again at 0:05.") == \
        "It turns at [3.2 s](#t=3.2) and again at [0:05](#t=5)."
    assert with_seek_links("From 2-4 seconds it pans.") == "From [2-4 seconds](#t=2) it pans."
    assert with_seek_links("No time here.") == "No time here."


def test_a_time_past_the_video_or_inside_code_stays_text():
    assert with_seek_links("at 3 s, then at 0:09", duration=8.0) == "at [3 s](#t=3), then at 0:09"
    assert with_seek_links("run `sleep 3 s` at 2 s") == "run `sleep 3 s` at [2 s](#t=2)"


def test_the_chat_links_the_answers_times_not_the_questions():
    messages = chat_messages([Turn("What is at 3 s?", "A door at 3 s; a clock shows 10:30.")], duration=8.0)
    assert messages == [{"role": "user", "content": "What is at 3 s?"},
                        {"role": "assistant", "content": "A door at [3 s](#t=3); a clock shows 10:30."}]
    state = ChatState("v.mp4", 8.0, turns=[Turn("q", "at 0:02")])
    assert state.messages()[-1]["content"] == "at [0:02](#t=2)"


def _bar(html):
    kept = re.search(r'left:([\d.]+)%;width:([\d.]+)%', html)
    return float(kept.group(1)), float(kept.group(2))


def test_the_trim_bar_marks_start_to_end_of_the_whole_video():
    assert _bar(trim_bar(2, 6, 8)) == (25.0, 50.0)
    assert "2.00–6.00 s of the 8.00 s video" in trim_bar(2, 6, 8)
    assert _bar(trim_bar(None, None, 8)) == (0.0, 100.0) and "the whole video" in trim_bar(None, None, 8)
    assert _bar(trim_bar(None, 4, 8)) == (0.0, 50.0) and _bar(trim_bar(6, None, 8)) == (75.0, 25.0)
    assert 'data-valid="false"' in trim_bar(6, 2, 8) and 'data-valid="false"' in trim_bar(2, 9, 8)
    assert trim_bar(None, None, None) == ""


def test_the_tabs_trim_bar_reads_start_and_end_as_ask_sends_them(tiny_engine):
    from llava_video_app.web.ask_tab import VideoChat

    chat = VideoChat(tiny_engine)
    state = ChatState("v.mp4", 8.004)
    assert "the whole video" in chat.trim_range(0, 8.0, state)  # the End box shows the length floored
    assert _bar(chat.trim_range(1, 3, state))[0] == pytest.approx(100 / 8.004, abs=1e-3)
    assert chat.trim_range(1, 3, ChatState()) == ""  # no video


GALLERY = [(f"/tmp/frame{k}.webp", f"{k * 1.25:.2f} s") for k in range(4)]


def test_the_inspector_shows_a_clicked_frame_large_with_its_time():
    image, text, index, seconds, prev, nxt = frame_inspector.pick(GALLERY, gr.SelectData(None, {"index": 2,
                                                                                                 "value": None}))
    assert (image, index, seconds) == ("/tmp/frame2.webp", 2, 2.5)
    assert "Frame 3 of 4" in text and "[2.50 s](#t=2.5)" in text
    assert prev["interactive"] and nxt["interactive"]


def test_previous_and_next_step_through_the_frames_and_stop_at_the_ends():
    shown = frame_inspector.following(GALLERY, 2)
    assert shown[2:4] == (3, 3.75) and not shown[5]["interactive"]
    assert frame_inspector.following(GALLERY, 3)[2] == 3
    shown = frame_inspector.previous(GALLERY, 1)
    assert shown[2:4] == (0, 0.0) and not shown[4]["interactive"]
    assert frame_inspector.previous(GALLERY, 0)[2] == 0
    assert frame_inspector.following(GALLERY, -1)[2] == 0  # nothing shown yet: next shows the first


def test_no_frames_is_the_empty_inspector():
    image, text, index, seconds, prev, nxt = frame_inspector.reset(GALLERY)
    assert (image, text, index, seconds) == (None, frame_inspector.EMPTY, -1, None)
    assert not prev["interactive"] and not nxt["interactive"]
    assert frame_inspector.following(None, 0)[2] == -1


def _inspect_json(*args):
    result = CliRunner().invoke(cli.app, ["inspect", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stdout
    return json.loads(result.stdout)


def test_what_the_model_sees_is_the_clis_inspect(tiny_checkpoint, sample_video):
    config = AppConfig(model=str(tiny_checkpoint), quant="fp32", device="cpu", frames=8)
    state = ChatState(str(sample_video), 6.0)
    summary, prompt = what_the_model_sees(config, str(sample_video), "Where is it?", 4, 1, 4, state)
    plan = _inspect_json(sample_video, "Where is it?", "--model", tiny_checkpoint, "--quant", "fp32", "--device",
                         "cpu", "--frames", 4, "--start", 1, "--end", 4)
    assert prompt == plan["prompt"]
    assert "<image>The video lasts for 6.00 seconds, and 4 frames are uniformly sampled from it." in prompt
    times = [float(t) for t in re.search(r"located at (.*?)\.Please", prompt).group(1).replace("s", "").split(",")]
    assert len(times) == 4 and all(1 <= t <= 4 for t in times), "the trimmed range's frames"
    assert f"**Visual tokens:** {plan['visual_tokens']} = 4 frames × {plan['tokens_per_frame']} tokens" in summary
    assert f"**pool mode:** {plan['pool_mode']}" in summary and "newline token closing each row" in summary

    # untrimmed as the boxes show it (End = the length): the CLI's default range; no question: the caption's
    _, whole = what_the_model_sees(config, str(sample_video), "", 8, 0, 6.0, state)
    assert whole == _inspect_json(sample_video, "--model", tiny_checkpoint, "--quant", "fp32", "--device", "cpu",
                                  "--frames", 8)["prompt"]


def test_what_the_model_sees_says_why_it_cannot_show(tiny_checkpoint, sample_video, tmp_path):
    config = AppConfig(model=str(tiny_checkpoint), quant="fp32", device="cpu", frames=8, max_frames=64)
    assert what_the_model_sees(config, None, "q", 8, 0, None, None) == (NO_VIDEO, "")
    summary, prompt = what_the_model_sees(config, str(sample_video), "q", 0, 0, None, None)
    assert summary.startswith("**Nothing to show:**") and "frames" in summary and prompt == ""
    summary, prompt = what_the_model_sees(config, str(sample_video), "q", 8, 0, 60, None)
    assert summary.startswith("**Nothing to show:**") and prompt == ""
    fake = tmp_path / "upload" / "notes.mp4"
    fake.parent.mkdir()
    fake.write_text("not a video")
    summary, prompt = what_the_model_sees(config, str(fake), "q", 8, 0, None, None)
    assert summary.startswith("**Nothing to show:**") and "notes.mp4" in summary and str(tmp_path) not in summary


def test_what_the_model_sees_is_the_prompt_ask_sends(tiny_engine, tmp_path):
    """As the page fills the boxes (on_video: Start 0, End the length floored to 1/100), the panel's prompt
    is the very prompt the answer's provenance hashes."""
    import hashlib

    from llava_video_app.sample_videos import make_video
    from llava_video_app.web.ask_tab import VideoChat

    video = str(make_video(tmp_path / "odd.mp4", seconds=181 / 30, fps=30, size=(64, 48)))
    chat = VideoChat(tiny_engine)
    start, end, _, state, _, _ = chat.on_video(video)
    assert end < state.duration, "the End box shows less than the length: the case where the trim matters"
    _, prompt = chat.model_view(video, "What moves?", 8, start, end, state)
    *_, (messages, state, *_rest) = chat.ask(video, "What moves?", start, end, 8, 4, 0.0, 1.0, state)
    assert state.records[0]["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()


def test_a_file_browsers_cannot_play_gets_a_plain_note(tmp_path):
    from llava_video_app.sample_videos import make_video
    from llava_video_app.web.preview import preview_note

    avi = make_video(tmp_path / "clip.avi", seconds=1, fps=10, size=(64, 48), codec="mpeg4")
    ts = make_video(tmp_path / "clip.ts", seconds=1, fps=10, size=(64, 48))
    mp4 = make_video(tmp_path / "clip.mp4", seconds=1, fps=10, size=(64, 48))
    assert "No preview" in preview_note(str(avi)) and "clip.avi (AVI with mpeg4 video)" in preview_note(str(avi))
    assert "the model reads it all the same" in preview_note(str(ts)) and "MPEG-TS" in preview_note(str(ts))
    assert preview_note(str(mp4)) == ""
    (tmp_path / "notes.mp4").write_text("not a video")
    assert preview_note(str(tmp_path / "notes.mp4")) == "", "an unusable file: on_video already says so"


def test_the_info_line_carries_the_note(tiny_engine, tmp_path):
    from llava_video_app.sample_videos import make_video
    from llava_video_app.web.ask_tab import VideoChat

    avi = make_video(tmp_path / "clip.avi", seconds=1, fps=10, size=(64, 48), codec="mpeg4")
    _, end, info, state, _, _ = VideoChat(tiny_engine).on_video(str(avi))
    assert info.startswith("1.00 s") and "No preview" in info and state.video == str(avi) and end == 1.0


@pytest.mark.parametrize("time_instruction", [True, False])
def test_what_the_model_sees_is_a_follow_ups_prompt_too(tiny_model, sample_video, time_instruction):
    """After an answer, the panel shows the prompt the next question gets in this conversation (its
    turns included) under the same settings, and a new conversation's once a setting changes; with the
    app's time instruction off, the prompt has none, as the engine sends it."""
    import hashlib

    from llava_video_app.engine import Engine
    from llava_video_app.web.ask_tab import VideoChat

    config = AppConfig(model=str(tiny_model.model_id), quant="fp32", device="cpu", frames=8, max_new_tokens=16,
                       time_instruction=time_instruction)
    chat = VideoChat(Engine(tiny_model, config))
    video = str(sample_video)
    start, end, _, state, _, _ = chat.on_video(video)
    *_, (_, state, *_rest) = chat.ask(video, "What moves?", start, end, 8, 4, 0.0, 1.0, state)
    summary, prompt = chat.model_view(video, "And then?", 8, start, end, state, 0.0, 1.0, None)
    assert "after its 1 turn(s)" in summary and "What moves?" in prompt
    assert ("The video lasts for" in prompt) is time_instruction
    *_, (_, state, *_rest) = chat.ask(video, "And then?", start, end, 8, 4, 0.0, 1.0, state)
    assert len(state.turns) == 2, "the follow-up continued the conversation"
    assert state.records[1]["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()

    summary, prompt = chat.model_view(video, "And then?", 16, start, end, state, 0.0, 1.0, None)
    assert "starts a new conversation" in summary and "What moves?" not in prompt, "other frames: a new one"


def test_the_clis_inspect_shows_the_prompt_as_sent_with_the_time_instruction_off(sample_video, monkeypatch):
    flags = (sample_video, "--model", "lmms-lab/LLaVA-Video-7B-Qwen2", "--frames", "4")
    assert "The video lasts for" in _inspect_json(*flags)["prompt"]
    monkeypatch.setenv("LLAVA_VIDEO_TIME_INSTRUCTION", "0")  # as the engine then builds it (engine._answer)
    prompt = _inspect_json(*flags)["prompt"]
    assert "The video lasts for" not in prompt and "<image>\nPlease describe this video in detail." in prompt
