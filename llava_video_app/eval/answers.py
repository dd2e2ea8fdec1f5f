"""An answer's option letter, by the rules of each benchmark's lmms-eval task (docs/eval.md lists the
rules and their source files). One difference on purpose: where lmms-eval guesses a random letter
for an answer it cannot read (NExT-QA, EgoSchema, LongVideoBench), we return None: the sample is
counted wrong and as unparseable, so runs are deterministic and the count is reported.
Torch-free.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

# mcq_extract (lmms-eval's shared multiple-choice extractor, used by Video-MME and MLVU): formats by
# priority; among candidates of one format the one furthest right wins.
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
             "space": 2, "fallback": 0}
_PHRASES = ("the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
            "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
            "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
            "i pick", "my answer is", "my choice is")


def mcq_extract(response: str, letters: Sequence[str]) -> str | None:
    text = (response or "").strip()
    if not text:
        return None
    text = text.strip(",.!?;:'\"")
    padded = f" {text} "
    found: list[tuple[int, int, str]] = []  # (priority, position, letter)
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                         ("space", "{} ")):
        for letter in letters:
            at = padded.rfind(pattern.format(letter))
            if at >= 0:
                found.append((_PRIORITY[fmt], at, letter))
    lower = padded.lower()
    for phrase in _PHRASES:
        at = lower.find(phrase)
        if at >= 0:
            for letter in letters:
                where = padded.find(letter, at + len(phrase))
                if where >= 0:
                    found.append((_PRIORITY["phrase"], where, letter))
    core = padded.strip()
    for letter in letters:
        if core.startswith(letter) and (len(core) == 1 or not core[1].isalpha()):
            found.append((_PRIORITY["start"], 0, letter))
        if core.endswith(letter) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((_PRIORITY["end"], len(padded) - 1, letter))
    if not found:
        found = [(0, padded.rfind(letter), letter) for letter in letters if letter in padded]
    return max(found)[2] if found else None


def _mmmu_candidates(response: str, letters: Sequence[str], options: Sequence[str],
                     gated: bool) -> tuple[list[tuple[str, str, bool]], str]:
    """(letter, the text that matched, whether it matched an option's text rather than a letter)
    found MMMU-style, and the padded response. `gated`: the next form is only tried when the last
    found nothing (NExT-QA); else all three are collected (EgoSchema)."""
    padded = " " + response.strip(",.!?;:'") + " "
    found: list[tuple[str, str, bool]] = []
    for pattern in ("({})", "{} ", "{}."):
        if gated and found:
            break
        found += [(letter, pattern.format(letter), False) for letter in letters if pattern.format(letter) in padded]
    if not found and len(padded.split()) > 5:  # a long answer: look for an option's text
        found = [(letter, option, True) for letter, option in zip(letters, options) if option.lower() in padded.lower()]
    return found, padded


def _position(padded: str, match: str, is_text: bool) -> int:
    return padded.lower().rfind(match.lower()) if is_text else padded.rfind(match)


def mmmu_last(response: str, letters: Sequence[str], options: Sequence[str]) -> str | None:
    """NExT-QA's parser: "(X)", else "X ", else "X."; a long answer may name an option's text; of
    several, the last in the answer (a bare letter is placed by " X ", as lmms-eval does)."""
    found, padded = _mmmu_candidates(response, letters, options, gated=True)
    if not found:
        return None

    def place(candidate: tuple[str, str, bool]) -> int:
        letter, match, is_text = candidate
        return _position(padded, match if is_text or match.startswith("(") else f" {letter} ", is_text)

    best = max(place(c) for c in found)
    return next(c[0] for c in found if place(c) == best)  # ties: the earlier letter, as numpy's argmax


def egoschema_first(response: str, letters: Sequence[str], options: Sequence[str]) -> str | None:
    """EgoSchema's parser: every "(X)", "X " and "X." (not one form after the other); a long answer
    may name an option's text; of several, the first in the answer (by each one's last position)."""
    found, padded = _mmmu_candidates(response, letters, options, gated=False)
    if not found:
        return None
    best = min(_position(padded, m, t) for _, m, t in found)
    return next(c[0] for c in found if _position(padded, c[1], c[2]) == best)


_LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                 "The correct option is", "Best answer:", "Best option:")


def longvideobench_first(response: str, letters: Sequence[str]) -> str | None:
    """LongVideoBench's parser: drop the answer phrases, then the first capital A-E anywhere."""
    text = response.strip()
    for prefix in _LVB_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search("[ABCDE]", text)
    return match[0] if match and match[0] in letters else None


_MVB_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
              "!")


def mvbench_letter(response: str, letters: Sequence[str]) -> str | None:
    """MVBench's mcq_acc: "X. text" at the start, else (punctuation removed, lower-cased) the first
    standalone a-e word, which is why "a dog" reads as A there (kept: it is how the score is made)."""
    head = re.match(r"^([A-E])\.\s*(.+)$", response.strip(), re.IGNORECASE)
    if head:
        letter = head[1].upper()
        return letter if letter in letters else None
    text = response.replace("\n", " ").replace("\t", " ").strip()
    spaced = any(p + " " in text or " " + p in text for p in _MVB_PUNCT) or re.search(r"(\d)(,)(\d)", text)
    for p in _MVB_PUNCT:
        text = text.replace(p, "" if spaced else " ")
    text = re.sub(r"(?!<=\d)(\.)(?!\d)", "", text).strip("'\"()").strip().lower()
    match = re.search(r"\b([a-e])\b", text)
    return match[1].upper() if match and match[1].upper() in letters else None


PARSERS: dict[str, Callable[[str, Sequence[str], Sequence[str]], str | None]] = {
    "mcq_extract": lambda r, letters, options: mcq_extract(r, letters),
    "mmmu": mmmu_last,
    "egoschema": egoschema_first,
    "longvideobench": lambda r, letters, options: longvideobench_first(r, letters),
    "mvbench": lambda r, letters, options: mvbench_letter(r, letters),
}


def parse_answer(parser: str, response: str, options: Sequence[str]) -> str | None:
    """The letter `response` chooses among `options` by the named parser's rules, or None."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    if parser == "mcq_extract":
        letters = letters[:4]  # Video-MME's and MLVU's tasks pass choices A-D
    return PARSERS[parser](response or "", letters, list(options))
