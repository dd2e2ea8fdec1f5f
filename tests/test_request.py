"""A request checked and planned before anything runs: the settings' one check (the CLI's, the API's
and the UI's), the question, the clip's size, the token budget's messages, and `llava-video
inspect`'s plan."""

import math

import pytest

from llava_video_app.config import AppConfig
from llava_video_app.request import (
    RequestError,
    TokenBudget,
    check_clip,
    check_question,
    check_request,
    inspect_request,
)


def test_inspect_plans_the_7b_input_without_loading_anything(sample_video):
    plan = inspect_request(sample_video, "What happens?", model="lmms-lab/LLaVA-Video-7B-Qwen2", frames=64)
    assert len(plan["frame_indices"]) == len(plan["timestamps"]) == 64
    assert plan["visual_tokens"] == 64 * 210 == 13_440
    assert plan["newline_position"] == "grid" and plan["pool_mode"] == "bilinear"
    assert plan["prompt"].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>")


# --- one check of a request's settings, for the CLI, the API and the UI ---------------------------

FRAMES_RANGE = "frames must be a whole number from 1 to 128 (the app's max_frames)"
TOKENS_RANGE = "max_new_tokens must be a whole number from 1 to 4096 (the app's max_new_tokens_limit)"


@pytest.mark.parametrize("given, message", [
    ({"frames": 0}, f"{FRAMES_RANGE}, not 0"),
    ({"frames": -3}, f"{FRAMES_RANGE}, not -3"),
    ({"frames": 2.5}, f"{FRAMES_RANGE}, not 2.5"),
    ({"frames": 129}, f"{FRAMES_RANGE}, not 129"),
    ({"frames": 100_000}, f"{FRAMES_RANGE}, not 100000"),
    ({"frames": math.inf}, f"{FRAMES_RANGE}, not inf"),
    ({"frames": "many"}, "frames must be a number, not 'many'"),
    ({"start": -1}, "start must be a number of seconds, 0 or more, not -1"),
    ({"start": math.nan}, "start must be a number of seconds, 0 or more, not nan"),
    ({"end": -1}, "end must be a number of seconds above 0, not -1"),
    ({"end": 0}, "end must be a number of seconds above 0, not 0"),
    ({"start": 3, "end": 2}, "end (2 s) must be after start (3 s)"),
    ({"max_new_tokens": 2.7}, f"{TOKENS_RANGE}, not 2.7"),
    ({"max_new_tokens": 0}, f"{TOKENS_RANGE}, not 0"),
    ({"max_new_tokens": 10**9}, f"{TOKENS_RANGE}, not 1000000000"),
    ({"temperature": 1e6}, "temperature must be a number from 0 to 2 (0 = greedy), not 1e+06"),
    ({"temperature": -0.5}, "temperature must be a number from 0 to 2 (0 = greedy), not -0.5"),
    ({"top_p": 0}, "top_p must be a number above 0 and at most 1, not 0"),
    ({"top_p": 1.5}, "top_p must be a number above 0 and at most 1, not 1.5"),
])
def test_out_of_range_settings_are_refused_naming_the_setting_its_range_and_the_value(given, message):
    with pytest.raises(RequestError) as refused:
        check_request(AppConfig(), **given)
    assert str(refused.value) == message


def test_settings_left_out_are_the_apps_and_whole_numbers_come_back_as_ints():
    config = AppConfig(frames=16, max_new_tokens=100, temperature=0.5, top_p=0.9)
    request = check_request(config)
    assert (request.frames, request.start, request.end) == (16, None, None)
    generation = request.generation
    assert (generation.max_new_tokens, generation.temperature, generation.top_p) == (100, 0.5, 0.9)
    request = check_request(config, frames=64.0, max_new_tokens=12.0, start=0, end=2.5)
    assert (request.frames, request.generation.max_new_tokens) == (64, 12)
    assert type(request.frames) is int and type(request.generation.max_new_tokens) is int
    assert (request.start, request.end) == (0, 2.5)
    assert check_request(AppConfig(max_frames=256), frames=200).frames == 200  # the bound is the app's setting


