"""Synthetic video instruction data: the LLaVA-Video-178K recipe, run with the local model.

    video --1 fps frames--> level-1 descriptions (10 s windows, with frames)
          --> level-2 descriptions (30 s windows, text only) --> level-3 = the detailed caption
          --> QA pairs from the caption (text only, the 16 question types) --> filters
          --> records: caption, open-ended QA, multiple-choice QA (dataset.py writes them)

The rules, exactly (see shared/reference/llava-video-tasks.md for the recipe):

Frames: `sample_fps` (1) frames per second of video (frame `round(k * fps)` for k = 0, 1, ...),
capped at `max_frames` (180) by uniform subsampling; both, the frame count and the effective rate
go into every record.

Level-1 windows: [0, W), [W, 2W), ... with W = `window_seconds` (10); the last, partial window is
kept, except that a tail shorter than `min_tail_seconds` (2) joins the previous window; a window
that got no frame (only possible when the cap brings the rate under 1 / W) is skipped. So a 25 s
video has 3 windows, a 70 s video 7. Each window is one model call with that window's frames
(timestamps in the video's own time, the whole video's duration in the time instruction) and, as
context, the previous level-1 description.

Level-2 windows: level-1 windows grouped by `level2_group` (3) in time order, i.e. [0, 30),
[30, 60), ...; the last, partial group is kept (`keep_partial_level2`), so 25 s -> 1, 70 s -> 3.
Each is one text-only call (our choice: the paper builds level 2 from descriptions only, and text is
far cheaper than re-encoding 30 frames) from the group's level-1 descriptions and the previous
level-2 description. Calls are made in the recurrent order: a level-2 right after its last level-1.

Level-3: one text-only call from all level-2 descriptions plus any level-1 descriptions not covered
by a level-2 (only with `keep_partial_level2=False`). Its text is the detailed caption.

QA: from the caption only, text-only calls. `qa_mode="per_type"` (default): one call per selected
type, returning one JSON object or "None"; the shared prompt prefix (the caption) is served from the
engine's KV cache, and a small model copes far better with one type at a time. `qa_mode="joint"`:
one call returning a JSON list for all selected types. Either way at most one pair per type.

Multiple choice: the QA JSON also asks for a short "Correct Option" and "Wrong Options"
(distractors). A pair with at least 2 usable distractors also becomes a multiple-choice item: the
correct option + up to 4 distractors (3-5 options), shuffled with a seed derived from the record id
(stable), human turn `question\\nA. ...\\nB. ...\\nPlease respond with only the letter of the correct
answer.`, answer `B.`. Pairs without usable distractors stay open-ended only (counted in
`mc_skipped`).

Rejects (counted per reason in `SynthResult.rejects`): unparseable (no JSON in a call's output, even
after json_repair), malformed (an entry without a usable question and answer), none (the model said
"None" for a type), unknown_type, extra_for_type (a second pair of a type), duplicate (same
normalised question text), lacks_info (the answer admits the description does not say),
empty_caption (level 3 came out empty: no caption record, no QA).

All prompts are in PROMPTS / QA_DEMOS below, in our own words; change them and bump PROMPT_VERSION.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from . import dataset as ds
from . import output_folder as folder
from .jsonl import JsonlStore
from .prompts import CAPTION_QUESTION, IMAGE_PLACEHOLDER, QUESTION_TYPES, question_type
from .video import VideoClip

log = logging.getLogger(__name__)

# ==================================================================================================
# Every prompt of the recipe, in one place. Bump PROMPT_VERSION whenever any text here changes.
# ==================================================================================================
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

# Answers that admit the description lacks the information (searched case-insensitively).
LACKS_INFO_PATTERNS: tuple[str, ...] = (
    r"\b(?:does|do|did)\s*(?:not|n't)\s+(?:specify|specifies|mention|mentions|say|state|indicate|provide|"
    r"describe|include|reveal|clarify|detail|show|tell)\b",
    r"\bnot\s+(?:specified|mentioned|stated|described|provided|indicated|given|clear|clarified|detailed)\b",
    r"\b(?:cannot|can\s*not|can't|could\s*not|couldn't)\s+be\s+(?:determined|inferred|known|answered|"
    r"identified|established|told|confirmed)\b",
    r"\b(?:impossible|not\s+possible)\s+to\s+(?:tell|determine|know|say|infer)\b",
    r"\b(?:no|not\s+enough|insufficient)\s+information\b",
    r"\bthere\s+is\s+no\s+(?:mention|indication|information)\b",
    r"\b(?:it\s+is|it's)\s+(?:unclear|unknown)\b",
    r"^\W*(?:unknown|unclear|n/?a|not\s+applicable)\b",
)
_LACKS_INFO = re.compile("|".join(f"(?:{p})" for p in LACKS_INFO_PATTERNS), re.I)
_NONE_WORDS = {"none", "null", "n/a", "na", "nil", "", "no question", "not applicable"}

REJECT_REASONS = ("unparseable", "malformed", "none", "unknown_type", "extra_for_type", "duplicate", "lacks_info",
                  "empty_caption")
EVENT_KINDS = ("plan", "step", "chunk", "description", "qa", "stopped", "done")
STAGES = ("level1", "level2", "level3", "qa")
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".flv", ".ts",
                              ".wmv", ".3gp", ".ogv"})
QA_MODES = ("per_type", "joint")


# --- options, plan, results -----------------------------------------------------------------------

def _settings(max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0):
    from .config import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)


@dataclass
class SynthOptions:
    sample_fps: float = 1.0
    max_frames: int = 180
    window_seconds: float = 10.0
    level2_group: int = 3  # level-1 windows per level-2 window (3 x 10 s = 30 s)
    keep_partial_level2: bool = True
    min_tail_seconds: float = 2.0
    types: tuple[str, ...] = tuple(t.name for t in QUESTION_TYPES)
    qa_mode: str = "per_type"
    multiple_choice: bool = True
    description_settings: Any = None  # GenerationSettings; None = 512 new tokens, greedy
    qa_settings: Any = None  # GenerationSettings; None = 256 new tokens per type (per_type) or 2048 (joint)
    data_source: str = "local"

    def __post_init__(self) -> None:
        self.types = tuple(question_type(t).name for t in self.types)  # validates, canonical names
        if not self.types:
            raise ValueError("choose at least one question type")
        if self.qa_mode not in QA_MODES:
            raise ValueError(f"qa_mode must be one of {', '.join(QA_MODES)}, not {self.qa_mode!r}")
        if self.sample_fps <= 0 or self.window_seconds <= 0 or self.max_frames < 1 or self.level2_group < 1:
            raise ValueError("sample_fps and window_seconds must be > 0; max_frames and level2_group >= 1")
        if self.description_settings is None:
            self.description_settings = _settings(512)
        if self.qa_settings is None:
            self.qa_settings = _settings(256 if self.qa_mode == "per_type" else 2048)

    def qa_calls(self) -> int:
        return len(self.types) if self.qa_mode == "per_type" else 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["types"] = list(self.types)
        return d


@dataclass(frozen=True)
class Window:
    level: int
    index: int  # position within its level (0-based, after skipping empty windows)
    start: float
    end: float
    frames: tuple[int, ...] = ()  # level 1: positions in the sampled clip
    children: tuple[int, ...] = ()  # level 2: level-1 indices; level 3: level-2 indices
    tail: tuple[int, ...] = ()  # level 3: level-1 indices not covered by a level 2

    @property
    def span(self) -> list[float]:
        return [round(float(self.start), 3), round(float(self.end), 3)]


@dataclass
class SynthPlan:
    duration: float
    frame_count: int
    sample_fps: float
    max_frames: int
    effective_fps: float
    capped: bool
    timestamps: list[float]
    level1: list[Window]
    level2: list[Window]
    level3: Window
    qa_calls: int
    skipped_windows: int = 0  # level-1 windows without any frame (cap)

    @property
    def calls(self) -> dict[str, int]:
        return {"level1": len(self.level1), "level2": len(self.level2), "level3": 1, "qa": self.qa_calls}

    @property
    def total_steps(self) -> int:
        return sum(self.calls.values())

    def frames_info(self) -> dict[str, Any]:
        return {"count": self.frame_count, "sample_fps": float(self.sample_fps), "max_frames": self.max_frames,
                "effective_fps": round(float(self.effective_fps), 4), "capped": self.capped}

    def windows_info(self) -> dict[str, list[list[float]]]:
        return {"level1": [w.span for w in self.level1], "level2": [w.span for w in self.level2],
                "level3": [self.level3.span]}


def plan_windows(timestamps: Sequence[float], duration: float, options: SynthOptions | None = None) -> SynthPlan:
    """The windows of each level for sampled frames at `timestamps` (seconds) of a video of `duration`."""
    options = options or SynthOptions()
    w = options.window_seconds
    n1 = max(1, math.ceil(duration / w - 1e-9))
    if n1 > 1 and duration - (n1 - 1) * w < options.min_tail_seconds:
        n1 -= 1  # a short tail joins the previous window
    members: list[list[int]] = [[] for _ in range(n1)]
    for pos, t in enumerate(timestamps):
        members[min(max(int(t // w), 0), n1 - 1)].append(pos)
    level1: list[Window] = []
    slot_of: dict[int, int] = {}  # time slot -> level-1 index
    for slot, frames in enumerate(members):
        if frames:
            slot_of[slot] = len(level1)
            end = duration if slot == n1 - 1 else (slot + 1) * w
            level1.append(Window(1, len(level1), slot * w, end, tuple(frames)))
    g = options.level2_group
    level2: list[Window] = []
    tail: list[int] = []
    groups = math.ceil(n1 / g)
    for j in range(groups):
        kids = [slot_of[s] for s in range(j * g, min((j + 1) * g, n1)) if s in slot_of]
        if not kids:
            continue
        partial = (j + 1) * g > n1
        if partial and not options.keep_partial_level2:
            tail += kids
            continue
        level2.append(Window(2, len(level2), level1[kids[0]].start, level1[kids[-1]].end, children=tuple(kids)))
    level3 = Window(3, 0, 0.0, duration, children=tuple(range(len(level2))), tail=tuple(tail))
    n = len(timestamps)
    return SynthPlan(duration=duration, frame_count=n, sample_fps=options.sample_fps, max_frames=options.max_frames,
                     effective_fps=n / duration if duration > 0 else 0.0,
                     capped=n >= options.max_frames and duration * options.sample_fps > options.max_frames + 1,
                     timestamps=[float(t) for t in timestamps], level1=level1, level2=level2, level3=level3,
                     qa_calls=options.qa_calls(), skipped_windows=n1 - len(level1))


@dataclass
class Description:
    level: int
    index: int
    start: float
    end: float
    text: str
    timestamps: list[float] = field(default_factory=list)  # frames shown (level 1 only)
    seconds: float = 0.0


@dataclass
class QAPair:
    question_type: str
    question: str
    answer: str
    correct_option: str | None = None
    wrong_options: list[str] = field(default_factory=list)
    keep: bool = True  # the UI's tick box: False = do not save

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QAPair":
        return cls(question_type=question_type(d["question_type"]).name, question=str(d["question"]),
                   answer=str(d["answer"]), correct_option=d.get("correct_option"),
                   wrong_options=[str(o) for o in d.get("wrong_options") or []], keep=bool(d.get("keep", True)))


@dataclass
class MultipleChoice:
    options: list[str]  # shuffled
    answer_index: int
    seed: int

    @property
    def letter(self) -> str:
        return ds.MC_LETTERS[self.answer_index]


@dataclass
class SynthResult:
    video_path: str  # as given (absolute if resolvable)
    video: str  # relative to the video root, posix: the records' "video"
    video_id: str
    data_source: str
    duration: float
    plan: SynthPlan
    options: SynthOptions
    model: str
    quant: str
    descriptions: list[Description] = field(default_factory=list)
    caption: str = ""
    pairs: list[QAPair] = field(default_factory=list)
    rejects: Counter = field(default_factory=Counter)
    mc_skipped: int = 0
    calls: Counter = field(default_factory=Counter)  # model calls made, per stage
    seconds: Counter = field(default_factory=Counter)  # wall time per stage
    qa_outputs: list[str] = field(default_factory=list)  # raw model outputs of the QA calls
    created: str = ""

    def level(self, n: int) -> list[Description]:
        return [d for d in self.descriptions if d.level == n]

    def provenance(self) -> dict[str, Any]:
        """The fields every record of this video carries besides the LLaVA-Video-178K ones."""
        o = self.options
        return {
            "video_id": self.video_id, "video_duration": round(float(self.duration), 3),
            "length_bucket": ds.length_bucket(self.duration), "model": self.model, "quant": self.quant,
            "frames": self.plan.frames_info(), "windows": self.plan.windows_info(),
            "prompt_version": PROMPT_VERSION, "qa_mode": o.qa_mode,
            "generation": {"description": _settings_dict(o.description_settings), "qa": _settings_dict(o.qa_settings)},
            "created": self.created,
        }

    def records(self, pairs: Sequence[QAPair] | None = None, *,
                multiple_choice: bool | None = None) -> dict[str, list[dict[str, Any]]]:
        """Records per task ("cap", "oe", "mc") from this result; `pairs` (default: self.pairs) may be
        an edited list, and pairs with keep=False are left out."""
        pairs = self.pairs if pairs is None else pairs
        mc = self.options.multiple_choice if multiple_choice is None else multiple_choice
        prov = self.provenance()
        out: dict[str, list[dict[str, Any]]] = {"cap": [], "oe": [], "mc": []}
        if self.caption.strip():
            out["cap"].append(ds.make_record(
                record_id(self.video_id, "cap"), self.video, self.data_source, PROMPTS["caption_record"],
                self.caption, task="cap", question_type="Caption", **prov))
        for pair in pairs:
            if not pair.keep or not pair.question.strip() or not pair.answer.strip():
                continue
            oe_id = record_id(self.video_id, "oe", pair.question_type)
            out["oe"].append(ds.make_record(oe_id, self.video, self.data_source, clean_text(pair.question),
                                            clean_text(pair.answer), task="oe", question_type=pair.question_type,
                                            **prov))
            if not mc:
                continue
            mc_id = record_id(self.video_id, "mc", pair.question_type)
            item = make_multiple_choice(pair, mc_id)
            if item is None:
                continue
            out["mc"].append(ds.make_record(
                mc_id, self.video, self.data_source, ds.mc_human_turn(clean_text(pair.question), item.options),
                f"{item.letter}.", task="mc", question_type=pair.question_type, **prov,
                options=item.options, answer_letter=item.letter, mc_seed=item.seed))
        return out

    def summary(self) -> dict[str, Any]:
        return {"video": self.video, "video_id": self.video_id, "duration": self.duration,
                "calls": dict(self.calls), "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "pairs": len(self.pairs), "rejects": dict(self.rejects), "mc_skipped": self.mc_skipped}

    def to_manifest(self) -> dict[str, Any]:
        """Everything about this video's run (JSON): the descriptions of every level, the QA pairs,
        counts and settings. `from_manifest` reads it back (e.g. to edit pairs later)."""
        return {
            "prompt_version": PROMPT_VERSION, "video_path": self.video_path, "video": self.video,
            "video_id": self.video_id, "data_source": self.data_source, "duration": self.duration,
            "model": self.model, "quant": self.quant, "created": self.created,
            "options": self.options.to_dict(), "frames": self.plan.frames_info(), "windows": self.plan.windows_info(),
            "timestamps": self.plan.timestamps,
            "descriptions": [dataclasses.asdict(d) for d in self.descriptions], "caption": self.caption,
            "pairs": [p.to_dict() for p in self.pairs], "rejects": dict(self.rejects), "mc_skipped": self.mc_skipped,
            "calls": dict(self.calls), "seconds": dict(self.seconds), "qa_outputs": self.qa_outputs,
        }

    @classmethod
    def from_manifest(cls, m: Mapping[str, Any]) -> "SynthResult":
        opts = dict(m["options"])
        opts["description_settings"] = _settings(**_gen_args(opts["description_settings"]))
        opts["qa_settings"] = _settings(**_gen_args(opts["qa_settings"]))
        opts["types"] = tuple(opts["types"])
        options = SynthOptions(**opts)
        plan = plan_windows(m["timestamps"], m["duration"], options)
        return cls(video_path=m["video_path"], video=m["video"], video_id=m["video_id"],
                   data_source=m["data_source"], duration=m["duration"], plan=plan, options=options, model=m["model"],
                   quant=m["quant"], descriptions=[Description(**d) for d in m["descriptions"]],
                   caption=m["caption"], pairs=[QAPair.from_dict(p) for p in m["pairs"]],
                   rejects=Counter(m.get("rejects", {})), mc_skipped=m.get("mc_skipped", 0),
                   calls=Counter(m.get("calls", {})), seconds=Counter(m.get("seconds", {})),
                   qa_outputs=list(m.get("qa_outputs", [])), created=m.get("created", ""))


def _settings_dict(s: Any) -> dict[str, Any]:
    return {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p}


def _gen_args(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("max_new_tokens", "temperature", "top_p") if k in d}


@dataclass
class SynthEvent:
    """Progress of `synthesize`, for a UI or a progress bar.

    kind:
      "plan"        first; `plan` (windows per level, plan.total_steps model calls)
      "step"        a model call starts: `stage`, `index`, `window`, `step` of `total_steps`
      "chunk"       `text` = newly decoded text of the current call
      "description" a level-1/2/3 description is finished: `description` (level 3 = the caption)
      "qa"          a QA call is finished: `question_type` (None in joint mode), `pairs` kept from it,
                    `rejects` counted on it, `text` = the raw output
      "stopped"     the stop event was set; nothing more follows
      "done"        last; `result` (a SynthResult)
    """

    kind: str
    stage: str | None = None
    index: int = 0
    step: int = 0
    total_steps: int = 0
    window: tuple[float, float] | None = None
    text: str = ""
    plan: SynthPlan | None = None
    description: Description | None = None
    question_type: str | None = None
    pairs: list[QAPair] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)
    result: SynthResult | None = None


class SynthStopped(Exception):
    """`run_synthesis` was stopped through its stop event."""


class EngineLike(Protocol):  # what the recipe needs of engine.Engine (tests may pass a scripted one)
    model_id: str
    quant: str

    def load_clip(self, path, *, frames=None, start=None, end=None, sample_fps=None, max_frames=None) -> VideoClip: ...

    def stream(self, video, question, history=(), *, settings=None, stop=None) -> Iterator[str]: ...

    def stream_text(self, question, history=(), *, settings=None, stop=None) -> Iterator[str]: ...


# --- ids ------------------------------------------------------------------------------------------

def video_id_for(relative_video: str) -> str:
    """Stable id of a video from its path relative to the video root: `<stem>-<10 hex of sha1>`."""
    rel = Path(relative_video).as_posix()
    stem = ds.safe_name(Path(rel).stem)[:40]
    return f"{stem}-{hashlib.sha1(rel.encode('utf-8')).hexdigest()[:10]}"


def record_id(video_id: str, task: str, qtype: str | None = None) -> str:
    """`<video id>_cap`, `<video id>_oe_<type>`, `<video id>_mc_<type>`: one record per video, task and type."""
    if task == "cap":
        return f"{video_id}_cap"
    if qtype is None:
        raise ValueError("QA records need a question type")
    return f"{video_id}_{task}_{ds.safe_name(question_type(qtype).name)}"


def relative_video(path: str | os.PathLike, video_root: str | os.PathLike | None) -> str:
    path = Path(path)
    if video_root is None:
        return path.name
    try:
        return path.resolve().relative_to(Path(video_root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the video root {video_root}") from None


# --- parsing and filters ----------------------------------------------------------------------------

def clean_text(text: str) -> str:
    """Model output made safe for a record: no `<image>` placeholder, no stray special tokens, trimmed."""
    text = text.replace(IMAGE_PLACEHOLDER, "").replace("<|im_end|>", "").replace("<|endoftext|>", "")
    text = text.replace("<|im_start|>", "")
    return text.strip()


def normalise_question(text: str) -> str:
    """For duplicate detection: lowercase, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().strip(".!\"'`").strip().lower() in _NONE_WORDS
    return False


