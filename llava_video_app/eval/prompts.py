"""The question text each benchmark sends, as lmms-eval's task writes it for llava_vid (the facts and
their source files: docs/eval.md). The engine puts it after the video (and, in our recipe, the
time instruction) in the qwen_1_5 chat template. Torch-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from .benchmarks import LETTERS, Benchmark, Sample

VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and "
                        "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
VIDEOMME_POST = "The best answer is:"  # llava_vid's post_prompt (videomme.yaml); hard-coded with subtitles
VIDEOMME_SUBTITLES = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"
VIDEOMME_SUBTITLE_POINTS = 768  # llava_vid's frame_num in videomme_w_subtitle.yaml: where subtitles are picked
MVBENCH_POST = "Only give the best option.\n"
LETTER_DIRECTLY = "Answer with the option's letter from the given choices directly."
MLVU_POST = "\nOnly give the best option.\nBest option: ("


def question_text(bench: Benchmark, sample: Sample, duration: float | None = None) -> str:
    """The benchmark's question for `sample`; Video-MME with subtitles needs the video's `duration`
    (the subtitles shown are those spoken at 768 evenly spaced moments of it)."""
    lettered = [f"{LETTERS[i]}. {o}" for i, o in enumerate(sample.options)]
    if bench.name in ("videomme", "videomme_sub"):
        body = f"{VIDEOMME_INSTRUCTION}\n{sample.question}\n" + "\n".join(sample.options) + f"\n{VIDEOMME_POST}"
        if not bench.subtitles:
            return body
        lines = subtitle_lines(sample.subtitles, duration) if sample.subtitles else []
        return VIDEOMME_SUBTITLES + ("\n".join(lines) if lines else NO_SUBTITLES) + "\n" + body
    if bench.name == "mvbench":
        options = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(sample.options))
        return f"Question:{sample.question}\nOption:\n{options}{MVBENCH_POST}"
    if bench.name == "nextqa":
        return "\n".join([sample.question.strip(), *lettered])  # no post-prompt in lmms-eval's nextqa task
    if bench.name == "egoschema":
        return sample.question + "".join(f"\n{o}" for o in lettered) + f"\n{LETTER_DIRECTLY}"
    if bench.name == "longvideobench":
        return f"{sample.question}\n" + "\n".join(lettered) + f"\n{LETTER_DIRECTLY}\n"
    if bench.name == "mlvu":
        options = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(sample.options))
        return (f"Question: {sample.question}\nOptions:\n{options}").rstrip() + MLVU_POST
    raise ValueError(f"no prompt for benchmark {bench.name!r}")


# --- Video-MME subtitles (.srt) ---------------------------------------------------------------------

_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.strip().split(":")
    secs, millis = rest.split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


def read_srt(path: str | Path) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each block of an .srt file; the text is the <font ...> tag's content
    when the line has one (Video-MME's files do), else the block's lines joined by spaces."""
    entries = []
    for block in Path(path).read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.strip().split("\n") if line.strip()]
        if len(lines) < 3 or " --> " not in lines[1]:
            continue
        start, end = lines[1].split(" --> ")
        try:
            begin, finish = _seconds(start), _seconds(end)
        except ValueError:
            continue
        text = " ".join(lines[2:])
        found = _FONT.findall(text)
        entries.append((begin, finish, found[0] if found else text))
    return entries


def subtitle_lines(path: str | Path, duration: float | None, points: int = VIDEOMME_SUBTITLE_POINTS) -> list[str]:
    """The subtitles lmms-eval shows: those whose [start, end) holds one of `points` moments spread
    evenly over the video (0 .. duration), in order of time."""
    entries = read_srt(path)
    if not entries:
        return []
    if not duration or duration <= 0:
        duration = max(end for _, end, _ in entries)
    moments = [duration * i / (points - 1) for i in range(points)] if points > 1 else [0.0]
    return [text for start, end, text in entries if any(start <= t < end for t in moments)]

