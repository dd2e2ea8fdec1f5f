"""A conversation about one clip, as the Ask tab keeps and shows it: the tasks to pick from and the
question each starts with, the state kept per browser tab (`ChatState`: the conversation on screen,
each answer's provenance, and the tab's earlier conversations), the chat's messages and the gallery of
the frames the model saw."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..prompts import CAPTION_QUESTION, QUESTION_TYPES, Turn, question_type
from ..video import VideoClip
from .player import with_seek_links

TASK_CAPTION = "Detailed caption"
TASK_OWN = "Your own question"
TASKS: tuple[str, ...] = (TASK_CAPTION, *(t.name for t in QUESTION_TYPES), TASK_OWN)


def question_for_task(task: str | None) -> str:
    """The question a task starts with: the caption prompt, a type's preset question (fits any video), or nothing."""
    if not task or task == TASK_OWN:
        return ""
    if task == TASK_CAPTION:
        return CAPTION_QUESTION
    return question_type(task).preset


def definition_for_task(task: str | None) -> str:
    """What a task asks about, shown under the task picker (a question type's definition)."""
    if task == TASK_CAPTION:
        return "A detailed description of the whole video (the model card's prompt)."
    if not task or task == TASK_OWN:
        return "Type any question about the video."
    qtype = question_type(task)
    return f"**{qtype.name}:** {qtype.definition}"


def floor2(seconds: float) -> float:
    """Seconds rounded down to 1/100, as the End box shows a video's length."""
    return int(seconds * 100) / 100


@dataclass
class ChatState:
    """One conversation about one clip (file, frames, trim) and sampling, kept in a gr.State per
    browser tab, with the tab's earlier conversations (`past`): a new video or new settings start a
    new conversation and never erase the old one.

    `turns` always matches the chat on screen, the answer being streamed included, so that a
    cancelled event still leaves a consistent history for the next follow-up. `records[i]` is the
    provenance of turns[i]'s answer (Provenance.to_dict), once it is known."""

    video: str | None = None
    duration: float | None = None  # of the whole video, when known
    frames: int = 0
    start: float | None = None
    end: float | None = None
    turns: list[Turn] = field(default_factory=list)
    sampling: tuple = ()  # (temperature, top_p, seed) as asked for
    records: list[Mapping[str, Any] | None] = field(default_factory=list)
    past: list["ChatState"] = field(default_factory=list)  # earlier conversations with turns, oldest first
    compare: Mapping[str, Any] | None = None  # a comparison's answer: its variant, what differed (compare.py)

    def for_clip(self, video: str, frames: int, start: float | None, end: float | None,
                 sampling: tuple = ()) -> "ChatState":
        """This conversation if it is about the same clip with the same sampling, else a new one
        about that clip (this one goes into `past`)."""
        if (self.video, self.frames, self.start, self.end, self.sampling) == (video, frames, start, end, sampling):
            return self
        return ChatState(video, self.duration if self.video == video else None, frames, start, end,
                         sampling=sampling, past=self.history())

    def fresh(self, video: str | None = None, duration: float | None = None) -> "ChatState":
        """An empty conversation (about `video`), keeping this one in the history."""
        return ChatState(video, duration, past=self.history())

    def history(self) -> list["ChatState"]:
        """The tab's conversations that have turns, oldest first, this one last."""
        return [*self.past, *([dataclasses.replace(self, past=[])] if self.turns else [])]

    def rewound(self, turn: int, *, keep_old: bool = True) -> "ChatState":
        """This conversation up to (not including) `turn`, to ask again from there (regenerate, edit);
        `keep_old`: the whole conversation as it was stays in the history (undo drops it)."""
        return dataclasses.replace(self, turns=list(self.turns[:turn]), records=list(self.records[:turn]),
                                   past=self.history() if keep_old else list(self.past))

    def turn_of_message(self, index: int | tuple | list) -> int:
        """The turn that chat message `index` (chat_messages' numbering) belongs to."""
        index = index[0] if isinstance(index, (tuple, list)) else index
        message = 0
        for n, turn in enumerate(self.turns):
            message += 1 + bool(turn.answer)
            if index < message:
                return n
        return max(0, len(self.turns) - 1)

    def record(self, index: int, provenance: Mapping[str, Any] | None) -> None:
        """Attach the provenance of turns[index]'s answer."""
        self.records.extend([None] * (index + 1 - len(self.records)))
        self.records[index] = provenance

    def to_record(self) -> dict[str, Any]:
        """This conversation as transcript.py exports it (without `past`)."""
        turns = [{"question": t.question, "answer": t.answer,
                  "provenance": self.records[i] if i < len(self.records) else None} for i, t in enumerate(self.turns)]
        video = next((r["video"] for r in self.records if r and r.get("video")), None)
        return {"video": video or ({"name": Path(self.video).name} if self.video else None), "frames": self.frames,
                "trim": {"start": self.start, "end": self.end}, "turns": turns,
                **({"compare": dict(self.compare)} if self.compare else {})}

    def messages(self) -> list[dict[str, str]]:
        """The chat's messages for these turns, the times in answers seeking the player."""
        return chat_messages(self.turns, self.duration)

    def trim(self, start: float | None, end: float | None) -> tuple[float | None, float | None]:
        """The trim range the engine gets: None for "from the beginning" (empty or 0) / "to the end"
        (empty, 0, or the video's length as the End box shows it), so an untrimmed video is sampled
        exactly as the authors do. Anything else, negative values included, goes to check_request."""
        start = None if start is None or start == 0 else start
        if end is not None and (end == 0 or (self.duration is not None and end >= floor2(self.duration))):
            end = None
        return start, end


def chat_messages(turns: Sequence[Turn], duration: float | None = None) -> list[dict[str, str]]:
    """The chat's messages; the times an answer mentions seek the player (within `duration`, when known)."""
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.question})
        if turn.answer:
            messages.append({"role": "assistant", "content": with_seek_links(turn.answer, duration)})
    return messages


def frame_gallery(clip: VideoClip) -> list[tuple[Any, str]]:
    """The frames the model sees, each captioned with its timestamp in the video."""
    return [(frame, f"{t:.2f} s") for frame, t in zip(clip.frames, clip.timestamps)]
