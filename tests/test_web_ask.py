"""The Ask tab's handlers (web/ask_tab.py), called directly over the tiny engine: streaming, Stop,
follow-ups from the caches, bad input, Clear, the API endpoints. The model is random: only behaviour
is checked, never the words."""

import json
import threading
from pathlib import Path

import gradio as gr
import pytest

from llava_video_app import video as video_stage
from llava_video_app.config import GenerationSettings
from llava_video_app.prompts import CAPTION_QUESTION, Turn, question_type
from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.conversation import ChatState, chat_messages


@pytest.fixture
def chat(tiny_engine):
    return VideoChat(tiny_engine)


def _ask(chat, video, question, *, state=None, frames=8, tokens=12, start=0, end=None):
    """Run the ask handler to the end; returns (yields, final state)."""
    outputs = list(chat.ask(video, question, start, end, frames, tokens, 0.0, 1.0, state))
    return outputs, outputs[-1][1]


def _answers(outputs):
    """The last assistant message's text after each yield that changed the chat."""
    texts = []
    for chat_messages, *_ in outputs:
        if chat_messages and chat_messages[-1]["role"] == "assistant":
            texts.append(chat_messages[-1]["content"])
    return texts


def test_new_video_fills_the_trim_range_and_starts_over(chat, sample_video):
    start, end, info, state, messages, gallery = chat.on_video(str(sample_video))
    assert start == 0 and end == pytest.approx(6.0)
    assert "6.00 s" in info and "frames" in info
    assert state.video == str(sample_video) and state.turns == [] and messages == [] and gallery == []
    assert chat.on_video(None)[3] == ChatState()
    state.turns.append(Turn("q", "a"))
    fresh = chat.new_conversation(state)
    assert (fresh.video, fresh.duration, fresh.turns) == (state.video, state.duration, [])
    assert [c.turns for c in fresh.past] == [[Turn("q", "a")]], "the chat's clear keeps the old conversation"


def test_answer_streams_growing_text_and_shows_the_frames_and_stats(chat, sample_video, monkeypatch):
    """Each chunk the engine makes while the page keeps up shows as an update of its own. The engine waits
    for the page to show a chunk before making the next (chunks made while the page is busy come joined,
    so on a free-running engine the count would depend on the machine's load)."""
    engine, shown = chat.holder.get(), threading.Semaphore(0)
    real_stream, chunks = engine.stream, []

    def paced_stream(*args, **kwargs):
        for chunk in real_stream(*args, **kwargs):
            chunks.append(chunk)
            yield chunk
            assert shown.acquire(timeout=60), "the page never showed the chunk"

    monkeypatch.setattr(engine, "stream", paced_stream)
    state = chat.on_video(str(sample_video))[3]
    outputs = []
    for output in chat.ask(str(sample_video), "What happens?", 0, None, 8, 12, 0.0, 1.0, state):
        outputs.append(output)
        if _answers([output]) and _answers([output])[0]:
            shown.release()
    state = outputs[-1][1]
    texts = _answers(outputs)
    grown = [t for t in texts if t]
    assert len(chunks) >= 2 or engine.last_stats.new_tokens == 1
    so_far = ["".join(chunks[:i + 1]) for i in range(len(chunks))]
    assert grown[:len(chunks)] == so_far, "one update per chunk, in order"
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), "text only grows"
    gallery = outputs[0][2]
    assert len(gallery) == 8
    assert all(caption.endswith(" s") for _, caption in gallery)
    assert [float(c[:-2]) for _, c in gallery] == sorted(float(c[:-2]) for _, c in gallery)
    assert state.turns == [Turn("What happens?", texts[-1])]
    status = outputs[-1][3]
    assert "tok/s" in status and "first token" in status and "fp32" in status and "cpu" in status
    assert outputs[0][4] == "", "the question box is emptied for the next question"

class _CountingLM:
    """Counts the language model's forward passes (one per generated token after the prefill)."""

    def __init__(self, lm):
        self.lm, self.calls = lm, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.lm(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.lm, name)