def lacks_info(answer: str) -> bool:
    """True when the answer admits the description does not give the information."""
    return bool(_LACKS_INFO.search(answer))


@dataclass
class ParsedOutput:
    entries: list[Any]  # JSON values found (objects, or anything else: counted as malformed later)
    status: str  # "ok" | "none" (the whole output is a "None") | "unparseable"


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)


def parse_json_output(text: str) -> ParsedOutput:
    """Find the JSON in a model's QA output, repairing what can be repaired; never raises.

    Handles ```json fences (closed or not), prose before/after, trailing commas, single quotes,
    truncated output (json_repair closes what is open; the cut-off item usually lacks its answer
    and is then dropped as malformed), a bare "None", {"questions": [...]} wrappers.
    """
    if not isinstance(text, str):
        return ParsedOutput([], "unparseable")
    body = text.strip()
    if not body:
        return ParsedOutput([], "unparseable")
    if is_none(body):
        return ParsedOutput([], "none")
    fence = _FENCE.search(body)
    if fence and fence.group(1).strip():
        body = fence.group(1).strip()
        if is_none(body):
            return ParsedOutput([], "none")
    starts = sorted(i for i in (body.find("["), body.find("{")) if i >= 0)
    if not starts:
        if re.match(r"^\W*none\b", body, re.I):
            return ParsedOutput([], "none")
        return ParsedOutput([], "unparseable")
    best: tuple[tuple[int, int], list[Any]] | None = None
    for start in starts:  # from the first "[" and from the first "{": keep the one with more objects
        value, repaired = _decode(body[start:])
        if value == [] and not repaired:  # "nothing fits" in joint mode
            return ParsedOutput([], "none")
        entries = _entries_of(value)
        if repaired and entries and isinstance(entries[-1], dict) and _cut_mid_value(body):
            # Truncated output: json_repair closed the last item; the field being written when the
            # output stopped (its last key) is cut short, so drop that field.
            last = dict(entries[-1])
            last.pop(next(reversed(last)), None)
            entries[-1] = last
        objects = sum(isinstance(e, dict) for e in entries)
        score = (objects, -(len(entries) - objects))
        if entries and (best is None or score > best[0]):
            best = (score, entries)
    if best is not None:
        return ParsedOutput(best[1], "ok")
    return ParsedOutput([], "unparseable")


