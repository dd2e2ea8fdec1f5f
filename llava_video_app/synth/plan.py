"""The plan of a synthesis run: its options (`SynthOptions`, the token limits of its model calls
included) and the windows of each description level (`plan_windows`).

Frames: `sample_fps` (1) frames per second of video (frame `round(k * fps)` for k = 0, 1, ...),
capped at `max_frames` (180) by uniform subsampling; both, the frame count and the effective rate
go into every record.

Level-1 windows: [0, W), [W, 2W), ... with W = `window_seconds` (10); the last, partial window is
kept, except that a tail shorter than `min_tail_seconds` (2) joins the previous window; a window
that got no frame (only possible when the cap brings the rate under 1 / W) is skipped. So a 25 s
video has 3 windows, a 70 s video 7.

Level-2 windows: level-1 windows grouped by `level2_group` (3) in time order, i.e. [0, 30),
[30, 60), ...; the last, partial group is kept (`keep_partial_level2`), so 25 s -> 1, 70 s -> 3.
Without it, the level-1 windows of a partial group go straight to level 3 (`Window.tail`).

Level 3 is one window over the whole video.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..config import GenerationSettings
from ..prompts import QUESTION_TYPES, question_type

QA_MODES = ("per_type", "joint")


@dataclass
class SynthOptions:
    # New tokens per model call unless the settings say otherwise: the defaults of the CLI's flags and
    # of the synthesis tab's sliders, which read them from here.
    DESCRIPTION_TOKENS: ClassVar[int] = 512
    QA_TOKENS_PER_TYPE: ClassVar[int] = 256  # one JSON object
    QA_TOKENS_JOINT: ClassVar[int] = 2048  # a JSON list over all the types

    sample_fps: float = 1.0
    max_frames: int = 180
    window_seconds: float = 10.0
    level2_group: int = 3  # level-1 windows per level-2 window (3 x 10 s = 30 s)
    keep_partial_level2: bool = True
    min_tail_seconds: float = 2.0
    types: tuple[str, ...] = tuple(t.name for t in QUESTION_TYPES)
    qa_mode: str = "per_type"
    qa_batch: bool = True  # per-type QA calls answered as one batch (same answers, one decode for all)
    multiple_choice: bool = True
    description_settings: GenerationSettings | None = None  # None = DESCRIPTION_TOKENS, greedy
    qa_settings: GenerationSettings | None = None  # None = qa_tokens(qa_mode), greedy
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
            self.description_settings = GenerationSettings(max_new_tokens=self.DESCRIPTION_TOKENS)
        if self.qa_settings is None:
            self.qa_settings = GenerationSettings(max_new_tokens=self.qa_tokens(self.qa_mode))

    @classmethod
    def qa_tokens(cls, qa_mode: str) -> int:
        """The default token limit of one QA call in that mode."""
        return cls.QA_TOKENS_PER_TYPE if qa_mode == "per_type" else cls.QA_TOKENS_JOINT

    @classmethod
    def with_limits(cls, *, description_tokens: int | None = None, qa_tokens: int | None = None,
                    temperature: float = 0.0, top_p: float = 1.0, **options: Any) -> "SynthOptions":
        """Options whose calls sample with `temperature` / `top_p` and stop after `description_tokens`
        per description and `qa_tokens` per QA call (None: the defaults above)."""
        qa_mode = options.get("qa_mode", "per_type")
        return cls(description_settings=GenerationSettings(description_tokens or cls.DESCRIPTION_TOKENS,
                                                           temperature, top_p),
                   qa_settings=GenerationSettings(qa_tokens or cls.qa_tokens(qa_mode), temperature, top_p),
                   **options)

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