def test_the_apps_own_settings_are_held_to_the_same_bounds():
    with pytest.raises(ValueError, match=r"frames must be a whole number from 1 to 128 \(the app's max_frames\), "
                                         r"not 200"):
        AppConfig.from_env({"LLAVA_VIDEO_FRAMES": "200"})
    assert AppConfig.from_env({"LLAVA_VIDEO_FRAMES": "200", "LLAVA_VIDEO_MAX_FRAMES": "256"}).frames == 200
    with pytest.raises(ValueError, match="temperature must be a number from 0 to 2"):
        AppConfig().with_overrides(temperature=5)


def test_questions_empty_blank_too_long_or_with_the_video_placeholder_are_refused():
    for blank in ("", "   \n\t", None):
        with pytest.raises(RequestError, match="^the question is empty"):
            check_question(blank)
    with pytest.raises(RequestError, match=r"^the question is too long: 120,000 characters, 20,000 more than the "
                                           r"app's max_question_chars \(100,000\)$"):
        check_question("why " * 30_000, AppConfig().max_question_chars)
    with pytest.raises(RequestError, match="must not contain <image>"):
        check_question("What is in <image>?")
    assert check_question(" What happens?\n", 100) == "What happens?"
    with pytest.raises(RequestError, match="character 4 is not a Unicode character"):
        check_question("Why\ud800?")  # a lone surrogate: the tokenizer would raise a TypeError
    assert check_question("Why 😀?") == "Why 😀?"  # a real pair is fine


def test_a_clip_is_bounded_in_frames_and_in_decoded_bytes_before_decoding():
    config = AppConfig(max_decoded_mb=100)
    check_clip(64, 384, 384, config)  # 27 MB
    with pytest.raises(RequestError, match=r"64 frames of 1920x1080 would take 380 MB decoded, more than the app's "
                                           r"max_decoded_mb \(100\): use at most 16 frames"):
        check_clip(64, 1920, 1080, config)
    with pytest.raises(RequestError, match=r"the clip has 129 frames, more than the app's max_frames \(128\)"):
        check_clip(129, 10, 10, config)


def _budget(**parts):
    base = dict(context_length=1000, text_tokens=100, question_tokens=20, question_chars=80, history_tokens=0,
                frames=8, tokens_per_frame=50, visual_tokens=400, timestamp_tokens=0, max_new_tokens=100)
    return TokenBudget(**{**base, **parts})


def test_a_request_that_fits_is_measured_and_one_that_does_not_names_the_part_to_cut():
    assert _budget().check() == 500
    assert _budget(max_new_tokens=500).check() == 500  # exactly the context
    with pytest.raises(RequestError, match=r"^the question is too long: 800 tokens \(3,200 characters\); with the "
                                           r"video \(8 frames, 400 tokens\) and up to 100 new tokens this request needs "
                                           r"1,380 tokens, 380 more than the model's 1,000: shorten the question by at "
                                           r"least 380 tokens \(about 1,520 characters\)$"):
        _budget(text_tokens=880, question_tokens=800, question_chars=3200).check()
    with pytest.raises(RequestError, match=r"^too many frames: 20 frames make 1,000 visual tokens and 0 of timestamps; "
                                           r"with the rest of the prompt \(100 tokens\) and up to 100 new tokens this "
                                           r"request needs 1,200 tokens, 200 more than the model's 1,000: use at most 15 "
                                           r"frames$"):
        _budget(frames=20, visual_tokens=1000).check()
    with pytest.raises(RequestError, match=r"and 100 of timestamps; with the rest of the prompt \(100 tokens\) .*: use "
                                           r"at most 14 frames$"):  # 55 tokens a frame: 14 x 55 + 200 = 970
        _budget(frames=20, visual_tokens=1000, timestamp_tokens=100, text_tokens=200).check()
    with pytest.raises(RequestError, match=r"^too many new tokens: up to 900, .*: ask for at most 500 new tokens$"):
        _budget(max_new_tokens=900).check()
    with pytest.raises(RequestError, match=r"^the conversation is too long: its earlier turns are 600 tokens; .*"
                                           r"start a new conversation \(Clear\)$"):
        _budget(text_tokens=700, history_tokens=600).check()