def _cut_mid_value(body: str) -> bool:
    """Does the text stop inside a value (not right after a closed string, object or list)?"""
    return not body.rstrip().rstrip(",").rstrip().endswith(("}", "]", '"'))


def _decode(text: str) -> tuple[Any, bool]:
    """(value, repaired): strict JSON first (ignoring what follows it), then json_repair."""
    import json_repair

    try:
        return json.JSONDecoder().raw_decode(text)[0], False
    except (ValueError, RecursionError):
        pass
    try:
        return json_repair.loads(text), True
    except Exception:  # json_repair is robust, but a parser must never take the batch down
        return None, True


def _entries_of(value: Any) -> list[Any]:
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], list):
            value = value[0]
        return list(value)
    if isinstance(value, dict):
        if not value:
            return []
        if _get(value, "question") is not None or _get(value, "answer") is not None:
            return [value]
        for v in value.values():  # {"questions": [...]} / {"qa_pairs": [...]}
            if isinstance(v, list) and any(isinstance(x, dict) for x in v):
                return list(v)
        return [value]
    return []


_KEY_ALIASES = {
    "question": ("question", "q"),
    "answer": ("answer", "a", "response"),
    "dimension": ("dimension", "type", "questiontype", "category"),
    "correct": ("correctoption", "correctanswer", "shortanswer", "correct", "rightoption"),
    "wrong": ("wrongoptions", "distractors", "incorrectoptions", "wronganswers", "incorrectanswers", "options",
              "choices"),
}


