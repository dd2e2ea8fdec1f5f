"""The benchmarks' own annotation files, read as their authors (or lmms-eval's copies on the Hub)
distribute them, and the videos beside them in a local folder: one `Sample` per question.

A question whose video is missing, or whose annotation lacks a field, becomes a Sample with a
`problem` (one line saying what and where): the runner reports it and counts it as skipped; it is
never dropped silently. Which file, which fields and where the videos are: docs/eval.md, with the
source each fact came from. Torch-free.
"""

from __future__ import annotations

import csv
import json
import os
import re
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

LETTERS = string.ascii_uppercase


class BenchmarkError(ValueError):
    """The folder does not hold the benchmark's annotation files: one line saying what was looked for."""


@dataclass(frozen=True)
class Sample:
    id: str  # unique within the benchmark, stable across runs (resume, compare)
    video: str  # the video file's path ("" when not found: see problem)
    question: str
    options: tuple[str, ...]  # the options' texts as the benchmark gives them (Video-MME's carry "A. ")
    answer: str  # the correct option's letter
    category: str = ""  # the benchmark's task / question type
    duration: str = ""  # the benchmark's duration group, when it has one
    subtitles: str = ""  # a subtitle file (Video-MME), "" if none
    problem: str = ""  # why this sample cannot be run ("" = it can)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["options"] = list(self.options)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Sample":
        return cls(**{**row, "options": tuple(row["options"])})


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    max_new_tokens: int  # lmms-eval's generation_kwargs (llava_vid's 1024 where a task sets none)
    parser: str  # which of lmms-eval's answer parsers (eval/answers.py)
    overall: str = "samples"  # "samples": accuracy over questions; "categories": mean of categories (MLVU's M-avg)
    subtitles: bool = False
    published: float | None = None  # LLaVA-Video-7B-Qwen2's reported score (model card / paper)
    loader: Callable[[Path], list[Sample]] = field(default=lambda folder: [], repr=False, compare=False)


# --- reading helpers ------------------------------------------------------------------------------

def _table(path: Path) -> list[dict[str, Any]]:
    """Rows of a .parquet, .csv, .json (an array) or .jsonl file."""
    if path.suffix == ".parquet":
        import pandas as pd

        return [_plain(r) for r in pd.read_parquet(path).to_dict(orient="records")]
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    value = json.loads(text)
    if not isinstance(value, list):
        raise BenchmarkError(f"{path}: expected a JSON array of questions")
    return value


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy values of a parquet row as Python ones (arrays of options become lists)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        out[key] = value
    return out


def _first(folder: Path, patterns: Iterable[str], what: str) -> Path:
    tried = list(patterns)
    for pattern in tried:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise BenchmarkError(f"no {what} in {folder} (looked for {', '.join(tried)})")


def _video(candidates: Iterable[Path]) -> tuple[str, str]:
    """(path, "") for the first candidate file that exists, else ("", the problem)."""
    tried = list(candidates)
    for path in tried:
        if path.is_file():
            return str(path), ""
        if path.is_dir():
            return "", f"{path} is a folder of frames, not a video file (not supported)"
    return "", f"video not found: {tried[0]}"


def _missing(row: dict[str, Any], fields: Iterable[str]) -> str:
    absent = [f for f in fields if row.get(f) is None or (isinstance(row.get(f), str) and not row[f].strip()
                                                           and f != "question")]
    return f"annotation lacks {', '.join(absent)}" if absent else ""


def _skip(sample_id: str, problem: str, where: str) -> Sample:
    return Sample(sample_id, "", "", (), "", problem=f"{where}: {problem}")


def _letter_of(value: Any, options: list[str]) -> str:
    """An answer given as an index (0..n-1), a letter or the option's text -> its letter, or ""."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        return LETTERS[index] if 0 <= index < len(options) else ""
    text = str(value).strip()
    if len(text) == 1 and text.upper() in LETTERS[:len(options)]:
        return text.upper()
    return LETTERS[options.index(text)] if text in options else ""


def _letter_of_text(value: Any, options: list[str]) -> str:
    """An answer given as the right option's text (MVBench, MLVU: "1" is the option "1", not an index)."""
    text = str(value)
    return LETTERS[options.index(text)] if text in options else ""


