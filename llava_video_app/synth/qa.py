"""From a QA call's output to the pairs kept: parsing the model's JSON (repairing what can be
repaired), the filters, and the multiple-choice version of a pair.

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..dataset import MC_LETTERS
from ..prompts import IMAGE_PLACEHOLDER, question_type

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
        return MC_LETTERS[self.answer_index]


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
