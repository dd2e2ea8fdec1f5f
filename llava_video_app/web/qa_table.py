"""The synthesis tab's QA table: one row per pair (keep, type, question, answer, the multiple-choice
options as they will be saved), and back from the edited table to pairs, with a note for every row that
will not be saved as it is shown.

The options cell lists the lettered options of the pair's multiple-choice record in the saved order,
the correct one marked with ✓ ("A. To the left\\nB. To the right ✓\\nC. Up"). An edit keeps that record
when it still has exactly one correct option and at least two distinct wrong ones: an edited answer that
is one of the options makes that option the correct one; edited options are taken as written (✓, or
"(correct)", marks the right one). Anything else drops the record, and the note says which row and why,
instead of the record vanishing at Save.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..dataset import MC_LETTERS
from ..prompts import question_type
from ..synth.qa import QAPair, make_multiple_choice, normalise_question
from ..synth.result import SynthResult, record_id

COLUMNS = ["keep", "type", "question", "answer", "options"]
DATATYPES = ["bool", "str", "str", "str", "markdown"]  # markdown: one option per line
# Keep narrow and first (pinned, so a wide table scrolls past it, not away from it); the texts wrap.
COLUMN_WIDTHS = ["84px", "12%", "27%", "24%", "26%"]  # with the row numbers, within the page
CORRECT_MARK = "✓"
_MARKS = (CORRECT_MARK, "(correct)")
_LETTERED = re.compile(rf"(?:^|\s)([{MC_LETTERS}])[.)]\s+")


@dataclass(frozen=True)
class TableEdit:
    """The pairs an edited table stands for, and one line per row that is not saved as shown."""
    pairs: list[QAPair]
    notes: list[str]


def rows(result: SynthResult) -> list[list[Any]]:
    """The table's value for a finished run."""
    return [[p.keep, p.question_type, p.question, p.answer, options_text(result, p)] for p in result.pairs]


def options_text(result: SynthResult, pair: QAPair) -> str:
    """The pair's multiple-choice options as its record will have them (shuffled by the record id), the
    correct one marked; "" when it makes no multiple-choice record."""
    if not result.options.multiple_choice:
        return ""
    item = make_multiple_choice(pair, record_id(result.video_id, "mc", pair.question_type))
    if item is None:
        return ""
    return "\n".join(f"{MC_LETTERS[i]}. {option}" + (f" {CORRECT_MARK}" if i == item.answer_index else "")
                     for i, option in enumerate(item.options))


def parse_options(text: str) -> tuple[str | None, list[str]]:
    """(the option marked correct, the others) from an options cell; (None, options) when not exactly one
    is marked."""
    parts = _LETTERED.split(text.strip())
    options = [part.strip() for part in parts[2::2] if part.strip()] if len(parts) > 1 else \
        [line.strip() for line in text.splitlines() if line.strip()]
    marked = [o for o in options if o.endswith(_MARKS)]
    if len(marked) != 1:
        return None, [_unmarked(o) for o in options]
    correct = _unmarked(marked[0])
    return correct, [_unmarked(o) for o in options if o is not marked[0]]


def _unmarked(option: str) -> str:
    for mark in _MARKS:
        if option.endswith(mark):
            return option[:-len(mark)].strip()
    return option


def _same(a: Any, b: str) -> bool:
    return " ".join(str(a or "").split()) == " ".join(b.split())


def pairs_from_rows(result: SynthResult, table: list[list[Any]], keep_of: Any = bool) -> TableEdit:
    """Row i is result.pairs[i] as edited (rows added at the end are new pairs); `keep_of` reads a keep
    cell. Rows whose records would differ from what the table shows get a note ("row 2 (Count): ...")."""
    pairs: list[QAPair] = []
    notes: list[str] = []
    mc_on = result.options.multiple_choice
    for i, row in enumerate(table):
        keep, qtype, question, answer, options = (list(row) + [None] * 5)[:5]
        question = "" if question is None else str(question)
        answer = "" if answer is None else str(answer)
        options = "" if options is None or options != options else str(options)  # NaN: an empty pandas cell
        base = result.pairs[i] if i < len(result.pairs) else None
        where = f"row {i + 1}"
        try:
            qtype = question_type(str(qtype)).name
        except (KeyError, ValueError):
            if base is None:
                if question.strip() or answer.strip():
                    notes.append(f"{where}: {qtype!r} is not a question type, so the row is not saved")
                continue
            notes.append(f"{where}: {qtype!r} is not a question type; saved as {base.question_type}")
            qtype = base.question_type
        where = f"row {i + 1} ({qtype})"
        kept = keep_of(keep)
        if kept and not (question.strip() and answer.strip()):
            notes.append(f"{where}: the {'question' if not question.strip() else 'answer'} is empty, so the row "
                         "is not saved")
        correct, wrong, why = _choices(result, base, answer, options)
        if why and kept and mc_on and question.strip() and answer.strip():
            notes.append(f"{where}: no multiple-choice record: {why}")
        pair = QAPair(qtype, question, answer, correct, wrong, keep=kept)
        if (kept and mc_on and correct is not None and not why and question.strip() and answer.strip()
                and make_multiple_choice(pair, record_id(result.video_id, "mc", qtype)) is None):
            notes.append(f"{where}: no multiple-choice record: it needs at least two distinct wrong options")
        pairs.append(pair)
    return TableEdit(pairs, notes)


def _choices(result: SynthResult, base: QAPair | None, answer: str,
             options: str) -> tuple[str | None, list[str], str | None]:
    """(correct option, wrong options, why the multiple-choice record is dropped or None) for one row."""
    shown = options_text(result, base) if base is not None else ""
    if _same(options, shown):  # the options as generated
        if not shown:
            return None, [], None
        if _same(answer, base.answer):
            return base.correct_option, list(base.wrong_options), None
        correct, others = parse_options(shown)
        match = next((o for o in [correct or "", *others] if normalise_question(o) == normalise_question(answer)),
                     None)
        if match is None:
            return None, [], ("the answer was edited and is none of the options (they were made for the old "
                              f"answer); edit the options too, marking the correct one with {CORRECT_MARK}")
        return match, [o for o in [correct or "", *others] if o and o != match], None
    if not options.strip():
        return None, [], "its options were cleared"
    correct, others = parse_options(options)
    if correct is None:
        return None, [], f"mark exactly one option as correct with {CORRECT_MARK}"
    return correct, others, None
