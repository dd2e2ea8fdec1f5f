"""Each benchmark's files in the layout its authors (or lmms-eval's copy on the Hub) distribute, small:
a few questions over a few short videos, one question per benchmark with a problem (a missing video
or field) that must come out as a skip. `write(name, folder, video)` returns the expected samples:
{id: correct letter, or "skip"}."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path


def _place(video: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(video, target)
    except OSError:
        shutil.copy(video, target)


SRT = """1
00:00:00,000 --> 00:00:01,500
<font color="white" size=".72c">hello from the start</font>

2
00:00:01,500 --> 00:00:03,000
<font color="white" size=".72c">and the middle</font>

3
00:00:50,000 --> 00:00:52,000
<font color="white" size=".72c">after the video ended</font>
"""


def videomme(folder: Path, video: Path) -> dict[str, str]:
    import pandas as pd

    rows = []
    for n, (vid, answer, task) in enumerate([("vidA", "B", "Counting Problem"), ("vidA", "C", "OCR Problems"),
                                             ("vidB", "A", "Counting Problem"), ("gone", "D", "OCR Problems")]):
        rows.append({"video_id": f"{n:03d}", "duration": "short" if vid != "vidB" else "medium", "domain": "Knowledge",
                     "sub_category": "Astronomy", "url": f"https://www.youtube.com/watch?v={vid}", "videoID": vid,
                     "question_id": f"{n:03d}-1", "task_type": task, "question": f"Question {n}?",
                     "options": [f"A. first {n}", f"B. second {n}", f"C. third {n}", f"D. fourth {n}"],
                     "answer": answer})
    (folder / "videomme").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "videomme" / "test-00000-of-00001.parquet")
    _place(video, folder / "data" / "vidA.mp4")
    _place(video, folder / "data" / "vidB.MP4")  # lmms-eval also looks for .MP4
    (folder / "subtitle").mkdir(parents=True, exist_ok=True)
    (folder / "subtitle" / "vidA.srt").write_text(SRT, encoding="utf-8")
    return {"000-1": "B", "001-1": "C", "002-1": "A", "003-1": "skip"}


def mvbench(folder: Path, video: Path) -> dict[str, str]:
    (folder / "json").mkdir(parents=True, exist_ok=True)
    antonym = [{"video": "1.mp4", "question": "What is the action performed by the person in the video?",
                "candidates": ["Pushing something", "Pulling something", "Not sure"], "answer": "Pulling something"},
               {"video": "2.mp4", "question": "What happens?", "candidates": ["Opening", "Closing", "Not sure"],
                "answer": "Opening"}]  # 2.mp4 is missing
    shuffle = [{"video": "video_1.mp4", "question": "Where is the ball?",
                "candidates": ["left", "middle", "right"], "answer": "right"}]
    (folder / "json" / "action_antonym.json").write_text(json.dumps(antonym))
    (folder / "json" / "object_shuffle.json").write_text(json.dumps(shuffle))
    _place(video, folder / "video" / "ssv2_video_mp4" / "1.mp4")
    _place(video, folder / "video" / "perception" / "videos" / "video_1.mp4")
    return {"action_antonym/0": "B", "action_antonym/1": "skip", "object_shuffle/0": "C"}


def nextqa(folder: Path, video: Path) -> dict[str, str]:
    header = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
              "a0", "a1", "a2", "a3", "a4"]
    rows = [["4010069381", 900, 640, 480, "how do the two man play the instrument", 1, 6, "CH",
             "roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand"],
            ["4010069381", 900, 640, 480, "why did the boy clap his hands", 4, 7, "CW",
             "to dance", "excited", "cold", "bored", "the song ended"],
            ["5555", 300, 640, 480, "what is on the table", 0, 1, "DO", "a cup", "a cat", "a dog", "", "a hat"]]
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    _place(video, folder / "NExTVideo" / "4010069381.mp4")
    _place(video, folder / "NExTVideo" / "5555.mp4")
    return {"4010069381_6": "B", "4010069381_7": "E", "5555_1": "skip"}  # 5555_1 lacks a3


def egoschema(folder: Path, video: Path) -> dict[str, str]:
    def question(uid: str) -> dict:
        return {"q_uid": uid, "google_drive_id": "x", "question": f"What is c doing in {uid}?",
                **{f"option {i}": f"c does thing {i}" for i in range(5)}}

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.json").write_text(json.dumps([question(u) for u in ("q-1", "q-2", "q-3")]))
    (folder / "subset_answers.json").write_text(json.dumps({"q-1": 3, "q-3": 0}))  # q-2 is not in the public subset
    _place(video, folder / "videos" / "q-1.mp4")
    _place(video, folder / "videos" / "q-2.mp4")
    return {"q-1": "D", "q-3": "skip"}


def longvideobench(folder: Path, video: Path) -> dict[str, str]:
    items = [{"video_id": "v1", "id": "v1_0", "question": "What colour is the square?", "question_wo_referring_query":
              "What colour?", "candidates": ["red", "green", "blue", "black"], "correct_choice": 2,
              "position": [1], "topic_category": "NP", "question_category": "TOS", "level": "L2-Relation",
              "duration_group": 15, "starting_timestamp_for_subtitles": 0, "duration": 6.0,
              "view_count": 1, "video_path": "v1.mp4", "subtitle_path": "v1_en.json"},
             {"video_id": "v1", "id": "v1_1", "question": "Where does it move?", "candidates": ["left", "right"],
              "correct_choice": 1, "question_category": "S2E", "duration_group": 15, "video_path": "v1.mp4"},
             {"video_id": "v2", "id": "v2_0", "question": "Anything?", "candidates": ["yes", "no"],
              "correct_choice": 0, "question_category": "S2E", "video_path": "v2.mp4"}]  # lacks duration_group
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lvb_val.json").write_text(json.dumps(items))
    _place(video, folder / "videos" / "v1.mp4")
    _place(video, folder / "videos" / "v2.mp4")
    return {"v1_0": "C", "v1_1": "B", "v2_0": "skip"}


def mlvu(folder: Path, video: Path) -> dict[str, str]:
    root = folder / "MLVU"
    (root / "json").mkdir(parents=True, exist_ok=True)
    plot = [{"video": "movie101_66.mp4", "duration": 6.0, "question": "What colour is the main character's hat?",
             "candidates": ["Black", "Red", "White", "Blue"], "answer": "White", "question_type": "plotQA"}]
    count = [{"video": "count_1.mp4", "duration": 6.0, "question": "How many squares appear?",
              "candidates": ["1", "2", "3", "4"], "answer": "1", "question_type": "count"},
             {"video": "count_2.mp4", "duration": 6.0, "question": "How many circles appear?",
              "candidates": ["0", "2", "3", "5"], "answer": "0", "question_type": "count"}]  # count_2.mp4 missing
    (root / "json" / "1_plotQA.json").write_text(json.dumps(plot))
    (root / "json" / "4_count.json").write_text(json.dumps(count))
    _place(video, root / "video" / "1_plotQA" / "movie101_66.mp4")
    _place(video, root / "video" / "4_count" / "count_1.mp4")
    return {"1_plotQA/0": "C", "4_count/0": "A", "4_count/1": "skip"}


WRITERS = {"videomme": videomme, "videomme_sub": videomme, "mvbench": mvbench, "nextqa": nextqa,
           "egoschema": egoschema, "longvideobench": longvideobench, "mlvu": mlvu}


def write(name: str, folder: Path, video: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return WRITERS[name](folder, video)
