"""Times that a text mentions: "at 3.2 s", "0:12", "00:01:05", "3.2-4.0 seconds", "2 minutes", found
with their place in the text, so that the page can make each one seek the video player (web/player.py).

Pure: text in, positions and seconds out. A clock needs two-digit seconds ("16:9" is no time) and a
bare number needs a unit ("3.2" alone is no time). The times are the video's own seconds, as the
model's time instruction gives the frames' times (prompts.time_instruction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"\d+(?:\.\d+)?"
_CLOCK = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:\.\d+)?"
_SECONDS = r"(?:seconds|second|secs|sec|s)\b"
_MINUTES = r"(?:minutes|minute|mins|min)\b"
_TO = r"\s*(?:-|–|—|to)\s*"
_EDGE = r"(?<![\w.:])"  # not inside a longer number, word or clock
_END = r"(?![\d:])"

# Longest forms first: at one position the first alternative that matches wins.
_PATTERN = re.compile(
    _EDGE + "(?:"
    rf"(?P<clock_from>{_CLOCK}){_TO}(?P<clock_to>{_CLOCK}){_END}"
    rf"|(?P<sec_from>{_NUM})(?:\s*{_SECONDS})?{_TO}(?P<sec_to>{_NUM})\s*{_SECONDS}"
    rf"|(?P<min>{_NUM})\s*{_MINUTES}(?:\s*(?:and\s+)?(?P<min_sec>{_NUM})\s*{_SECONDS})?"
    rf"|(?P<clock>{_CLOCK}){_END}"
    rf"|(?P<sec>{_NUM})\s*{_SECONDS}"
    ")",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TimeMention:
    """One time in a text: text[begin:end] says it; `seconds` is where it starts, `until` a range's end."""

    begin: int
    end: int
    seconds: float
    until: float | None = None


def clock_seconds(clock: str) -> float:
    """"1:05" -> 65.0, "00:01:05.5" -> 65.5."""
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def find_times(text: str, duration: float | None = None) -> list[TimeMention]:
    """The times `text` mentions, in order; with `duration`, only those inside a video that long
    (a time past its end is not about this video: "the 1990s", a clock of the day)."""
    found = []
    for match in _PATTERN.finditer(text):
        g = match.groupdict()
        if g["clock_from"]:
            seconds, until = clock_seconds(g["clock_from"]), clock_seconds(g["clock_to"])
        elif g["sec_from"]:
            seconds, until = float(g["sec_from"]), float(g["sec_to"])
        elif g["min"]:
            seconds, until = float(g["min"]) * 60 + float(g["min_sec"] or 0), None
        elif g["clock"]:
            seconds, until = clock_seconds(g["clock"]), None
        else:
            seconds, until = float(g["sec"]), None
        if until is not None and until < seconds:
            until = None  # "5-3 s" is no range; its start is still a time
        if duration is not None and seconds > duration + 0.005:  # + the rounding of "8.00 s"
            continue
        found.append(TimeMention(match.start(), match.end(), seconds, until))
    return found


def parse_time(text: str) -> float | None:
    """The seconds of a text that is one time and nothing else ("3.20 s", "0:12"), else None."""
    times = find_times(text.strip())
    if len(times) == 1 and (times[0].begin, times[0].end) == (0, len(text.strip())):
        return times[0].seconds
    return None