def test_stop_ends_the_answer_within_a_token_or_two(chat, sample_video, monkeypatch):
    lm = _CountingLM(chat.holder.engine.model.lm)
    monkeypatch.setattr(chat.holder.engine.model, "lm", lm)
    stream = chat.ask(str(sample_video), "Describe it.", 0, None, 8, 500, 0.0, 1.0, None)
    next(stream)  # the frames and "Answering…"
    next(stream)  # the first chunk of text
    flag = chat.sessions.get(None).stop
    at_stop = {}
    real_set = flag.set

    def pressed():
        at_stop.setdefault("calls", lm.calls)
        real_set()

    monkeypatch.setattr(flag, "set", pressed)
    status = {}
    stopper = threading.Thread(target=lambda: status.setdefault("text", chat.stop()))
    stopper.start()  # the Stop button: it waits until the generation has really ended
    rest = list(stream)
    stopper.join(timeout=10)
    stats = chat.holder.engine.last_stats
    assert stats.stopped and stats.new_tokens < 500
    assert lm.calls - at_stop["calls"] <= 2, "at most a forward pass or two after Stop"
    assert "stopped" in status["text"] and "stopped" in rest[-1][3]
    assert rest[-1][1].turns[0].answer, "the partial answer is kept in the conversation"


def test_a_cancelled_event_stops_the_engine_and_keeps_the_history_consistent(chat, sample_video):
    stream = chat.ask(str(sample_video), "Describe it.", 0, None, 8, 500, 0.0, 1.0, None)
    next(stream)
    messages, state, *_ = next(stream)
    stream.close()  # what Gradio does to a running event it cancels
    stats = chat.holder.engine.last_stats
    assert stats.stopped and stats.new_tokens < 100
    assert state.turns == [Turn("Describe it.", messages[-1]["content"])]
    assert chat.sessions.get(None).idle.is_set()


def test_follow_up_reuses_the_cached_video(chat, sample_video, monkeypatch):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "What moves?", state=state)
    calls = []
    real_load = video_stage.load_video
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    outputs, state = _ask(chat, str(sample_video), "And then?", state=state)
    assert calls == [], "a follow-up must not decode the video again"
    stats = chat.holder.engine.last_stats
    assert stats.video_cached and stats.reused_tokens > stats.visual_tokens
    assert [t.question for t in state.turns] == ["What moves?", "And then?"]
    messages = outputs[-1][0]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert outputs[0][2] is not None and not isinstance(outputs[0][2], list), "the gallery is not resent"


def test_changing_the_frames_or_trim_starts_a_new_conversation(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "What moves?", state=state)
    _, other = _ask(chat, str(sample_video), "What moves?", state=state, frames=9)
    assert len(other.turns) == 1 and other.frames == 9
    _, trimmed = _ask(chat, str(sample_video), "What moves?", state=state, start=1.0, end=4.0)
    assert len(trimmed.turns) == 1 and (trimmed.start, trimmed.end) == (1.0, 4.0)


def test_the_trim_range_is_what_the_model_sees(chat, sample_video):
    outputs, _ = _ask(chat, str(sample_video), "What moves?", start=2.0, end=4.0)
    stamps = [float(caption[:-2]) for _, caption in outputs[0][2]]
    assert 2.0 <= min(stamps) and max(stamps) <= 4.0
    # the whole video, as typed in the End box after an upload, is the authors' untrimmed sampling
    state = chat.on_video(str(sample_video))[3]
    assert state.trim(0, 6.0) == (None, None)


def test_bad_input_is_a_message_and_the_app_keeps_working(chat, sample_video, tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello, I am not a video")
    with pytest.warns(UserWarning, match="notes.mp4"):
        _, _, info, state, _, _ = chat.on_video(str(not_video))
    assert "notes.mp4" in info and state == ChatState()
    with pytest.raises(gr.Error, match="notes.mp4 is a text file, not a video"):
        _ask(chat, str(not_video), "What?")
    with pytest.raises(gr.Error, match="Upload a video"):
        _ask(chat, None, "What?")
    with pytest.raises(gr.Error, match="question"):
        _ask(chat, str(sample_video), "  ")
    with pytest.raises(gr.Error, match="past the end"):
        _ask(chat, str(sample_video), "What?", start=1, end=60)
    with pytest.raises(gr.Error, match="max_new_tokens must be a whole number from 1 to 4096"):
        _ask(chat, str(sample_video), "What?", tokens=40_000)
    with pytest.raises(gr.Error, match=r"the question is too long: 40,001 tokens .* shorten the question by at "
                                       r"least 7,\d{3} tokens"):  # too long for the model's 32,768-token context
        _ask(chat, str(sample_video), "why " * 20_000)
    with pytest.raises(gr.Error, match=r"the question is too long: 119,999 characters"):  # before tokenizing
        _ask(chat, str(sample_video), "why " * 30_000)
    with pytest.raises(gr.Error, match="contains no frame"):  # too short a range (frames every 0.1 s)
        _ask(chat, str(sample_video), "What?", start=1.01, end=1.05)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match="empty.mp4 is empty"):
        _ask(chat, str(empty), "What?")
    outputs, state = _ask(chat, str(sample_video), "What?")  # still serving
    assert len(state.turns) == 1


