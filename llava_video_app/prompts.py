"""What the model reads: the question types, the time instruction and the qwen_1_5 chat layout.

Everything here follows the authors' inference code (model card + llava/conversation.py);
see shared/reference/llava-video-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

IMAGE_PLACEHOLDER = "<image>"  # becomes the visual tokens; "image" even for videos, as upstream
SYSTEM_MESSAGE = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

CAPTION_QUESTION = "Please describe this video in detail."


@dataclass(frozen=True)
class QuestionType:
    name: str
    definition: str
    example: str  # an example in the paper's style, about a particular (imagined) video
    preset: str = ""  # the app's and CLI's question for the type, phrased to fit any video

    def __post_init__(self) -> None:
        if not self.preset:
            object.__setattr__(self, "preset", self.example)


# The 16 question types of LLaVA-Video-178K, in the paper's order.
QUESTION_TYPES: tuple[QuestionType, ...] = (
    QuestionType("Temporal", "When something happens relative to other events, and how long it lasts.",
                 "What happens right after the person opens the door?",
                 "What is the first notable event in the video, what happens right after it, and how long does it "
                 "last?"),
    QuestionType("Spatial", "Where things are in the scene and how they are placed relative to each other.",
                 "Where is the red ball relative to the blue box?",
                 "Where are the main people or objects in the scene, relative to each other?"),
    QuestionType("Causal", "Why something happens: causes and consequences of events.",
                 "Why does the stack of blocks fall over?",
                 "Why does the main event of the video happen, and what does it lead to?"),
    QuestionType("Description-Scene", "The setting: the place, environment, weather and lighting.",
                 "What kind of place is shown in the video, and what is the lighting like?"),
    QuestionType("Description-Human", "People: their appearance, clothing, expressions and what they do.",
                 "What is the person in the video wearing?",
                 "Are there people in the video? If so, what do they look like, wear and do?"),
    QuestionType("Description-Object", "Objects: their appearance, colour, material and state.",
                 "What does the main object in the video look like?"),
    QuestionType("Count", "How many objects, people or repetitions of an action there are.",
                 "How many times does the ball bounce?",
                 "How many distinct people or objects appear in the video, and how often is the main action repeated?"),
    QuestionType("Binary", "A yes/no question about the content of the video.",
                 "Does the person pick up the cup?",
                 "Does anything in the video move? Answer yes or no, then say what."),
    QuestionType("Fine Grained Action Understanding", "Precise details of how an action is carried out.",
                 "How exactly does the person fold the paper?",
                 "How exactly is the main action in the video carried out, step by step?"),
    QuestionType("Plot Understanding", "The storyline: what the video is about as a whole.",
                 "What is the overall story of this video?"),
    QuestionType("Non-Existent Actions with Existent Scene Depictions",
                 "An action that does not happen, asked about a scene that does exist (the right answer "
                 "says it does not happen).",
                 "Does the person in the kitchen start dancing on the table?",
                 "Does the main subject of the video suddenly vanish from the scene? If it does not happen, say so."),
    QuestionType("Time Order Understanding", "The order in which events happen.",
                 "What does the person do first, and what do they do last?",
                 "What happens first in the video, and what happens last?"),
    QuestionType("Object Direction", "Which way objects or people move.",
                 "In which direction does the square move across the screen?",
                 "In which direction do the moving things in the video travel across the frame?"),
    QuestionType("Camera Direction", "How the camera moves: pan, tilt, zoom, follow, or static.",
                 "How does the camera move during the video?"),
    QuestionType("Speed", "How fast things move or change, and whether they speed up or slow down.",
                 "Does the object speed up or slow down over the video?",
                 "Does the main moving thing in the video speed up or slow down?"),
    QuestionType("Attribute Change", "How a property (colour, size, shape, state, count) changes over time.",
                 "How does the colour of the object change over the video?",
                 "How does a property of the main object (colour, size, shape or state) change over the video?"),
)

_TYPES_BY_KEY = {t.name.lower(): t for t in QUESTION_TYPES}


def question_type(name: str) -> QuestionType:
    """Look a type up by name, case-insensitively; a clear error lists the valid names."""
    try:
        return _TYPES_BY_KEY[name.strip().lower()]
    except KeyError:
        names = ", ".join(t.name for t in QUESTION_TYPES)
        raise ValueError(f"unknown question type {name!r}; choose one of: {names}") from None


def format_timestamps(timestamps: Sequence[float]) -> str:
    return ",".join(f"{t:.2f}s" for t in timestamps)


def time_instruction(duration: float, timestamps: Sequence[float]) -> str:
    # Verbatim from the model card, including the missing space after "{timestamps}.".
    return (
        f"The video lasts for {duration:.2f} seconds, and {len(timestamps)} frames are uniformly sampled "
        f"from it. These frames are located at {format_timestamps(timestamps)}."
        "Please answer the following questions related to this video."
    )


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


def build_prompt(
    question: str,
    history: Sequence[Turn] = (),
    *,
    duration: float | None = None,
    timestamps: Sequence[float] | None = None,
    with_video: bool = True,
    with_time_instruction: bool = True,
) -> str:
    """The full qwen_1_5 prompt text, ending with "<|im_start|>assistant\\n".

    The video (the <image> placeholder and the time instruction) belongs to the first user turn
    only; `history` holds the earlier turns of the same conversation. With `with_video=False`
    the prompt is text-only (used for QA generation from a description). With
    `with_time_instruction=False` the video is "<image>\n" alone, as lmms-eval's llava_vid sends it by
    default (benchmark runs that reproduce its numbers).
    """
    turns = [*history, Turn(question, "")]
    text = f"{IM_START}system\n{SYSTEM_MESSAGE}{IM_END}\n"
    for i, turn in enumerate(turns):
        user = turn.question
        if i == 0 and with_video:
            if duration is None or timestamps is None:
                raise ValueError("a video prompt needs the video's duration and frame timestamps")
            said = time_instruction(duration, timestamps) if with_time_instruction else ""
            user = f"{IMAGE_PLACEHOLDER}{said}\n{user}"
        text += f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
        if i < len(turns) - 1:  # stripped, as the authors store a decoded answer in the conversation
            text += f"{turn.answer.strip()}{IM_END}\n"
    return text