_MISSING = object()


def _get(entry: Mapping[str, Any], name: str, default: Any = None) -> Any:
    keys = {re.sub(r"[\s_\-]", "", str(k)).lower(): v for k, v in entry.items()}
    for alias in _KEY_ALIASES[name]:
        if alias in keys:
            return keys[alias]
    return default


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def _option_list(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, str):
        value = [v for v in re.split(r"\n|;|\|", value) if v.strip()]
    if not isinstance(value, list):
        return []
    out = []
    for v in value:
        text = _as_text(v)
        if text is None:
            continue
        text = re.sub(r"^\s*(?:\(?[A-Ea-e]\)|[A-E][.:])\s+", "", clean_text(text))  # "B. foo" -> "foo"
        if text and not is_none(text):
            out.append(text)
    return out


def entries_to_pairs(entries: Iterable[Any], *, expected_type: str | None, allowed_types: Sequence[str],
                     rejects: Counter) -> list[QAPair]:
    """QA pairs from parsed entries, counting rejects (none, malformed, unknown_type, lacks_info).
    `expected_type` (per-type mode) overrides the entry's own Dimension."""
    pairs = []
    allowed = {question_type(t).name for t in allowed_types}
    for entry in entries:
        if is_none(entry):
            rejects["none"] += 1
            continue
        if not isinstance(entry, dict):
            rejects["malformed"] += 1
            continue
        q_raw, a_raw = _get(entry, "question", _MISSING), _get(entry, "answer", _MISSING)
        if (q_raw is not _MISSING and is_none(q_raw)) or (a_raw is not _MISSING and is_none(a_raw)):
            rejects["none"] += 1  # {"Question": "None", ...}: the type does not fit the video
            continue
        q, a = _as_text(q_raw), _as_text(a_raw)  # None for missing keys and non-text values
        q, a = clean_text(q) if q else "", clean_text(a) if a else ""
        if not q or not a:  # e.g. the last item of a truncated output, cut before its answer
            rejects["malformed"] += 1
            continue
        if expected_type is not None:
            qtype = question_type(expected_type).name
        else:
            try:
                qtype = question_type(str(_get(entry, "dimension") or ""))
                qtype = qtype.name
            except ValueError:
                rejects["unknown_type"] += 1
                continue
            if qtype not in allowed:
                rejects["unknown_type"] += 1
                continue
        if lacks_info(a):
            rejects["lacks_info"] += 1
            continue
        correct = _as_text(_get(entry, "correct"))
        correct = clean_text(correct) if correct and not is_none(correct) else None
        pairs.append(QAPair(qtype, q, a, correct, _option_list(_get(entry, "wrong"))))
    return pairs


