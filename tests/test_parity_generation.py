"""Parity after the prefill: every decode step, follow-ups from the KV cache, and the long routes.

The reference (tests/llava_reference.py, no code shared with llava_video_app) recomputes the whole
sequence for every token, without a KV cache, and writes its own multi-turn qwen_1_5 prompt. Our engine
records the raw logits each token was chosen from (Engine.record_logits); they must equal the
reference's step by step: a wrong position id on a decode step, a stale or missing cache position, or a
follow-up prompt that differs by one character changes them even where the greedy token stays the same.
"""

from __future__ import annotations

import threading

import pytest
import torch
from llava_reference import ReferenceLlavaVideo, load_video, qwen_1_5_prompt

from llava_video_app.config import AppConfig, GenerationSettings
from llava_video_app.engine import Engine
from llava_video_app.model import VISION_BATCH, LlavaVideoModel
from llava_video_app.prompts import Turn
from llava_video_app.tiny import build_tiny_checkpoint

FRAMES = 8
STEPS = 6
# fp32 on both sides; they differ only in the order of floating-point operations.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("parity-generation"), seed=19)


@pytest.fixture(scope="module")
def reference(checkpoint):
    return ReferenceLlavaVideo(checkpoint)


@pytest.fixture(scope="module")
def model(checkpoint):
    return LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")


def make_engine(model, **config) -> Engine:
    engine = Engine(model, AppConfig(**{"frames": FRAMES, "decode_at_model_size": False, **config}))
    engine.record_logits = True
    return engine


def assert_steps_match(engine: Engine, reference_steps: list[torch.Tensor], index: int = 0) -> None:
    ours = engine.recorded_logits[index]
    assert len(ours) == len(reference_steps)
    for step, (got, expected) in enumerate(zip(ours, reference_steps)):
        try:
            torch.testing.assert_close(got, expected, **TOLERANCE)
        except AssertionError as err:
            raise AssertionError(f"decode step {step}: {err}") from None


def run_and_compare(engine: Engine, reference: ReferenceLlavaVideo, video, question: str, history=(),
                    frames: int = FRAMES, steps: int = STEPS, stop: threading.Event | None = None) -> str:
    """Answer with our engine, then check its prompt ids, tokens and every step's logits against a
    cold, KV-free run of the reference over the whole conversation."""
    settings = GenerationSettings(max_new_tokens=steps, ignore_eos=True)
    answer = engine.ask(video, question, history, settings=settings, stop=stop)
    stats = engine.last_stats
    ref_frames, frame_time, video_time = load_video(video, frames)
    prompt = qwen_1_5_prompt(question, frame_time, video_time, [(t.question, t.answer) for t in history])
    assert stats.prompt_ids == reference.tokenizer_image_token(prompt)
    tokens, logits = reference.greedy_steps(prompt, ref_frames, len(stats.token_ids), ignore_eos=True)
    assert stats.token_ids == tokens
    assert_steps_match(engine, logits)
    return answer


def test_every_decode_step_matches_the_reference(model, reference, sample_video):
    engine = make_engine(model)
    run_and_compare(engine, reference, sample_video, "Please describe this video in detail.")
    assert engine.last_stats.new_tokens == STEPS


@pytest.mark.slow
def test_every_compiled_decode_step_matches_the_reference(model, reference, sample_video):
    """The compiled decode step (CPU torch.compile over the static KV cache) against the reference."""
    engine = make_engine(model, compile=True)
    assert engine._decoder is not None  # decode steps go through torch.compile
    first = run_and_compare(engine, reference, sample_video, "Please describe this video in detail.")
    history = [Turn("Please describe this video in detail.", first)]
    run_and_compare(engine, reference, sample_video, "What moves?", history)
    assert engine.last_stats.reused_tokens > engine.last_stats.visual_tokens  # a follow-up from the static cache


def test_follow_ups_from_the_kv_cache_match_a_cold_run_of_the_whole_conversation(model, reference, sample_video):
    """After 1, 2 and 3 turns: the same prompt ids and the same logits at every step as the reference's
    cold run of the whole conversation, with the answers our engine gave fed back as history."""
    engine = make_engine(model)
    history: list[Turn] = []
    for turn, question in enumerate(["What moves?", "Which colour is it?", "Where does it go?", "Why?"]):
        answer = run_and_compare(engine, reference, sample_video, question, history)
        if turn:
            assert engine.last_stats.reused_tokens > engine.last_stats.visual_tokens  # served from the cache
        history.append(Turn(question, f" {answer} "))  # stray spaces: the prompt strips them, as the authors


def test_a_follow_up_after_a_stopped_answer_matches_a_cold_run(model, reference, sample_video):
    engine = make_engine(model)
    stop = threading.Event()
    settings = GenerationSettings(max_new_tokens=40, ignore_eos=True)
    partial = ""
    for chunk in engine.stream(sample_video, "Describe it.", settings=settings, stop=stop):
        partial += chunk
        stop.set()  # Stop pressed as the first text shows
    assert engine.last_stats.stopped and engine.last_stats.new_tokens < 40
    run_and_compare(engine, reference, sample_video, "And then?", [Turn("Describe it.", partial)])
    assert engine.last_stats.reused_tokens > engine.last_stats.visual_tokens


def test_more_frames_than_one_vision_batch_and_a_prompt_longer_than_one_prefill_chunk(model, reference, sample_video):
    frames = VISION_BATCH + 5
    engine = make_engine(model, frames=frames, prefill_chunk=64)
    visual_tokens = model.layout.visual_tokens(frames)
    assert visual_tokens > 3 * engine.config.prefill_chunk  # several chunks, one through the visual block
    run_and_compare(engine, reference, sample_video, "What moves?", frames=frames)
    # a follow-up prefilled in chunks too, on top of the cache
    engine_history = [Turn("What moves?", "A red square, twice, from the left to the right of the frame " * 4)]
    run_and_compare(engine, reference, sample_video, "Which way?", engine_history, frames=frames)


def test_batched_answers_give_each_prompts_logits_at_every_step(model, reference):
    engine = make_engine(model)
    questions = ["Write one question about the video.", "Write one question.", "Which colour is the cup?"]
    settings = GenerationSettings(max_new_tokens=STEPS, ignore_eos=True)
    answers = dict(engine.answer_texts(questions, settings=settings))
    assert sorted(answers) == [0, 1, 2]
    for index, question in enumerate(questions):
        tokens, logits = reference.greedy_steps(qwen_1_5_prompt(question, None, None), None, STEPS, ignore_eos=True)
        assert answers[index] == reference.tokenizer.decode(tokens, skip_special_tokens=True)
        assert_steps_match(engine, logits, index)


def test_recorded_logits_are_the_raw_scores_before_the_repetition_penalty(model, reference, sample_video):
    """What is compared above is what the model computed, not what the penalty made of it."""
    assert model.generation.repetition_penalty > 1.0
    engine = make_engine(model)
    engine.ask_text("Write one question.", settings=GenerationSettings(max_new_tokens=3, ignore_eos=True))
    first = engine.recorded_logits[0][0]
    torch.testing.assert_close(first, engine.prompt_logits(None, "Write one question."), **TOLERANCE)