# --- Video-MME ------------------------------------------------------------------------------------
# lmms-eval/Video-MME on the Hub: videomme/test-00000-of-00001.parquet; videos data/<videoID>.mp4
# (.MP4, .mkv), subtitles subtitle/<videoID>.srt.

def load_videomme(folder: Path) -> list[Sample]:
    path = _first(folder, ("videomme/test-*.parquet", "test-*.parquet", "*.parquet", "videomme.json*"),
                  "Video-MME annotation (videomme/test-00000-of-00001.parquet)")
    samples = []
    for n, row in enumerate(_table(path), 1):
        sid = str(row.get("question_id") or f"row{n}")
        where = f"{path.name} row {n}"
        problem = _missing(row, ("videoID", "question", "options", "answer", "duration", "task_type"))
        if problem:
            samples.append(_skip(sid, problem, where))
            continue
        options = [str(o) for o in row["options"]]
        vid = str(row["videoID"])
        video, problem = _video(folder / "data" / f"{vid}{ext}" for ext in (".mp4", ".MP4", ".mkv"))
        answer = _letter_of(row["answer"], options)
        if not problem and not answer:
            problem = f"answer {row['answer']!r} is not one of the options' letters"
        subtitles = folder / "subtitle" / f"{vid}.srt"
        samples.append(Sample(sid, video, str(row["question"]), tuple(options), answer, str(row["task_type"]),
                              str(row["duration"]), str(subtitles) if subtitles.is_file() else "",
                              f"{where}: {problem}" if problem else ""))
    return samples


# --- MVBench --------------------------------------------------------------------------------------
# OpenGVLab/MVBench: json/<task>.json (video, question, candidates, answer = the right candidate's
# text); videos video/<the task's folder>/<video> (lmms-eval's DATA_LIST), or <folder>/<video>.