def test_clear_forgets_the_conversation_and_the_cached_videos(chat, sample_video, monkeypatch):
    _ask(chat, str(sample_video), "What moves?")
    video, start, end, info, state, messages, gallery, status = chat.clear()
    assert video is None and state == ChatState() and messages == [] and gallery == []
    calls = []
    real_load = video_stage.load_video
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    _ask(chat, str(sample_video), "What moves?")
    assert len(calls) == 1, "after Clear the video is decoded afresh"


def test_api_handlers_stream_the_growing_answer(chat, sample_video):
    answers = list(chat.api_ask(str(sample_video), "What happens?", 8, None, None, 10, 0.0, 1.0))
    assert len(answers) >= 2 and all(b.startswith(a) for a, b in zip(answers, answers[1:]))
    engine, four = chat.holder.engine, GenerationSettings(max_new_tokens=4)
    # each endpoint asks the model its question and streams back exactly the model's answer
    caption = list(chat.api_caption(str(sample_video), 8, None, None, 4, 0.0, 1.0))
    assert caption[-1] and caption[-1] == engine.ask(str(sample_video), CAPTION_QUESTION, settings=four)
    camera = list(chat.api_ask_type(str(sample_video), "Camera Direction", 8, None, None, 4, 0.0, 1.0))
    example = question_type("Camera Direction").preset
    assert camera[-1] and camera[-1] == engine.ask(str(sample_video), example, settings=four)
    with pytest.raises(gr.Error, match="unknown question type"):
        list(chat.api_ask_type(str(sample_video), "Astrology", 8, None, None, 4, 0.0, 1.0))


def test_stop_in_one_tab_leaves_another_tabs_answer_alone(chat, sample_video):
    from types import SimpleNamespace

    tab_a, tab_b = SimpleNamespace(session_hash="a"), SimpleNamespace(session_hash="b")
    stream = chat.ask(str(sample_video), "Describe it.", 0, None, 8, 60, 0.0, 1.0, None, tab_a)
    next(stream)
    next(stream)
    chat.stop(tab_b)  # another tab's Stop
    rest = list(stream)
    assert not chat.holder.engine.last_stats.stopped
    assert "stopped" not in rest[-1][3]
    stream = chat.ask(str(sample_video), "Describe it.", 0, None, 8, 500, 0.0, 1.0, None, tab_a)
    next(stream)
    next(stream)
    stopper = threading.Thread(target=chat.stop, args=(tab_a,))  # its own tab's Stop does stop it
    stopper.start()
    rest = list(stream)
    stopper.join(timeout=10)
    assert chat.holder.engine.last_stats.stopped and "stopped" in rest[-1][3]


def test_frames_100000_is_refused_by_the_tab_and_the_api_before_anything_is_decoded(chat, sample_video, monkeypatch,
                                                                                    capsys):
    decoded = []
    real_load = video_stage.load_video
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: decoded.append(a) or real_load(*a, **k))
    message = "frames must be a whole number from 1 to 128 (the app's max_frames), not 100000"
    with pytest.raises(gr.Error) as refused:
        _ask(chat, str(sample_video), "What?", frames=100_000)
    assert refused.value.message == message and not refused.value.print_exception
    with pytest.raises(gr.Error) as refused:
        list(chat.api_ask(str(sample_video), "What?", 100_000))
    assert refused.value.message == message
    assert decoded == [] and len(chat.holder.engine._clips) == 0
    assert capsys.readouterr().err.count(f"refused: {message}\n") == 2, "one console line per refusal"


