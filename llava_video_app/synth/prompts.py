"""Every text the synthesis recipe sends to the model, in our own words, and the functions that fill
them in. Change any text here and bump PROMPT_VERSION (every record carries it).

Level 1 sees one window's frames and, as context, the previous level-1 description; levels 2 and 3
and the QA calls are text only. `qa_prompt_types` recognises a QA prompt (and the types it asks for)
from the same templates, for stand-ins that answer QA calls in tests.
"""

from __future__ import annotations

import json
import re
import string
from typing import TYPE_CHECKING, Any, Sequence

from ..prompts import CAPTION_QUESTION, question_type
from .plan import Window

if TYPE_CHECKING:  # result.py records PROMPT_VERSION, so it imports this module
    from .result import Description

PROMPT_VERSION = "synth-1"

PROMPTS: dict[str, str] = {
    # Level 1: one 10 s window, with its frames.
    "level1": (
        "These frames are seconds {start:.0f} to {end:.0f} of a video that lasts {duration:.0f} seconds. "
        "Describe in detail what happens in them, in order: the setting, the people and objects (appearance, "
        "colour, position), their actions and movements, how things change, and how the camera moves. "
        "Describe only what you can see."
    ),
    "level1_context": (
        "\nThe part just before (seconds {start:.0f} to {end:.0f}) was described like this:\n"
        "\"\"\"{text}\"\"\"\n"
        "Continue from there: say what happens now, call the same people and objects by the same names, "
        "and do not repeat what was already said."
    ),
    # Level 2: a 30 s window, text only, from its level-1 descriptions.
    "level2": (
        "Here are descriptions of consecutive 10-second parts of a video, covering seconds {start:.0f} to "
        "{end:.0f}:\n{parts}\n{context}"
        "Write one coherent, detailed description of this stretch of the video. Keep every concrete detail "
        "(people, objects, colours, positions, actions, camera motion), put events in the order they happen, "
        "merge repeated mentions of the same person or object, and add nothing the parts do not say."
    ),
    "level2_context": (
        "For context, the stretch before it (seconds {start:.0f} to {end:.0f}) was described like this:\n"
        "\"\"\"{text}\"\"\"\n"
    ),
    # Level 3: the whole video, text only. The result is the detailed caption.
    "level3": (
        "Here are descriptions of consecutive parts of a video that lasts {duration:.0f} seconds, in order:\n"
        "{parts}\n"
        "From them, write one detailed description of the whole video: the setting, the people and objects, "
        "and everything that happens in the order it happens, including movements, changes and camera motion. "
        "Keep all concrete details, do not repeat yourself, and write it as a description of the video itself "
        "(do not mention these notes or their time ranges)."
    ),
    "part": "[{start:.0f}s-{end:.0f}s] {text}",
    # QA, one type per call. The caption comes first so that the calls share a cached prefix.
    "qa_per_type": (
        "Here is a detailed description of a video:\n\"\"\"\n{description}\n\"\"\"\n\n"
        "Write one question about this video of the type \"{type}\": {definition}\n"
        "The question must be answerable from the description alone, and the answer must be right according "
        "to it. For a multiple-choice version, also give the correct answer as a short option and three wrong "
        "but plausible options in the same style.\n"
        "An example of the format, about a different video:\n{demo}\n"
        "Reply with only a JSON object with the keys \"Dimension\", \"Question\", \"Answer\", "
        "\"Correct Option\" and \"Wrong Options\". If the description gives no basis for a question of this "
        "type, reply with exactly: None"
    ),
    # QA, all selected types in one call.
    "qa_joint": (
        "Here is a detailed description of a video:\n\"\"\"\n{description}\n\"\"\"\n\n"
        "Write question-answer pairs about this video, at most one for each of these question types:\n"
        "{types}\n"
        "Each question must be answerable from the description alone, and each answer must be right according "
        "to it. For a multiple-choice version, also give the correct answer as a short option and three wrong "
        "but plausible options in the same style.\n"
        "An example of one item, about a different video:\n{demo}\n"
        "Reply with only a JSON list of objects with the keys \"Dimension\", \"Question\", \"Answer\", "
        "\"Correct Option\" and \"Wrong Options\". Leave out any type the description gives no basis for."
    ),
    "qa_type_line": "- {type}: {definition}",
    # The human turn of caption records (the model card's detailed-caption question).
    "caption_record": CAPTION_QUESTION,
}

