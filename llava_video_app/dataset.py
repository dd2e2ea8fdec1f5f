"""One record of LLaVA-Video-178K-style data: its schema, its length bucket, the multiple-choice turn,
and `validate_record`. (Files of records: jsonl.py; the output folder's layout: output_folder.py;
stats and checks over a folder: dataset_report.py.)

A record (the public dataset's schema; our provenance fields ride along, trainers ignore them):

    {"id": "clip-3f2a9c01d4_oe_camera_direction", "video": "sub/clip.mp4", "data_source": "local",
     "conversations": [{"from": "human", "value": "<image>\\nHow does the camera move?"},
                       {"from": "gpt", "value": "It pans slowly to the right."}],
     "task": "oe", "question_type": "Camera Direction", ...}

`task` is "cap" (detailed caption), "oe" (open-ended QA) or "mc" (multiple-choice QA); a video's
length bucket is 0_30_s, 30_60_s, 1_2_m, 2_3_m or over_3_m (the public dataset's, plus one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .prompts import IMAGE_PLACEHOLDER

TASKS = ("cap", "oe", "mc")
LENGTH_BUCKETS = ("0_30_s", "30_60_s", "1_2_m", "2_3_m", "over_3_m")
_BUCKET_LABELS = {"0_30_s": "0-30s", "30_60_s": "30-60s", "1_2_m": "1-2min", "2_3_m": "2-3min", "over_3_m": "longer"}
MC_LETTERS = "ABCDE"
MC_INSTRUCTION = "Please respond with only the letter of the correct answer."


# --- names ----------------------------------------------------------------------------------------

def length_bucket(duration: float) -> str:
    """The public dataset's length buckets (plus one for longer videos)."""
    if duration < 30:
        return "0_30_s"
    if duration < 60:
        return "30_60_s"
    if duration < 120:
        return "1_2_m"
    if duration < 180:
        return "2_3_m"
    return "over_3_m"


def bucket_label(bucket: str) -> str:
    return _BUCKET_LABELS.get(bucket, bucket)


def safe_name(text: str) -> str:
    """Lowercase letters, digits and underscores: for data sources, type slugs and file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


# --- records --------------------------------------------------------------------------------------

def make_record(record_id: str, video: str, data_source: str, human: str, gpt: str,
                **provenance: Any) -> dict[str, Any]:
    """One single-turn record; `<image>\\n` is put in front of the human turn."""
    return {
        "id": record_id,
        "video": video,
        "data_source": data_source,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_PLACEHOLDER}\n{human}"},
            {"from": "gpt", "value": gpt},
        ],
        **provenance,
    }


def mc_human_turn(question: str, options: Sequence[str]) -> str:
    """`<question>\\nA. <option>\\nB. <option>...\\nPlease respond with only the letter of the correct answer.`"""
    lines = [question, *(f"{MC_LETTERS[i]}. {o}" for i, o in enumerate(options)), MC_INSTRUCTION]
    return "\n".join(lines)


def validate_record(record: Any, task: str | None = None) -> list[str]:
    """Problems with one record, as short sentences (empty = valid). `task` ("cap"/"oe"/"mc") adds the
    split's own rules (a multiple-choice answer is one of the offered letters)."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, not {type(record).__name__}"]
    errors = []
    for key in ("id", "video", "data_source"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"'{key}' must be a non-empty string")
    video = record.get("video")
    if isinstance(video, str) and (video.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", video)
                                   or ".." in Path(video).parts):
        errors.append(f"'video' must be relative to the video root, not {video!r}")
    conv = record.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        errors.append("'conversations' must be a list of at least 2 turns")
        return errors
    images = 0
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or set(turn) - {"from", "value"} or "from" not in turn or "value" not in turn:
            errors.append(f"turn {i} must be an object with exactly 'from' and 'value'")
            continue
        want = "human" if i % 2 == 0 else "gpt"
        if turn["from"] != want:
            errors.append(f"turn {i} must be from {want!r}, not {turn['from']!r}")
        if not isinstance(turn["value"], str) or not turn["value"].strip():
            errors.append(f"turn {i} has an empty value")
            continue
        images += turn["value"].count(IMAGE_PLACEHOLDER)
    if len(conv) % 2:
        errors.append("the conversation must end with a gpt turn")
    first = conv[0].get("value") if isinstance(conv[0], dict) else None
    if isinstance(first, str) and not first.startswith(IMAGE_PLACEHOLDER + "\n"):
        errors.append("the first human turn must start with '<image>\\n'")
    if images != 1:
        errors.append(f"'<image>' must appear exactly once (at the start), found {images}")
    task = task or record.get("task")
    if task == "mc" and not errors:
        answer = conv[1]["value"].strip()
        options = re.findall(r"^([A-E])\. ", conv[0]["value"], re.M)
        if not re.fullmatch(r"[A-E]\.?", answer):
            errors.append(f"a multiple-choice answer must be a letter like 'B.', not {answer[:40]!r}")
        elif not 3 <= len(options) <= 5:
            errors.append(f"a multiple-choice question must offer 3 to 5 lettered options, found {len(options)}")
        elif answer[0] not in options:
            errors.append(f"the answer {answer!r} is not one of the options {', '.join(options)}")
    return errors
