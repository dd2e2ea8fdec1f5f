"""The prompt is the authors' qwen_1_5 layout, character for character."""

import pytest

from llava_video_app.prompts import (
    CAPTION_QUESTION,
    QUESTION_TYPES,
    Turn,
    build_prompt,
    question_type,
    time_instruction,
)


def test_time_instruction_is_verbatim_including_the_missing_space():
    text = time_instruction(10.0, [0.0, 4.96, 9.92])
    assert text == ("The video lasts for 10.00 seconds, and 3 frames are uniformly sampled from it. "
                    "These frames are located at 0.00s,4.96s,9.92s.Please answer the following questions "
                    "related to this video.")


def test_first_turn_prompt_matches_the_model_card_layout():
    prompt = build_prompt(CAPTION_QUESTION, duration=2.0, timestamps=[0.0, 1.0])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>The video lasts for 2.00 seconds, and 2 frames are uniformly sampled from it. "
        "These frames are located at 0.00s,1.00s.Please answer the following questions related to this video.\n"
        "Please describe this video in detail.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_follow_up_appends_turns_and_keeps_the_video_in_the_first_only():
    first = build_prompt("What moves?", duration=2.0, timestamps=[0.0, 1.0])
    follow = build_prompt("Which way?", [Turn("What moves?", "A square.")], duration=2.0, timestamps=[0.0, 1.0])
    assert follow == first + "A square.<|im_end|>\n<|im_start|>user\nWhich way?<|im_end|>\n<|im_start|>assistant\n"
    assert follow.count("<image>") == 1


def test_text_only_prompt_has_no_video():
    assert "<image>" not in build_prompt("Write QA pairs.", with_video=False)
    with pytest.raises(ValueError):
        build_prompt("q")  # a video prompt needs duration and timestamps


def test_sixteen_question_types_each_with_definition_and_example():
    assert len(QUESTION_TYPES) == 16
    assert len({t.name for t in QUESTION_TYPES}) == 16
    assert all(t.definition and t.example.endswith("?") for t in QUESTION_TYPES)
    assert question_type("camera direction").name == "Camera Direction"
    with pytest.raises(ValueError, match="Camera Direction"):
        question_type("Camera Angle")