# One demonstration per type (shown in the QA prompt). Invented, about imaginary videos.
QA_DEMOS: dict[str, dict[str, Any]] = {
    "Temporal": {"Question": "What does the cyclist do right after stopping at the red light?",
                 "Answer": "She takes a drink from her water bottle while waiting.",
                 "Correct Option": "Drinks from a water bottle",
                 "Wrong Options": ["Checks her phone", "Gets off the bike", "Adjusts her helmet"]},
    "Spatial": {"Question": "Where is the laptop relative to the coffee mug on the desk?",
                "Answer": "The laptop is to the left of the mug, closer to the edge of the desk.",
                "Correct Option": "To the left of the mug",
                "Wrong Options": ["Behind the mug", "To the right of the mug", "On a shelf above the mug"]},
    "Causal": {"Question": "Why does the dog start barking at the window?",
               "Answer": "Because a delivery van stops outside and a man walks up to the door.",
               "Correct Option": "A delivery man approaches the door",
               "Wrong Options": ["It hears thunder", "Another dog barks on TV", "Its owner calls it"]},
    "Description-Scene": {"Question": "What kind of place is the video set in?",
                          "Answer": "A busy open-air market at dusk, lit by strings of yellow lamps over the stalls.",
                          "Correct Option": "An open-air market at dusk",
                          "Wrong Options": ["A shopping mall at noon", "A quiet library", "A train station at night"]},
    "Description-Human": {"Question": "What is the chef wearing?",
                          "Answer": "A white double-breasted jacket, a black apron and a grey cap.",
                          "Correct Option": "A white jacket with a black apron",
                          "Wrong Options": ["A red T-shirt", "A blue suit and tie", "A green hoodie"]},
    "Description-Object": {"Question": "What does the vase on the table look like?",
                           "Answer": "It is a tall, narrow glass vase, light blue, holding three yellow tulips.",
                           "Correct Option": "A tall light-blue glass vase",
                           "Wrong Options": ["A short clay pot", "A white porcelain bowl", "A square metal tin"]},
    "Count": {"Question": "How many times does the player bounce the ball before serving?",
              "Answer": "Four times.", "Correct Option": "Four", "Wrong Options": ["Two", "Three", "Six"]},
    "Binary": {"Question": "Does the woman close the window before leaving the room?",
               "Answer": "Yes, she closes it and then walks out.", "Correct Option": "Yes",
               "Wrong Options": ["No"]},
    "Fine Grained Action Understanding": {
        "Question": "How does the man crack the egg?",
        "Answer": "He taps it once on the rim of the bowl and pulls the shell apart with both thumbs.",
        "Correct Option": "Taps it on the bowl's rim and opens it with his thumbs",
        "Wrong Options": ["Cracks it with a knife", "Squeezes it in one hand", "Drops it on the counter"]},
    "Plot Understanding": {
        "Question": "What is the video about as a whole?",
        "Answer": "A boy builds a paper boat, tests it in a puddle, and fixes it after it starts to sink.",
        "Correct Option": "A boy makes and repairs a paper boat",
        "Wrong Options": ["A family goes sailing", "A boy cleans his room", "A teacher explains origami"]},
    "Non-Existent Actions with Existent Scene Depictions": {
        "Question": "Does the gardener start the lawnmower in the garden?",
        "Answer": "No. The gardener only waters the flower beds and prunes a bush; no lawnmower is used.",
        "Correct Option": "No, he only waters and prunes",
        "Wrong Options": ["Yes, at the start", "Yes, after pruning", "Yes, twice"]},
    "Time Order Understanding": {
        "Question": "In what order does the woman do these things: pour the tea, boil the water, add sugar?",
        "Answer": "She boils the water first, then pours the tea, and adds sugar last.",
        "Correct Option": "Boil water, pour tea, add sugar",
        "Wrong Options": ["Pour tea, boil water, add sugar", "Add sugar, boil water, pour tea",
                          "Boil water, add sugar, pour tea"]},
    "Object Direction": {"Question": "Which way does the train move across the frame?",
                         "Answer": "It moves from the right side of the frame to the left.",
                         "Correct Option": "From right to left",
                         "Wrong Options": ["From left to right", "Towards the camera", "Away from the camera"]},
    "Camera Direction": {"Question": "How does the camera move while the runners pass?",
                         "Answer": "It pans to the left to follow them, then stays still.",
                         "Correct Option": "Pans left, then stays still",
                         "Wrong Options": ["Zooms in", "Tilts upward", "Stays still throughout"]},
    "Speed": {"Question": "How does the carousel's speed change during the video?",
              "Answer": "It starts slowly, speeds up, and gradually slows down to a stop at the end.",
              "Correct Option": "Speeds up, then slows to a stop",
              "Wrong Options": ["Keeps a constant speed", "Only slows down", "Stops and starts repeatedly"]},
    "Attribute Change": {"Question": "How does the colour of the sky change over the video?",
                         "Answer": "It goes from bright blue to orange and then to dark purple as the sun sets.",
                         "Correct Option": "Blue to orange to dark purple",
                         "Wrong Options": ["Grey to blue", "Stays blue", "Orange to bright blue"]},
}


