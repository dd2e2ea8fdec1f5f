"""Compare: the same question asked again under 2-3 variants of its settings, the answers side by side
with what differs between them.

A `Variant` changes some of: frames, trim, pool mode, temperature, top-p, seed, the frame route
("fast": the decoder scales the frames to the vision tower's size; "exact": decoded at the video's own
size, then resized by the authors' PIL bicubic), and the quantisation (a second model, loaded on
demand: second_model.py). Everything else is the request's own (`RequestSettings`). Unless the request
or a variant names a seed, one seed is drawn for the whole comparison, so a sampled difference is the
setting's, not the dice's.

The engine's caches make a comparison cheap, and `compare` says what each variant reused: the
decoded frames (same file, frames, trim and route), the visual features (same frames and pool mode),
and the KV cache's prompt prefix (the previous variant's prompt, as far as it is the same).
The differences are computed from the answers' provenance records (provenance.py), so the CLI, the
API and the page show the same ones. Text form of a variant (CLI, API, page): "frames=16, pool=max",
"trim=2-5", "route=exact", "temperature=0.7, seed=3", "quant=bf16"; "as asked" is the request itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from .config import QUANTIZATIONS, check_quant
from .gpu_queue import GpuTurn, gpu_is_ours
from .model import POOL_MODES
from .provenance import Provenance, settings_for
from .request import RequestError, RequestSettings, check_request

ROUTES: dict[str, bool] = {"fast": True, "exact": False}  # route -> decode_at_model_size
MAX_VARIANTS = 4  # the request as asked and three others, side by side
AS_ASKED = "as asked"

# A variant's keys as people type them -> Variant fields
_KEYS = {"frames": "frames", "trim": "trim", "pool": "pool_mode", "pool_mode": "pool_mode",
         "temperature": "temperature", "temp": "temperature", "top_p": "top_p", "seed": "seed", "route": "route",
         "quant": "quant"}
VARIANT_HELP = ("frames=N, trim=START-END (seconds; trim=whole for the whole video), pool=average|max|bilinear, "
                "temperature=T, top_p=P, seed=S, route=fast|exact, quant=" + "|".join(QUANTIZATIONS))


@dataclass(frozen=True)
class Variant:
    """What one variant changes; None: as the request has it. `trim` (start, end), either None for
    that end of the video; the whole field None: the request's trim."""

    frames: int | None = None
    trim: tuple[float | None, float | None] | None = None
    pool_mode: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    route: str | None = None
    quant: str | None = None

    def label(self) -> str:
        """The variant in its text form (parse_variant(label) gives it back)."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            key = "pool" if f.name == "pool_mode" else f.name
            if f.name == "trim":
                start, end = value
                value = "whole" if start is None and end is None else f"{_num(start)}-{_num(end)}"
            parts.append(f"{key}={_num(value)}")
        return ", ".join(parts) or AS_ASKED


def _num(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_variant(text: str) -> Variant:
    """A variant from its text form, e.g. "frames=16, pool=max" (commas, semicolons or spaces between
    settings); "" or "as asked": the request itself. ValueError naming the setting otherwise."""
    text = (text or "").strip()
    if text.lower() in ("", AS_ASKED):
        return Variant()
    values: dict[str, Any] = {}
    for part in re.split(r"[,;\s]+", text):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        name = _KEYS.get(key.strip().lower())
        if not sep or name is None or not raw.strip():
            raise ValueError(f"variant {text!r}: {part!r} is not a setting; use {VARIANT_HELP}")
        if name in values:
            raise ValueError(f"variant {text!r}: {key} is given twice")
        values[name] = _parse_value(name, raw.strip(), text)
    return Variant(**values)


def _parse_value(name: str, raw: str, text: str) -> Any:
    if name == "trim":
        if raw.lower() == "whole":
            return (None, None)
        start, dash, end = raw.partition("-")
        if not dash:
            raise ValueError(f"variant {text!r}: trim must be START-END in seconds (e.g. 2-5, 2- or -5) or whole")
        return (_float("trim start", start) if start else None, _float("trim end", end) if end else None)
    if name == "pool_mode":
        if raw not in POOL_MODES:
            raise ValueError(f"variant {text!r}: pool must be one of {', '.join(POOL_MODES)}, not {raw!r}")
        return raw
    if name == "route":
        if raw not in ROUTES:
            raise ValueError(f"variant {text!r}: route must be fast or exact, not {raw!r}")
        return raw
    if name == "quant":
        return check_quant(raw)
    # frames, temperature, top_p, seed: numbers here; their ranges are check_request's to say
    number = _float(name, raw)
    return int(number) if name in ("frames", "seed") and number == int(number) else number


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


def parse_variants(texts: Sequence[str]) -> list[Variant]:
    """Variants from their text forms, at most MAX_VARIANTS of them (the request as asked included)."""
    variants = [parse_variant(t) for t in texts if (t or "").strip()]
    if not 1 <= len(variants) <= MAX_VARIANTS:
        raise ValueError(f"compare needs 1 to {MAX_VARIANTS} variants, not {len(variants)}")
    return variants


@dataclass
class VariantAnswer:
    """One column of a comparison: the variant, its answer, its provenance and what it reused."""

    variant: str  # its label
    answer: str = ""
    provenance: Mapping[str, Any] | None = None
    reused: Mapping[str, Any] = field(default_factory=dict)  # frames: bool, features: bool, prompt_tokens: int
    error: str | None = None  # refused (e.g. the second quantisation would not fit); the others still run

    def reused_text(self) -> str:
        """What this variant took from the caches, for a person ("reused frames, features, 1,200 prompt tokens")."""
        parts = [name for name in ("frames", "features") if self.reused.get(name)]
        if self.reused.get("prompt_tokens"):
            parts.append(f"{self.reused['prompt_tokens']:,} prompt tokens")
        return "reused " + ", ".join(parts) if parts else "nothing reused"


@dataclass
class Comparison:
    """The answers of one question under each variant, and the settings in which they differ."""

    question: str
    answers: list[VariantAnswer]
    differences: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "differences": self.differences,
                "answers": [dataclasses.asdict(a) for a in self.answers]}


@dataclass(frozen=True)
class Progress:
    """An answer growing: variant `index`'s text so far."""

    index: int
    text: str


