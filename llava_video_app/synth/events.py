"""The progress of a synthesis run, as `synthesize` yields it: one class per kind of event, each with
what a UI, a progress bar or a test needs (which call of how many, its window or question type), so
none of them has to work it out again.

    Planned                      first: the plan (plan.total_steps model calls follow)
    CallStarted                  a model call starts
    TextChunk                    newly decoded text of the current call
    DescriptionWritten           a level-1/2/3 description is finished (level 3 = the caption)
    QAParsed                     a QA call is finished and parsed
    Stopped                      the stop event was set; nothing more follows
    Done                         last: the SynthResult
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from .plan import SynthPlan
from .qa import QAPair
from .result import Description, SynthResult

STAGES = ("level1", "level2", "level3", "qa")


@dataclass(frozen=True)
class Planned:
    plan: SynthPlan

    @property
    def total_steps(self) -> int:
        return self.plan.total_steps


@dataclass(frozen=True, kw_only=True)
class CallEvent:
    """Where in the run a model call is (the base of the events about one call)."""

    stage: str  # one of STAGES
    index: int  # the call's position in its stage (a window's index; the QA call's number)
    step: int  # 1-based number of the call in the run
    total_steps: int
    window: tuple[float, float] | None = None  # seconds of the video described; None for QA
    question_type: str | None = None  # the type a per-type QA call asks for; None otherwise


@dataclass(frozen=True, kw_only=True)
class CallStarted(CallEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class TextChunk(CallEvent):
    text: str


@dataclass(frozen=True, kw_only=True)
class DescriptionWritten(CallEvent):
    description: Description


@dataclass(frozen=True, kw_only=True)
class QAParsed(CallEvent):
    pairs: list[QAPair]  # kept from this call (before the filters across the video)
    rejects: Mapping[str, int] = field(default_factory=dict)  # counted on this call
    text: str = ""  # the raw output


@dataclass(frozen=True, kw_only=True)
class Stopped(CallEvent):
    pass


@dataclass(frozen=True)
class Done:
    result: SynthResult
    total_steps: int


SynthEvent = Union[Planned, CallStarted, TextChunk, DescriptionWritten, QAParsed, Stopped, Done]
