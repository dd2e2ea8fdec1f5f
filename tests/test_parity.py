"""Our model path against an independent transcription of the authors' (tests/llava_reference.py).

The reference reads the checkpoint files itself, samples frames with decord as the model card does,
writes its own prompt and runs its own plain-torch forward; it imports nothing from llava_video_app
(only the tiny checkpoints are made with the project's writer). Compared: the frames, the prompt,
the visual token count, the spliced input embeddings, the last-position logits of the whole prompt
and the greedy answer, for every newline layout and pooling mode, with the 7B's rotary base (1e6)
and a non-default RMSNorm epsilon.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_reference import ReferenceLlavaVideo, load_video, qwen_1_5_prompt

from llava_video_app.config import AppConfig, GenerationSettings
from llava_video_app.engine import Engine
from llava_video_app.model import LlavaVideoModel
from llava_video_app.prompts import build_prompt
from llava_video_app.tiny import build_tiny_checkpoint

FRAMES = 8
QUESTION = "Please describe this video in detail."
# fp32 on both sides; the two differ only in the order of floating-point operations.
LOGITS_TOLERANCE = dict(rtol=1e-4, atol=1e-5)

VARIANTS = {  # name: (newline position, pool mode, language-model overrides)
    "grid-bilinear": ("grid", "bilinear", {}),  # LLaVA-Video-7B-Qwen2's layout
    "grid-average": ("grid", "average", {"rms_norm_eps": 1e-5}),  # lmms-eval's pool override
    "frame-max": ("frame", "max", {"rms_norm_eps": 1e-5}),
    "one_token-bilinear": ("one_token", "bilinear", {"rms_norm_eps": 1e-5}),  # OneVision
    "no_token-average": ("no_token", "average", {"rms_norm_eps": 3e-6}),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory, sample_video):
    """(reference, our engine) on one tiny checkpoint variant, both fp32 on CPU."""
    newline, pool, lm = VARIANTS[request.param]
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param), newline_position=newline,
                                       pool_mode=pool, lm_overrides=lm, seed=len(request.param))
    model = LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")
    return ReferenceLlavaVideo(checkpoint), Engine(model, AppConfig(frames=FRAMES, decode_at_model_size=False))


def test_the_tiny_checkpoints_use_the_7b_rotary_base_and_their_own_norm_eps(pair):
    ref, _ = pair
    assert ref.config["rope_theta"] == 1_000_000.0  # the bug this guards against ran with 10,000


def test_frames_and_prompt_are_the_model_cards(pair, sample_video):
    ref, engine = pair
    frames, frame_time, video_time = load_video(sample_video, FRAMES)
    clip = engine.load_clip(sample_video)
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_allclose(clip.timestamps, frame_time)
    assert clip.duration == pytest.approx(video_time)
    ours = build_prompt(QUESTION, duration=clip.duration, timestamps=clip.timestamps)
    assert ours == qwen_1_5_prompt(QUESTION, frame_time, video_time)
    assert engine.model.tokenize(ours) == ref.tokenizer_image_token(ours)


def test_visual_tokens_and_spliced_embeddings_match(pair, sample_video):
    ref, engine = pair
    frames, frame_time, video_time = load_video(sample_video, FRAMES)
    expected = ref.video_features(frames)
    visual = engine.model.encode_video(frames)
    assert visual.shape == expected.shape
    assert visual.shape[0] == engine.model.layout.visual_tokens(FRAMES)
    torch.testing.assert_close(visual, expected, rtol=1e-4, atol=1e-5)

    prompt = qwen_1_5_prompt(QUESTION, frame_time, video_time)
    ours = engine.model.embed(engine.model.tokenize(prompt), visual)[0]
    torch.testing.assert_close(ours, ref.inputs_embeds(prompt, frames), rtol=1e-4, atol=1e-5)


def test_last_position_logits_of_the_whole_prompt_match(pair, sample_video):
    ref, engine = pair
    frames, frame_time, video_time = load_video(sample_video, FRAMES)
    expected = ref.last_logits(qwen_1_5_prompt(QUESTION, frame_time, video_time), frames)
    got = engine.prompt_logits(sample_video, QUESTION)
    assert got.shape == expected.shape == (len(ref.tokenizer),)
    torch.testing.assert_close(got, expected, **LOGITS_TOLERANCE)


def test_greedy_answer_matches_token_for_token(pair, sample_video):
    ref, engine = pair
    frames, frame_time, video_time = load_video(sample_video, FRAMES)
    expected = ref.greedy(qwen_1_5_prompt(QUESTION, frame_time, video_time), frames, max_new_tokens=12)
    answer = engine.ask(sample_video, QUESTION, settings=GenerationSettings(max_new_tokens=12))
    assert engine.last_stats.token_ids == expected
    assert answer == ref.tokenizer.decode(expected, skip_special_tokens=True)