MVBENCH_FOLDERS = {
    "object_interaction": "star/Charades_segment", "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment", "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation", "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos", "object_shuffle": "perception/videos", "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation", "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos", "scene_transition": "scene_qa/video",
    "state_change": "perception/videos", "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4", "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation", "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}


def load_mvbench(folder: Path) -> list[Sample]:
    files = [path for path in (folder / "json" / f"{task}.json" for task in MVBENCH_FOLDERS) if path.is_file()]
    if not files:
        raise BenchmarkError(f"no MVBench annotation in {folder} (looked for json/<task>.json, e.g. "
                             "json/action_antonym.json)")
    return _candidate_tasks(files, lambda task, video: [folder / "video" / MVBENCH_FOLDERS[task] / video,
                                                         folder / MVBENCH_FOLDERS[task] / video],
                            lambda task, row: task)


# --- NExT-QA (multiple choice) --------------------------------------------------------------------
# The authors' dataset/nextqa/test.csv (or lmms-eval/NExTQA's MC/test-*.parquet, same columns):
# video, frame_count, width, height, question, answer (0-4), qid, type, a0..a4. Videos
# NExTVideo/<video>.mp4 (lmms-eval), or the authors' NExTVideo/<folder>/<video>.mp4 through
# map_vid_vidorID.json.

def load_nextqa(folder: Path) -> list[Sample]:
    path = _first(folder, ("test.csv", "nextqa/test.csv", "MC/test-*.parquet", "test-*.parquet"),
                  "NExT-QA multiple-choice annotation (test.csv)")
    mapping_file = next((p for p in (folder / "map_vid_vidorID.json", folder / "nextqa" / "map_vid_vidorID.json")
                         if p.is_file()), None)
    mapping = json.loads(mapping_file.read_text()) if mapping_file else {}
    samples = []
    for n, row in enumerate(_table(path), 1):
        sid = f"{row.get('video')}_{row.get('qid')}"
        where = f"{path.name} row {n}"
        problem = _missing(row, ("video", "qid", "question", "answer", "type", "a0", "a1", "a2", "a3", "a4"))
        if problem:
            samples.append(_skip(sid, problem, where))
            continue
        options = [str(row[f"a{i}"]).strip() for i in range(5)]
        name = str(row["video"])
        candidates = [folder / "NExTVideo" / f"{name}{ext}" for ext in (".mp4", ".MP4")]
        if name in mapping:
            candidates.insert(0, folder / "NExTVideo" / f"{mapping[name]}.mp4")
        video, problem = _video(candidates)
        answer = _letter_of(row["answer"], options)
        if not problem and not answer:
            problem = f"answer {row['answer']!r} is not an option's index (0-4)"
        samples.append(Sample(sid, video, str(row["question"]).strip(), tuple(options), answer, str(row["type"]),
                              problem=f"{where}: {problem}" if problem else ""))
    return samples


# --- EgoSchema (the public subset) ----------------------------------------------------------------
# The authors' questions.json (q_uid, question, "option 0".."option 4") and subset_answers.json
# ({q_uid: index}): only the 500 questions with a public answer; videos videos/<q_uid>.mp4 (or
# good_clips_git/<q_uid>.mp4, as the authors' archive unpacks).

def load_egoschema(folder: Path) -> list[Sample]:
    questions = _first(folder, ("questions.json",), "EgoSchema questions.json")
    answers_file = _first(folder, ("subset_answers.json",), "EgoSchema subset_answers.json")
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    samples = []
    for n, row in enumerate(_table(questions), 1):
        uid = str(row.get("q_uid", ""))
        if uid not in answers:
            continue  # not in the public subset: its answer is not public (not a skip: not a question we have)
        where = f"{questions.name} item {n}"
        problem = _missing(row, ("question", *(f"option {i}" for i in range(5))))
        if problem:
            samples.append(_skip(uid, problem, where))
            continue
        options = [str(row[f"option {i}"]).strip() for i in range(5)]
        video, problem = _video(folder / sub / f"{uid}.mp4" for sub in ("videos", "good_clips_git", "."))
        answer = _letter_of(answers[uid], options)
        if not problem and not answer:
            problem = f"subset answer {answers[uid]!r} is not an option's index (0-4)"
        samples.append(Sample(uid, video, str(row["question"]), tuple(options), answer,
                              problem=f"{where}: {problem}" if problem else ""))
    if not samples:
        raise BenchmarkError(f"{questions} has none of the questions of {answers_file.name}")
    return samples


# --- LongVideoBench -------------------------------------------------------------------------------
# longvideobench/LongVideoBench: lvb_val.json (id, question, candidates or option0..option4 with
# "N/A" for unused ones, correct_choice, duration_group, question_category, video_path); videos
# videos/<video_path>.

def load_longvideobench(folder: Path) -> list[Sample]:
    path = _first(folder, ("lvb_val.json", "validation-*.parquet", "*.parquet"), "LongVideoBench lvb_val.json")
    samples = []
    for n, row in enumerate(_table(path), 1):
        sid = str(row.get("id") or f"row{n}")
        where = f"{path.name} item {n}"
        if "candidates" in row:
            options = [str(c) for c in (row["candidates"] or [])]
        else:
            options = [str(row[f"option{i}"]) for i in range(5) if row.get(f"option{i}") not in (None, "N/A")]
        problem = _missing(row, ("question", "correct_choice", "video_path", "duration_group", "question_category"))
        if problem or not options:
            samples.append(_skip(sid, problem or "annotation has no candidates", where))
            continue
        video, problem = _video([folder / "videos" / str(row["video_path"])])
        answer = _letter_of(row["correct_choice"], options)
        if not problem and not answer:
            problem = f"correct_choice {row['correct_choice']!r} is not a candidate's index"
        samples.append(Sample(sid, video, str(row["question"]), tuple(options), answer,
                              str(row["question_category"]), str(row["duration_group"]),
                              problem=f"{where}: {problem}" if problem else ""))
    return samples


# --- MLVU (dev, multiple choice) ------------------------------------------------------------------
# The authors' MLVU/json/<n>_<task>.json (video, duration, question, candidates, answer = the right
# candidate's text, question_type); videos MLVU/video/<n>_<task>/<video> (or video/<task>/, as some
# copies unpack). `folder` is MLVU/ or its parent.

MLVU_TASKS = ("1_plotQA", "2_needle", "3_ego", "4_count", "5_order", "6_anomaly_reco", "7_topic_reasoning")


def load_mlvu(folder: Path) -> list[Sample]:
    if (folder / "MLVU").is_dir():
        folder = folder / "MLVU"
    files = [path for path in (folder / "json" / f"{task}.json" for task in MLVU_TASKS) if path.is_file()]
    if not files:
        raise BenchmarkError(f"no MLVU annotation in {folder} (looked for json/<n>_<task>.json, "
                             "e.g. json/1_plotQA.json)")
    return _candidate_tasks(files, lambda task, video: [folder / "video" / task / video,
                                                         folder / "video" / re.sub(r"^\d+_", "", task) / video],
                            lambda task, row: str(row.get("question_type") or re.sub(r"^\d+_", "", task)))


def _candidate_tasks(files: list[Path], video_paths: Callable[[str, str], list[Path]],
                     category: Callable[[str, dict[str, Any]], str]) -> list[Sample]:
    """MVBench's and MLVU's layout: one JSON list per task of {video, question, candidates, answer (the
    right candidate's text)}; `video_paths(task, name)` lists where the video may be, `category(task, row)`."""
    samples = []
    for path in files:
        task = path.stem
        for n, row in enumerate(_table(path), 1):
            sid = f"{task}/{n - 1}"
            where = f"{path.name} item {n}"
            problem = _missing(row, ("video", "question", "candidates", "answer"))
            if problem:
                samples.append(_skip(sid, problem, where))
                continue
            options = [str(c) for c in row["candidates"]]
            video, problem = _video(video_paths(task, str(row["video"])))
            answer = _letter_of_text(row["answer"], options)
            if not problem and not answer:
                problem = f"answer {row['answer']!r} is not one of the candidates"
            samples.append(Sample(sid, video, str(row["question"]), tuple(options), answer, category(task, row),
                                  problem=f"{where}: {problem}" if problem else ""))
    return samples


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("videomme", "Video-MME (without subtitles)", 16, "mcq_extract", published=63.3, loader=load_videomme),
    Benchmark("videomme_sub", "Video-MME (with subtitles)", 16, "mcq_extract", subtitles=True, published=69.7,
              loader=load_videomme),
    Benchmark("mvbench", "MVBench", 16, "mvbench", published=58.6, loader=load_mvbench),
    Benchmark("nextqa", "NExT-QA (multiple choice, test)", 1024, "mmmu", published=83.2, loader=load_nextqa),
    Benchmark("egoschema", "EgoSchema (public subset, 500)", 16, "egoschema", published=57.3, loader=load_egoschema),
    Benchmark("longvideobench", "LongVideoBench (validation)", 32, "longvideobench", published=58.2,
              loader=load_longvideobench),
    Benchmark("mlvu", "MLVU (dev, multiple choice; M-avg)", 16, "mcq_extract", overall="categories", published=70.8,
              loader=load_mlvu),
)}


def benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.strip().lower()]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}") from None


def load_samples(name: str, folder: str | os.PathLike) -> list[Sample]:
    """Every question of benchmark `name` in `folder`, in the files' order (problems included)."""
    bench = benchmark(name)
    folder = Path(folder).absolute()  # the records' video paths hold wherever a run (or a Ray worker) starts
    if not folder.is_dir():
        raise BenchmarkError(f"--data {folder}: not a folder")
    try:
        return bench.loader(folder)
    except (OSError, ValueError, KeyError, TypeError) as err:
        if isinstance(err, BenchmarkError):
            raise
        raise BenchmarkError(f"{bench.title}: cannot read the annotation in {folder}: {err}") from None
