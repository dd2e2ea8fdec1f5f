"""generation_config.json applied as the authors' `generate(do_sample=False, ...)` applies it: its stop
ids end an answer, its repetition penalty changes greedy choices (over the answer's tokens only), and a
greedy-changing processor we do not implement is refused. Default length: the model card's 4096."""

from __future__ import annotations

import pytest
import torch
from llava_reference import ReferenceLlavaVideo, qwen_1_5_prompt

from llava_video_app.checkpoint import CheckpointError
from llava_video_app.config import AppConfig, GenerationSettings
from llava_video_app.engine import Engine
from llava_video_app.generation_config import CheckpointGeneration
from llava_video_app.model import LlavaVideoModel
from llava_video_app.tiny import build_tiny_checkpoint

QUESTION = "Write one question."


def test_the_file_is_read_with_its_stop_ids_and_penalty(tiny_checkpoint, tiny_model):
    generation = CheckpointGeneration.read(tiny_checkpoint)
    assert generation.repetition_penalty == 1.05  # the tiny file is laid out like Qwen2-7B-Instruct's
    assert set(generation.eos_token_ids) <= set(tiny_model.eos_token_ids)
    assert tiny_model.generation == generation
    assert CheckpointGeneration.from_dict({"eos_token_id": 7}).eos_token_ids == (7,)
    assert CheckpointGeneration.read(tiny_checkpoint / "no-such-folder") == CheckpointGeneration()


@pytest.mark.parametrize("key, value", [("no_repeat_ngram_size", 3), ("min_new_tokens", 2), ("num_beams", 4),
                                        ("suppress_tokens", [5]), ("repetition_penalty", -1.0)])
def test_a_greedy_changing_setting_we_do_not_implement_is_refused(key, value):
    with pytest.raises(CheckpointError, match=key):
        CheckpointGeneration.from_dict({key: value})


def test_sampling_only_and_neutral_settings_are_accepted():
    generation = CheckpointGeneration.from_dict({"temperature": 0.7, "top_k": 20, "top_p": 0.8, "do_sample": True,
                                                 "num_beams": 1, "no_repeat_ngram_size": 0})
    assert generation.repetition_penalty == 1.0


def test_the_penalty_is_transformers_repetition_penalty_processor():
    from transformers import RepetitionPenaltyLogitsProcessor

    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    generated = [3, 7, 7, 42, 3]
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([generated]), logits[None].clone())[0]
    torch.testing.assert_close(CheckpointGeneration(repetition_penalty=1.3).process(logits, generated), expected)
    torch.testing.assert_close(CheckpointGeneration(repetition_penalty=1.3).process(logits, []), logits)


@pytest.fixture(scope="module")
def penalised(tmp_path_factory):
    """The tiny checkpoint with a strong repetition penalty in its generation_config.json."""
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("penalised"), generation_overrides={
        "repetition_penalty": 1.6})
    return checkpoint, LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")


def test_greedy_answers_apply_the_files_repetition_penalty_like_the_authors(penalised):
    checkpoint, model = penalised
    reference = ReferenceLlavaVideo(checkpoint)
    settings = GenerationSettings(max_new_tokens=24, ignore_eos=True)
    engine = Engine(model, AppConfig(frames=8))
    engine.ask_text(QUESTION, settings=settings)
    expected, _ = reference.greedy_steps(qwen_1_5_prompt(QUESTION, None, None), None, 24, ignore_eos=True)
    assert engine.last_stats.token_ids == expected
    answers = dict(engine.answer_texts([QUESTION, "Which colour?"], settings=settings))
    assert answers[0] == reference.tokenizer.decode(expected, skip_special_tokens=True)

    model.generation = CheckpointGeneration(model.generation.eos_token_ids)  # the same, without the penalty
    try:
        engine.ask_text(QUESTION, settings=settings)
        assert engine.last_stats.token_ids != expected  # so the penalty decided tokens above
    finally:
        model.generation = CheckpointGeneration.read(checkpoint)


def test_an_answer_stops_at_a_stop_id_only_the_file_names(tiny_engine, tmp_path):
    settings = GenerationSettings(max_new_tokens=8, ignore_eos=False)
    tiny_engine.ask_text(QUESTION, settings=settings)
    first = tiny_engine.last_stats.token_ids[0]
    model = tiny_engine.model
    assert first not in model.eos_token_ids
    checkpoint = build_tiny_checkpoint(tmp_path / "stops", generation_overrides={
        "eos_token_id": [*CheckpointGeneration.read(model.model_id).eos_token_ids, first]})
    stopping = Engine(LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu"), tiny_engine.config)
    assert stopping.ask_text(QUESTION, settings=settings) == ""
    assert stopping.last_stats.new_tokens == 0


def test_default_answer_length_is_the_model_cards_4096():
    assert AppConfig().max_new_tokens == GenerationSettings().max_new_tokens == 4096
    assert GenerationSettings.from_config(AppConfig()).max_new_tokens == 4096


def test_the_caption_command_and_its_help_say_4096(monkeypatch):
    """The caption preset takes the default: never cut shorter than the authors' run (4096 new tokens)."""
    from llava_video_app import cli

    assert "default 4096" in cli.MaxTokensOpt.help
    monkeypatch.delenv("LLAVA_VIDEO_MAX_NEW_TOKENS", raising=False)
    config, request = cli._checked_request(AppConfig(), frames=None, start=None, end=None, max_new_tokens=None,
                                           temperature=None, top_p=None)
    assert config.max_new_tokens == request.generation.max_new_tokens == 4096