# --- differences -------------------------------------------------------------------------------------

def _route(record: Mapping[str, Any]) -> str | None:
    at_model_size = (record.get("settings") or {}).get("decode_at_model_size")
    return None if at_model_size is None else ("fast" if at_model_size else "exact")


# (shown name, how to read it from a provenance record): the settings a person varies, then what followed
_COMPARED: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("frames", lambda r: (r.get("settings") or {}).get("frames")),
    ("trim", lambda r: _trim_text(r.get("trim"))),
    ("pool mode", lambda r: (r.get("settings") or {}).get("pool_mode")),
    ("route", _route),
    ("temperature", lambda r: (r.get("settings") or {}).get("temperature")),
    ("top-p", lambda r: (r.get("settings") or {}).get("top_p")),
    ("seed", lambda r: r.get("seed")),
    ("quantisation", lambda r: (r.get("settings") or {}).get("quant")),
    ("frame times (s)", lambda r: list(r.get("timestamps") or ())),
    ("visual tokens", lambda r: r.get("visual_tokens")),
    ("prompt tokens", lambda r: r.get("prompt_tokens")),
    ("prompt", lambda r: str(r.get("prompt_sha256") or "")[:12]),
)


def _trim_text(trim: Mapping[str, Any] | None) -> str:
    from .transcript import trim_text

    return trim_text(trim)


def differences(records: Sequence[Mapping[str, Any] | None]) -> dict[str, list[Any]]:
    """{setting: its value per record} for the settings in which the records differ (the seed only where
    sampling made it matter), from their provenance; a missing record (a refused variant) is left out."""
    present = [r for r in records if r]
    differ: dict[str, list[Any]] = {}
    for name, read in _COMPARED:
        values = [read(r) if r else None for r in records]
        if len({repr(read(r)) for r in present}) > 1:
            differ[name] = values
    sampled = any((r.get("settings") or {}).get("temperature") for r in present)
    if not sampled:
        differ.pop("seed", None)  # greedy answers do not depend on it
    return differ


# --- running -----------------------------------------------------------------------------------------

def compare(engine: Any, video: str | os.PathLike, question: str, variants: Sequence[Variant],
            base: RequestSettings, *, config: Any = None, models: Any = None,
            stop: threading.Event | None = None, turn: GpuTurn | None = None) -> Iterator[Progress | Comparison]:
    """Ask `question` about `video` (on its own, no history) under each variant of `base`: yields
    Progress while each answer grows, then the Comparison. A variant that is refused (bad settings,
    a second quantisation that does not fit) gets its error and the others still run; one whose
    settings fail the request checks is refused before anything runs. `models`: a
    second_model.SecondModel for variants with another quantisation (None: those are refused). `turn(stop)`:
    a turn on a shared GPU for each variant's model call (gpu_queue.GpuQueue.turn; None: the GPU is ours)."""
    config = config or engine.config
    checked = [_check(config, base, v) for v in variants]
    # One seed for the whole comparison unless the request names one: variants then differ only in what they set.
    shared_seed = base.generation.seed if base.generation.seed is not None else secrets.randbelow(2**32)
    answers = [VariantAnswer(v.label()) for v in variants]
    for index, (variant, request) in enumerate(zip(variants, checked)):
        if stop is not None and stop.is_set():
            answers[index].error = "stopped"
            continue
        generation = dataclasses.replace(request.generation, seed=request.generation.seed
                                         if variant.seed is not None or base.generation.seed is not None
                                         else shared_seed)
        try:
            yield from _run_one(engine, models, video, question, variant, request, generation, answers[index],
                                index, stop, turn or gpu_is_ours)
        except (RequestError, ValueError) as err:  # this variant's refusal; the others still run
            answers[index].error = str(err)
    yield Comparison(question, answers, differences([a.provenance for a in answers]))