def pairs_from_output(text: str, *, expected_type: str | None, allowed_types: Sequence[str],
                      rejects: Counter) -> list[QAPair]:
    """Parse one QA call's output into pairs (per-call rules: a per-type call keeps at most one)."""
    parsed = parse_json_output(text)
    if parsed.status == "none":
        rejects["none"] += 1
        return []
    if parsed.status == "unparseable":
        rejects["unparseable"] += 1
        return []
    pairs = entries_to_pairs(parsed.entries, expected_type=expected_type, allowed_types=allowed_types, rejects=rejects)
    if expected_type is not None and len(pairs) > 1:
        rejects["extra_for_type"] += len(pairs) - 1
        pairs = pairs[:1]
    return pairs


def filter_pairs(pairs: Iterable[QAPair], rejects: Counter) -> list[QAPair]:
    """Across a video: at most one pair per type (first wins), no duplicate questions."""
    kept, types, questions = [], set(), set()
    for pair in pairs:
        key = normalise_question(pair.question)
        if key in questions:
            rejects["duplicate"] += 1
            continue
        if pair.question_type in types:
            rejects["extra_for_type"] += 1
            continue
        questions.add(key)
        types.add(pair.question_type)
        kept.append(pair)
    return kept


def make_multiple_choice(pair: QAPair, rid: str, *, max_options: int = 5) -> MultipleChoice | None:
    """The correct option + 2 to 4 distinct distractors, shuffled with a seed from the record id.
    None when fewer than 2 usable distractors."""
    correct = clean_text(pair.correct_option or pair.answer)
    if not correct:
        return None
    seen = {normalise_question(correct)}
    wrong = []
    for option in pair.wrong_options:
        key = normalise_question(option)
        if key and key not in seen:
            seen.add(key)
            wrong.append(clean_text(option))
    wrong = wrong[:max_options - 1]
    if len(wrong) < 2:
        return None
    seed = int(hashlib.sha256(rid.encode("utf-8")).hexdigest()[:8], 16)
    options = [correct, *wrong]
    order = list(range(len(options)))
    random.Random(seed).shuffle(order)
    return MultipleChoice([options[i] for i in order], order.index(0), seed)


