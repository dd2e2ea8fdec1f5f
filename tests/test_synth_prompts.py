"""The recipe's prompts (synth/prompts.py): in one place, versioned, and recognisable as QA calls."""

from __future__ import annotations

from llava_video_app.prompts import QUESTION_TYPES
from llava_video_app.synth import prompts
from llava_video_app.synth.plan import Window
from llava_video_app.synth.result import Description

ALL_TYPES = [t.name for t in QUESTION_TYPES]


def test_prompts_are_in_one_place_and_versioned():
    assert prompts.PROMPT_VERSION
    assert set(prompts.QA_DEMOS) == set(ALL_TYPES)
    per_type = prompts.qa_prompt("A red square moves.", ["Speed"])
    assert per_type.startswith("Here is a detailed description of a video:\n\"\"\"\nA red square moves.")
    assert '"Speed"' in per_type and "None" in per_type
    joint = prompts.qa_prompt("A red square moves.", ["Speed", "Count"])
    assert "- Speed:" in joint and "- Count:" in joint


def test_qa_prompts_say_which_types_they_ask_for():
    caption = 'A red square moves. Nothing here is "of the type" anything.'
    assert prompts.qa_prompt_types(prompts.qa_prompt(caption, ["Speed"])) == ("Speed",)
    assert prompts.qa_prompt_types(prompts.qa_prompt(caption, ALL_TYPES)) == tuple(ALL_TYPES)
    window = Window(1, 0, 0.0, 10.0)
    previous = Description(1, 0, 0.0, 10.0, "A square.")
    for other in (prompts.level1_prompt(window, 25.0, None), prompts.level2_prompt(window, [previous], None),
                  prompts.level3_prompt(25.0, [previous]), "What happens?", ""):
        assert prompts.qa_prompt_types(other) is None