def _check(config: Any, base: RequestSettings, variant: Variant) -> RequestSettings:
    start, end = variant.trim if variant.trim is not None else (base.start, base.end)
    g = base.generation
    try:
        return check_request(config, frames=variant.frames if variant.frames is not None else base.frames,
                             start=start, end=end, max_new_tokens=g.max_new_tokens,
                             temperature=variant.temperature if variant.temperature is not None else g.temperature,
                             top_p=variant.top_p if variant.top_p is not None else g.top_p,
                             seed=variant.seed if variant.seed is not None else g.seed)
    except RequestError as err:
        raise RequestError(f"variant {variant.label()!r}: {err}") from None


def _run_one(engine: Any, models: Any, video: str | os.PathLike, question: str, variant: Variant,
             request: RequestSettings, generation: Any, answer: VariantAnswer, index: int,
             stop: threading.Event | None, turn: GpuTurn) -> Iterator[Progress]:
    target = engine
    if variant.quant is not None and variant.quant != engine.quant:
        if models is None:
            raise RequestError(f"a second quantisation ({variant.quant}) cannot be loaded here")
        target = models.get(variant.quant)  # RequestError when it would not fit
    at_model_size = None if variant.route is None else ROUTES[variant.route]
    if at_model_size is None:
        at_model_size = bool(engine.config.decode_at_model_size)
    target.check_request(video, question, (), frames=request.frames, start=request.start, end=request.end,
                         max_new_tokens=generation.max_new_tokens, at_model_size=at_model_size,
                         pool_mode=variant.pool_mode)
    # The frames come from the first engine's cache whatever the quantisation: they do not depend on it.
    clip, frames_cached = engine.load_clip_cached(video, frames=request.frames, start=request.start,
                                                  end=request.end, at_model_size=at_model_size)
    text = ""
    with turn(stop) as ours:  # the video is read and decoded above, outside the GPU's line
        if not ours:
            answer.error = "stopped"
            return
        for chunk in target.stream(clip, question, (), settings=generation, stop=stop, pool_mode=variant.pool_mode):
            text += chunk
            answer.answer = text
            yield Progress(index, text)
        stats = target.last_stats  # in the turn: the next call, maybe another visitor's, replaces it
    settings = settings_for(target, generation, len(clip.frame_indices))
    settings.update(pool_mode=target.model.layout_for(variant.pool_mode).pool_mode,
                    decode_at_model_size=at_model_size)
    answer.provenance = Provenance.of_answer(settings, None, clip, stats, video=video, start=request.start,
                                             end=request.end).to_dict()
    answer.reused = {"frames": frames_cached, "features": bool(stats.video_cached),
                     "prompt_tokens": int(stats.reused_tokens)}


def run_compare(engine: Any, video: str | os.PathLike, question: str, variants: Sequence[Variant],
                base: RequestSettings, **options: Any) -> Comparison:
    """`compare` to its end: the Comparison."""
    result = None
    for item in compare(engine, video, question, variants, base, **options):
        if isinstance(item, Comparison):
            result = item
    assert result is not None  # compare always ends with one
    return result


def as_conversations(comparison: Comparison, video: str | os.PathLike) -> list[dict[str, Any]]:
    """A comparison as transcript.py exports conversations: one single-turn conversation per answered
    variant, each marked with its variant and what differed ({"compare": {"variant", "differs"}})."""
    from pathlib import Path

    conversations = []
    for n, answer in enumerate(comparison.answers):
        if answer.provenance is None:
            continue
        record = answer.provenance
        differs = {name: values[n] for name, values in comparison.differences.items()}
        conversations.append({"video": record.get("video") or {"name": Path(video).name},
                              "frames": (record.get("settings") or {}).get("frames"), "trim": record.get("trim"),
                              "turns": [{"question": comparison.question, "answer": answer.answer,
                                         "provenance": record}],
                              "compare": {"variant": answer.variant, "differs": differs,
                                          "reused": dict(answer.reused)}})
    return conversations


def differences_text(comparison: Comparison) -> list[str]:
    """The differences for a terminal: one line per differing setting, its value per variant."""
    if not comparison.differences:
        return ["no differences in settings or input" if sum(a.provenance is not None for a in comparison.answers) > 1
                else "fewer than two answers: nothing to compare"]
    return [f"{name}: " + " | ".join(shown_value(v) for v in values) for name, values in comparison.differences.items()]


def shown_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(shown_value(v) for v in value) if len(value) <= 8 else \
            f"{', '.join(shown_value(v) for v in value[:3])} ... {shown_value(value[-1])} ({len(value)})"
    return _num(value)
