"""The conversation model of the Ask tab (web/conversation.py): tasks and their questions, the trim
range the engine gets."""

from llava_video_app.prompts import CAPTION_QUESTION, QUESTION_TYPES
from llava_video_app.web.conversation import (
    TASK_CAPTION,
    TASK_OWN,
    TASKS,
    ChatState,
    question_for_task,
)


def test_tasks_fill_in_their_question():
    assert TASKS[0] == TASK_CAPTION and TASKS[-1] == TASK_OWN and len(TASKS) == 18
    assert question_for_task(TASK_CAPTION) == CAPTION_QUESTION
    for qtype in QUESTION_TYPES:
        assert question_for_task(qtype.name) == qtype.preset
    assert question_for_task(TASK_OWN) == ""


def test_the_whole_video_is_sampled_untrimmed_and_a_new_clip_is_a_new_conversation():
    state = ChatState(video="v.mp4", duration=6.004)
    assert state.trim(0, 6.0) == (None, None) and state.trim(None, None) == (None, None)
    assert state.trim(1, 4) == (1.0, 4.0)
    same = state.for_clip("v.mp4", 0, None, None)
    assert same is state
    other = state.for_clip("v.mp4", 16, None, None)
    assert other is not state and other.duration == 6.004 and other.turns == []


def test_each_task_shows_its_definition_and_its_preset_fits_any_video():
    from llava_video_app.web.conversation import definition_for_task

    for qtype in QUESTION_TYPES:
        assert qtype.definition in definition_for_task(qtype.name)
    assert "detailed description" in definition_for_task(TASK_CAPTION)
    # the presets name no particular thing that a user's video may lack (the paper-style examples do)
    particular = ("red ball", "blue box", "door", "cup", "kitchen", "paper", "blocks", "square")
    assert not [t.name for t in QUESTION_TYPES if any(word in t.preset.lower() for word in particular)]
    assert any(word in t.example.lower() for t in QUESTION_TYPES for word in particular), "the examples stay as they are"