# --- prompts ------------------------------------------------------------------------------------------

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


# --- the recipe -------------------------------------------------------------------------------------

def window_clip(clip: VideoClip, window: Window) -> VideoClip:
    """The frames of one level-1 window as a clip of their own (original indices and timestamps, the
    whole video's duration, so the time instruction places them in the video)."""
    pos = list(window.frames)
    return dataclasses.replace(clip, frames=clip.frames[pos], frame_indices=[clip.frame_indices[i] for i in pos],
                               timestamps=[clip.timestamps[i] for i in pos], start=window.start, end=window.end)


def synthesize(engine: EngineLike, video: str | os.PathLike, options: SynthOptions | None = None, *,
               video_root: str | os.PathLike | None = None, clip: VideoClip | None = None,
               stop: threading.Event | None = None) -> Iterator[SynthEvent]:
    """Run the recipe on one video, yielding SynthEvents (see its docstring); the last is "done" with
    the SynthResult, or "stopped". Model errors and bad videos raise (VideoError, ValueError, ...)."""
    options = options or SynthOptions()
    path = Path(video)
    rel = relative_video(path, video_root)
    if clip is None:
        clip = engine.load_clip(path, sample_fps=options.sample_fps, max_frames=options.max_frames)
    plan = plan_windows(clip.timestamps, clip.duration, options)
    result = SynthResult(
        video_path=str(path.resolve()) if path.exists() else str(path), video=rel, video_id=video_id_for(rel),
        data_source=options.data_source, duration=float(clip.duration), plan=plan, options=options,
        model=str(engine.model_id), quant=str(engine.quant),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    total = plan.total_steps
    yield SynthEvent("plan", plan=plan, total_steps=total)
    step = 0

    def call(stage: str, index: int, window: tuple[float, float] | None, chunks: Iterator[str]):
        nonlocal step
        step += 1
        yield SynthEvent("step", stage=stage, index=index, step=step, total_steps=total, window=window)
        started = time.perf_counter()
        parts = []
        for chunk in chunks:
            parts.append(chunk)
            yield SynthEvent("chunk", stage=stage, index=index, step=step, total_steps=total, window=window,
                             text=chunk)
        result.calls[stage] += 1
        result.seconds[stage] += time.perf_counter() - started
        return "".join(parts), time.perf_counter() - started

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    level1: list[Description] = []
    level2: list[Description] = []
    next_group = 0
    for w1 in plan.level1:
        prompt = level1_prompt(w1, clip.duration, level1[-1] if level1 else None)
        sub = window_clip(clip, w1)
        text, secs = yield from call("level1", w1.index, (w1.start, w1.end),
                                     engine.stream(sub, prompt, settings=options.description_settings, stop=stop))
        if stopped():
            yield SynthEvent("stopped", stage="level1", index=w1.index, step=step, total_steps=total)
            return
        d = Description(1, w1.index, w1.start, w1.end, clean_text(text), list(sub.timestamps), round(secs, 3))
        level1.append(d)
        result.descriptions.append(d)
        yield SynthEvent("description", stage="level1", index=w1.index, step=step, total_steps=total,
                         window=(w1.start, w1.end), description=d, text=d.text)
        # A level-2 window is written as soon as its last level-1 window is.
        while next_group < len(plan.level2) and plan.level2[next_group].children[-1] <= w1.index:
            w2 = plan.level2[next_group]
            next_group += 1
            prompt = level2_prompt(w2, [level1[i] for i in w2.children], level2[-1] if level2 else None)
            text, secs = yield from call("level2", w2.index, (w2.start, w2.end),
                                         engine.stream_text(prompt, settings=options.description_settings, stop=stop))
            if stopped():
                yield SynthEvent("stopped", stage="level2", index=w2.index, step=step, total_steps=total)
                return
            d = Description(2, w2.index, w2.start, w2.end, clean_text(text), seconds=round(secs, 3))
            level2.append(d)
            result.descriptions.append(d)
            yield SynthEvent("description", stage="level2", index=w2.index, step=step, total_steps=total,
                             window=(w2.start, w2.end), description=d, text=d.text)

    w3 = plan.level3
    sources = [level2[i] for i in w3.children] + [level1[i] for i in w3.tail]
    text, secs = yield from call("level3", 0, (w3.start, w3.end),
                                 engine.stream_text(level3_prompt(clip.duration, sources),
                                                    settings=options.description_settings, stop=stop))
    if stopped():
        yield SynthEvent("stopped", stage="level3", step=step, total_steps=total)
        return
    d = Description(3, 0, w3.start, w3.end, clean_text(text), seconds=round(secs, 3))
    result.descriptions.append(d)
    result.caption = d.text
    yield SynthEvent("description", stage="level3", step=step, total_steps=total, window=(w3.start, w3.end),
                     description=d, text=d.text)

    # QA from the caption, text only.
    found: list[QAPair] = []
    if not result.caption:
        result.rejects["empty_caption"] += 1
    else:
        batches = [[t] for t in options.types] if options.qa_mode == "per_type" else [list(options.types)]
        for k, types in enumerate(batches):
            expected = types[0] if options.qa_mode == "per_type" else None
            text, _ = yield from call("qa", k, None, engine.stream_text(qa_prompt(result.caption, types),
                                                                        settings=options.qa_settings, stop=stop))
            if stopped():
                yield SynthEvent("stopped", stage="qa", index=k, step=step, total_steps=total)
                return
            result.qa_outputs.append(text)
            call_rejects: Counter = Counter()
            pairs = pairs_from_output(text, expected_type=expected, allowed_types=options.types, rejects=call_rejects)
            result.rejects.update(call_rejects)
            found += pairs
            yield SynthEvent("qa", stage="qa", index=k, step=step, total_steps=total, question_type=expected,
                             pairs=pairs, rejects=dict(call_rejects), text=text)
    result.pairs = filter_pairs(found, result.rejects)
    if options.multiple_choice:
        result.mc_skipped = sum(
            1 for p in result.pairs
            if make_multiple_choice(p, record_id(result.video_id, "mc", p.question_type)) is None)
    yield SynthEvent("done", step=step, total_steps=total, result=result)


def run_synthesis(engine: EngineLike, video: str | os.PathLike, options: SynthOptions | None = None, *,
                  video_root: str | os.PathLike | None = None, on_event: Callable[[SynthEvent], None] | None = None,
                  stop: threading.Event | None = None) -> SynthResult:
    """`synthesize` to the end: returns the result (raises SynthStopped if stopped)."""
    for event in synthesize(engine, video, options, video_root=video_root, stop=stop):
        if on_event is not None:
            on_event(event)
        if event.kind == "done":
            return event.result
        if event.kind == "stopped":
            raise SynthStopped(f"stopped during {event.stage}")
    raise RuntimeError("synthesize ended without a result")  # unreachable


# --- saving -------------------------------------------------------------------------------------------

def save_result(out_dir: str | os.PathLike, result: SynthResult, pairs: Sequence[QAPair] | None = None, *,
                replace: bool = False, fsync: bool = True) -> dict[str, list[str]]:
    """Write a video's records to the split files of `out_dir` and its manifest (the done marker).

    replace=False (batch runs): append, skipping ids already present (re-running never duplicates).
    replace=True (the UI saving an edited list): this video's records are upserted with the given
    `pairs` (edited text wins over what is in the files), and its QA records for pairs that were
    unticked (keep=False) or dropped from the list are removed. Returns the ids written per file.
    """
    out_dir = Path(out_dir)
    if pairs is not None:
        result = dataclasses.replace(result, pairs=list(pairs))
    by_task = result.records()
    written: dict[str, list[str]] = {}
    if not replace:
        written = folder.append_records(out_dir, [r for task in ds.TASKS for r in by_task[task]], fsync=fsync)
    else:
        prov = result.provenance()
        for task in ds.TASKS:
            name = folder.split_filename(task, prov["length_bucket"], result.data_source)
            keep_ids = {r["id"] for r in by_task[task]}
            all_ids = ({record_id(result.video_id, "cap")} if task == "cap" else
                       {record_id(result.video_id, task, t.name) for t in QUESTION_TYPES})
            store = JsonlStore(out_dir / name, fsync=fsync)
            if not by_task[task] and not (store.path.exists() and all_ids & store.ids()):
                continue
            store.replace(by_task[task], remove_ids=all_ids - keep_ids)
            written[name] = sorted(keep_ids)
    manifest = result.to_manifest()
    manifest.update(status="done", records={k: v for k, v in written.items()},
                    record_ids={task: [r["id"] for r in by_task[task]] for task in ds.TASKS})
    folder.write_manifest(out_dir, result.video_id, manifest)
    return written


def save_edited_pairs(out_dir: str | os.PathLike, result: SynthResult, pairs: Sequence[QAPair | Mapping[str, Any]],
                      *, fsync: bool = True) -> dict[str, list[str]]:
    """The UI's "save": `pairs` (QAPair or dicts with question_type/question/answer/correct_option/
    wrong_options/keep) replace this video's QA records; unticked ones are removed."""
    edited = [p if isinstance(p, QAPair) else QAPair.from_dict(p) for p in pairs]
    return save_result(out_dir, result, edited, replace=True, fsync=fsync)


def load_result(out_dir: str | os.PathLike, video_id: str) -> SynthResult:
    """A saved video's result, from its manifest (to show or edit it again)."""
    return SynthResult.from_manifest(folder.read_manifest(out_dir, video_id))


def export_run(out_dir: str | os.PathLike, zip_path: str | os.PathLike | None = None) -> Path:
    """The UI's download: a zip with every split as a JSON array and the per-video manifests."""
    return folder.export_zip(out_dir, zip_path)


# --- batch ----------------------------------------------------------------------------------------------

def find_videos(path: str | os.PathLike) -> list[Path]:
    """A video file itself, or every video file under a folder (recursive, by extension, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


@dataclass
class BatchSummary:
    videos: int = 0
    done: int = 0
    skipped: int = 0  # already done (resumed run) or being processed by another process
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # video -> error
    records: Counter = field(default_factory=Counter)  # new records per task
    files: Counter = field(default_factory=Counter)  # new records per split file
    rejects: Counter = field(default_factory=Counter)
    mc_skipped: int = 0
    calls: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    video_seconds: float = 0.0  # total duration of the videos processed in this run
    stopped: bool = False  # the stop event ended the run early

    def format(self) -> str:
        lines = [f"videos: {self.done} done, {self.skipped} skipped (already done), {self.failed} failed, "
                 f"of {self.videos}",
                 "new records: " + ", ".join(f"{t} {self.records.get(t, 0)}" for t in ds.TASKS)]
        for name, count in sorted(self.files.items()):
            lines.append(f"  {count:6d}  {name}")
        lines.append("rejected QA: " + (", ".join(f"{k} {v}" for k, v in sorted(self.rejects.items())) or "none")
                     + f"; open-ended only (no usable options): {self.mc_skipped}")
        if self.calls:
            per_min = (f", {sum(self.calls.values()) / (self.video_seconds / 60):.1f} calls and "
                       f"{self.seconds / (self.video_seconds / 60):.1f} s per minute of video"
                       if self.video_seconds else "")
            lines.append("model calls: " + ", ".join(f"{k} {v}" for k, v in self.calls.items())
                         + f" in {self.seconds:.1f} s{per_min}")
        for video, error in self.failures.items():
            lines.append(f"failed: {video}: {error}")
        return "\n".join(lines)


class _BatchStopped(Exception):
    pass


class _EngineFailed(Exception):
    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def run_batch(path: str | os.PathLike, out_dir: str | os.PathLike, options: SynthOptions | None = None, *,
              engine: EngineLike | None = None, make_engine: Callable[[], EngineLike] | None = None,
              video_root: str | os.PathLike | None = None, progress: bool = True, fsync: bool = True,
              stop: threading.Event | None = None, export: bool = True,
              on_video: Callable[[Path, str, str | None], None] | None = None) -> BatchSummary:
    """Synthesize data for a video or a folder of videos into `out_dir`, resumably.

    Videos with a "done" manifest in `out_dir/videos/` are skipped; a video that fails is logged
    (`out_dir/errors.log`, a "failed" manifest) and the batch goes on; a failed or interrupted video is
    redone on the next run (its records already written are not duplicated). The engine is made only
    when there is work (`make_engine`). At the end the splits are exported as JSON arrays.
    `on_video(path, status, error)` is called per video with status "done", "skipped", "failed" or
    "stopped" (the `stop` event was set: the run ends after the current model call, that video unsaved).
    """
    from filelock import Timeout
    from tqdm import tqdm

    options = options or SynthOptions()
    out_dir = Path(out_dir)
    videos = find_videos(path)
    root = Path(video_root) if video_root is not None else (Path(path) if Path(path).is_dir() else Path(path).parent)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(videos=len(videos))
    started = time.perf_counter()
    overall = tqdm(videos, desc="videos", unit="video", disable=not progress, position=0)
    for video in overall:
        status, error, rel, vid = "failed", None, None, None
        try:
            rel = relative_video(video, root)
            vid = video_id_for(rel)
            if folder.is_done(out_dir, vid):
                summary.skipped += 1
                status = "skipped"
                continue
            lock = folder.video_lock(out_dir, vid)
            try:
                lock.acquire()
            except Timeout:
                summary.skipped += 1
                status = "skipped"
                continue
            try:
                if folder.is_done(out_dir, vid):  # finished by another process meanwhile
                    summary.skipped += 1
                    status = "skipped"
                    continue
                if engine is None:
                    if make_engine is None:
                        raise _EngineFailed(ValueError("run_batch needs an engine or make_engine"))
                    try:
                        engine = make_engine()
                    except Exception as err:  # no model, no batch: this is not the video's fault
                        raise _EngineFailed(err) from err
                bar = tqdm(total=1, desc=rel[-40:], unit="call", leave=False, disable=not progress, position=1)
                result = None
                try:
                    for event in synthesize(engine, video, options, video_root=root, stop=stop):
                        if event.kind == "plan":
                            bar.reset(total=event.total_steps)
                        elif event.kind == "step":
                            bar.set_postfix_str(event.stage, refresh=False)
                        elif event.kind in ("description", "qa"):
                            bar.update(1)
                        elif event.kind == "stopped":
                            raise _BatchStopped
                        elif event.kind == "done":
                            result = event.result
                finally:
                    bar.close()
                written = save_result(out_dir, result, fsync=fsync)
                for name, ids in written.items():
                    summary.files[name] += len(ids)
                    summary.records[folder.task_of_filename(name)] += len(ids)
                summary.rejects.update(result.rejects)
                summary.mc_skipped += result.mc_skipped
                summary.calls.update(result.calls)
                summary.video_seconds += result.duration
                summary.done += 1
                status = "done"
            finally:
                lock.release()
        except _EngineFailed as err:
            overall.close()
            raise err.error from None
        except _BatchStopped:
            summary.stopped = True
            status = "stopped"
            break
        except Exception as err:  # one bad video must not stop the batch
            error = _one_line(err)
            summary.failed += 1
            summary.failures[str(video)] = error
            folder.log_failure(out_dir, video, error, vid, rel)
            log.debug("synth failed on %s", video, exc_info=True)
        finally:
            if on_video is not None:
                on_video(video, status, error)
            overall.set_postfix(done=summary.done, skipped=summary.skipped, failed=summary.failed, refresh=False)
    overall.close()
    summary.seconds = time.perf_counter() - started
    if export:
        folder.export_json(out_dir)
    return summary


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