def level1_prompt(window: Window, duration: float, previous: Description | None) -> str:
    text = PROMPTS["level1"].format(start=window.start, end=window.end, duration=duration)
    if previous is not None and previous.text:
        text += PROMPTS["level1_context"].format(start=previous.start, end=previous.end, text=previous.text)
    return text


def _parts(descriptions: Sequence[Description]) -> str:
    return "\n".join(PROMPTS["part"].format(start=d.start, end=d.end, text=d.text or "(no description)")
                     for d in descriptions)


def level2_prompt(window: Window, parts: Sequence[Description], previous: Description | None) -> str:
    context = (PROMPTS["level2_context"].format(start=previous.start, end=previous.end, text=previous.text)
               if previous is not None and previous.text else "")
    return PROMPTS["level2"].format(start=window.start, end=window.end, parts=_parts(parts), context=context)


def level3_prompt(duration: float, parts: Sequence[Description]) -> str:
    return PROMPTS["level3"].format(duration=duration, parts=_parts(parts))


def qa_prompt(description: str, types: Sequence[str]) -> str:
    """One type: the per-type prompt; several: the joint prompt."""
    if len(types) == 1:
        t = question_type(types[0])
        demo = json.dumps({"Dimension": t.name, **QA_DEMOS[t.name]}, ensure_ascii=False)
        return PROMPTS["qa_per_type"].format(description=description, type=t.name, definition=t.definition,
                                             demo=demo)
    lines = "\n".join(PROMPTS["qa_type_line"].format(type=question_type(n).name,
                                                     definition=question_type(n).definition) for n in types)
    first = question_type(types[0]).name
    demo = json.dumps({"Dimension": first, **QA_DEMOS[first]}, ensure_ascii=False)
    return PROMPTS["qa_joint"].format(description=description, types=lines, demo=demo)


def _template_pattern(template: str) -> re.Pattern[str]:
    """What `template.format(...)` makes, each field captured under its name."""
    parts = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P<{name}>.*?)")
    return re.compile("".join(parts), re.S)


_QA_PER_TYPE = _template_pattern(PROMPTS["qa_per_type"])
_QA_JOINT = _template_pattern(PROMPTS["qa_joint"])
_QA_TYPE_LINE = _template_pattern(PROMPTS["qa_type_line"])


def qa_prompt_types(prompt: str) -> tuple[str, ...] | None:
    """The question types a prompt made by `qa_prompt` asks for (one: a per-type call; several: a joint
    call), or None for any other prompt."""
    found = _QA_PER_TYPE.fullmatch(prompt)
    if found:
        return (found["type"],)
    found = _QA_JOINT.fullmatch(prompt)
    if found:
        lines = (_QA_TYPE_LINE.fullmatch(line) for line in found["types"].split("\n"))
        return tuple(line["type"] for line in lines if line)
    return None
