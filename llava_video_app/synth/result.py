"""What a synthesis run made of one video, and the records it becomes: the descriptions of each level,
the caption, the QA pairs, counts and timings (`SynthResult`), its manifest (JSON, read back for
editing), and the stable ids of the video and of its records."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import dataset as ds
from ..config import GenerationSettings
from ..prompts import question_type
from .plan import SynthOptions, SynthPlan, plan_windows
from .prompts import PROMPT_VERSION, PROMPTS
from .qa import QAPair, clean_text, make_multiple_choice


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
    video_timing: str | None = None  # a raw stream's frame rate note (VideoClip.timing): its times rest on it

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
        } | ({"video_timing": self.video_timing} if self.video_timing else {})

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
            "model": self.model, "quant": self.quant, "created": self.created, "video_timing": self.video_timing,
            "options": self.options.to_dict(), "frames": self.plan.frames_info(), "windows": self.plan.windows_info(),
            "timestamps": self.plan.timestamps,
            "descriptions": [dataclasses.asdict(d) for d in self.descriptions], "caption": self.caption,
            "pairs": [p.to_dict() for p in self.pairs], "rejects": dict(self.rejects), "mc_skipped": self.mc_skipped,
            "calls": dict(self.calls), "seconds": dict(self.seconds), "qa_outputs": self.qa_outputs,
        }

    @classmethod
    def from_manifest(cls, m: Mapping[str, Any]) -> "SynthResult":
        opts = dict(m["options"])
        opts["description_settings"] = GenerationSettings(**_gen_args(opts["description_settings"]))
        opts["qa_settings"] = GenerationSettings(**_gen_args(opts["qa_settings"]))
        opts["types"] = tuple(opts["types"])
        options = SynthOptions(**opts)
        plan = plan_windows(m["timestamps"], m["duration"], options)
        return cls(video_path=m["video_path"], video=m["video"], video_id=m["video_id"],
                   data_source=m["data_source"], duration=m["duration"], plan=plan, options=options, model=m["model"],
                   quant=m["quant"], descriptions=[Description(**d) for d in m["descriptions"]],
                   caption=m["caption"], pairs=[QAPair.from_dict(p) for p in m["pairs"]],
                   rejects=Counter(m.get("rejects", {})), mc_skipped=m.get("mc_skipped", 0),
                   calls=Counter(m.get("calls", {})), seconds=Counter(m.get("seconds", {})),
                   qa_outputs=list(m.get("qa_outputs", [])), created=m.get("created", ""),
                   video_timing=m.get("video_timing"))


def _settings_dict(s: GenerationSettings) -> dict[str, Any]:
    return {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p}


def _gen_args(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("max_new_tokens", "temperature", "top_p") if k in d}


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