def test_out_of_gpu_memory_becomes_a_message_and_the_next_question_is_answered(chat, sample_video, monkeypatch):
    import torch

    engine = chat.holder.engine
    model_lm = engine.model.lm

    class OutOfMemoryLM:
        def __call__(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        def __getattr__(self, name):
            return getattr(model_lm, name)

    monkeypatch.setattr(engine.model, "lm", OutOfMemoryLM())
    with pytest.raises(gr.Error, match=r"ran out of memory .*try fewer frames \(e.g. 4 instead of 8\)"):
        _ask(chat, str(sample_video), "What?")
    with pytest.raises(gr.Error, match="ran out of memory"):
        list(chat.api_ask(str(sample_video), "What?", 8, None, None, 4, 0.0, 1.0))
    monkeypatch.setattr(engine.model, "lm", model_lm)
    outputs, state = _ask(chat, str(sample_video), "What?")
    assert state.turns[-1].answer, "the model is still loaded and answers"


class _Visitor:
    """What Gradio passes a handler as gr.Request: the browser session's hash."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def test_two_visitors_share_no_cache_hit_and_clear_touches_only_the_visitors_own(chat, sample_video, monkeypatch):
    """The same upload from two browser sessions: the second decodes and encodes it afresh and is told
    nothing about the first (no "video from cache", no reused prompt tokens); its follow-up hits its own
    cache; one visitor's Clear leaves the other's entries."""
    alice, bob = _Visitor("alice"), _Visitor("bob")
    decoded = []
    real_load = video_stage.load_video
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: decoded.append(a) or real_load(*a, **k))

    def ask(visitor, question="What?", state=None):
        outputs = list(chat.ask(str(sample_video), question, 0, None, 8, 4, 0.0, 1.0, state, visitor))
        return outputs[-1][1], outputs[-1][3]  # state, status line

    alice_state, _ = ask(alice)
    bob_state, bob_status = ask(bob)
    assert len(decoded) == 2, "bob's request decoded the video itself"
    assert "video from cache" not in bob_status and "prompt tokens reused" not in bob_status
    _, bob_follow_up = ask(bob, "And then?", bob_state)
    assert len(decoded) == 2 and "video from cache" in bob_follow_up, "bob's own follow-up uses bob's cache"
    chat.clear(bob)
    _, alice_follow_up = ask(alice, "And then?", alice_state)
    assert len(decoded) == 2 and "video from cache" in alice_follow_up, "bob's Clear left alice's cache"
    _, bob_again = ask(bob)
    assert len(decoded) == 3 and "video from cache" not in bob_again


def test_a_frames_change_or_a_new_video_starts_a_new_conversation_and_keeps_the_old(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "First?", state=state, frames=8)
    _, state = _ask(chat, str(sample_video), "Follow-up?", state=state, frames=8)
    _, state = _ask(chat, str(sample_video), "With more frames?", state=state, frames=10)
    assert [t.question for t in state.turns] == ["With more frames?"]
    assert [[t.question for t in c.turns] for c in state.history()] == [["First?", "Follow-up?"], ["With more frames?"]]
    state = chat.on_video(str(sample_video), state)[3]  # the same video again: a new, empty conversation
    state = chat.clear(None, state)[4]
    assert state.turns == [] and [c.frames for c in state.history()] == [8, 10], "nothing is erased"
    provenance, history = chat.show_history(state)
    assert history.count("square.mp4") == 2 and "8 frames" in history and "10 frames" in history


def test_other_sampling_settings_start_a_new_conversation(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    state = list(chat.ask(str(sample_video), "Q?", 0, None, 8, 6, 0.0, 1.0, state))[-1][1]
    state = list(chat.ask(str(sample_video), "Q?", 0, None, 8, 6, 1.0, 1.0, state, None, 3))[-1][1]
    assert len(state.history()) == 2 and state.sampling == (1.0, 1.0, 3)


def test_the_same_seed_in_the_tab_gives_the_same_sampled_answer(chat, sample_video):
    def answer(seed, state=None):
        outputs = list(chat.ask(str(sample_video), "What happens?", 0, None, 8, 12, 1.5, 1.0, state, None, seed))
        return outputs[-1][1]

    first, again = answer(9), answer(9)
    assert first.turns == again.turns and first.turns[0].answer
    assert first.records[0]["seed"] == 9
    drawn = answer(None)
    assert answer(drawn.records[0]["seed"]).turns == drawn.turns, "the recorded seed repeats the answer"
    with pytest.raises(gr.Error, match="seed must be a whole number"):
        answer(1.5)


def test_every_answer_carries_its_provenance_into_the_page_and_the_downloads(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "First?", state=state, start=1, end=4)
    _, state = _ask(chat, str(sample_video), "Second?", state=state, start=1, end=4)
    _, state = _ask(chat, str(sample_video), "Other frames?", state=state, frames=10)
    assert len(state.records) == len(state.turns) == 1 and len(state.past[0].records) == 2
    first = state.past[0].records[0]
    assert first["video"]["name"] == "square.mp4" and len(first["video"]["sha256"]) == 64
    assert first["trim"] == {"start": 1.0, "end": 4.0} and first["settings"]["frames"] == 8
    assert first["visual_tokens"] > 0 and first["new_tokens"] > 0 and isinstance(first["seed"], int)
    line, _ = chat.show_history(state)
    assert "square.mp4" in line and "10 frames" in line and "tok/s" in line

    conversation = json.loads(Path(chat.export_json(state, "conversation")).read_text())
    history = json.loads(Path(chat.export_json(state, "history")).read_text())
    assert conversation["schema"] == history["schema"] == "llava-video/conversations/1"
    assert [t["question"] for t in conversation["conversations"][0]["turns"]] == ["Other frames?"]
    turns = [[t["question"] for t in c["turns"]] for c in history["conversations"]]
    assert turns == [["First?", "Second?"], ["Other frames?"]]
    assert history["conversations"][0]["turns"][1]["answer"] == state.past[0].turns[1].answer
    assert history["conversations"][0]["turns"][1]["provenance"] == state.past[0].records[1]
    markdown = Path(chat.export_markdown(state, "history")).read_text()
    assert "**Question:** Second?" in markdown and "8 frames of 1 s to 4 s" in markdown and "10 frames" in markdown
    assert chat.export_json(ChatState(), "history") is None, "nothing to download: a message, no file"


def test_the_page_gets_refusals_as_one_warning_and_keeps_what_it_shows(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    with pytest.warns(UserWarning, match="Type a question") as warned:
        outputs = list(chat.ask_in_page(str(sample_video), "  ", 0, None, 8, 6, 0.0, 1.0, state))
    assert len(warned) == 1
    (chat_out, state_out, gallery, status, question, stop), = outputs
    assert stop["interactive"] is False
    assert all(x == gr.skip() for x in (chat_out, state_out, gallery, question)), "nothing on the page is replaced"
    assert "fp32" in status


def test_ask_is_live_only_with_a_usable_video_and_a_question_and_stop_only_while_running(chat, sample_video):
    def live(state, question, running=False):
        ask, stop = chat.buttons(state, question, running)
        return ask["interactive"], stop["interactive"]

    usable = chat.on_video(str(sample_video))[3]
    assert live(usable, "What?") == (True, False)
    assert live(usable, "   ") == (False, False)
    assert live(ChatState(), "What?") == (False, False)
    assert live(usable, "What?", running=True) == (False, True)


def _settings(video, state, temperature=0.0, seed=None):
    return (str(video), 0, None, 8, 6, temperature, 1.0, state)


def test_regenerate_asks_again_from_that_turn_and_keeps_the_old_version(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "First?", state=state, tokens=6)
    _, state = _ask(chat, str(sample_video), "Second?", state=state, tokens=6)
    sampled = list(chat.ask(str(sample_video), "Third?", 0, None, 8, 6, 1.5, 1.0, state, None, 4))[-1][1]
    assert len(sampled.history()) == 2, "other sampling: a new conversation"
    last_message = len(chat_messages(sampled.turns)) - 1
    again = list(chat.regenerate(*_settings(sample_video, sampled, 1.5), gr.RetryData(None, {
        "index": last_message, "value": "Third?"}), None, 4))[-1][1]
    assert again.turns == sampled.turns, "the same seed and settings: the same answer"
    assert len(again.history()) == 3 and again.history()[1].turns == sampled.turns, "the old version is kept"
    assert again.records[0]["seed"] == 4


def test_edit_asks_the_edited_question_from_where_it_stood_and_undo_returns_it_to_the_box(chat, sample_video):
    state = chat.on_video(str(sample_video))[3]
    _, state = _ask(chat, str(sample_video), "First?", state=state, tokens=6)
    _, state = _ask(chat, str(sample_video), "Second?", state=state, tokens=6)
    edited = list(chat.edit(*_settings(sample_video, state), gr.EditData(None, {
        "index": 0, "value": "First, edited?", "previous_value": "First?"}), None, None))[-1][1]
    assert [t.question for t in edited.turns] == ["First, edited?"]
    assert [[t.question for t in c.turns] for c in edited.history()] == [["First?", "Second?"], ["First, edited?"]]
    assert len(edited.records) == 1 and edited.records[0]["new_tokens"] > 0

    messages, undone, question = chat.undo(state, gr.UndoData(None, {"index": 2, "value": "Second?"}))
    assert question == "Second?" and [t.question for t in undone.turns] == ["First?"]
    assert messages == chat_messages(undone.turns) and len(undone.records) == 1
    assert undone.past == state.past, "undo removes the turn itself, not other conversations"
