"""The synthetic-data recipe (synth.py): QA parsing and filters on a corpus of real-looking and broken
model outputs, the window rule, multiple choice, and end-to-end runs on the tiny random checkpoint
(structure only: its text is gibberish) and on a scripted engine (to reach the QA records)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from llava_video_app import dataset as ds
from llava_video_app import output_folder as folder
from llava_video_app.dataset_report import check_dataset
from llava_video_app.jsonl import read_jsonl
from llava_video_app import synth
from llava_video_app.config import GenerationSettings
from llava_video_app.prompts import QUESTION_TYPES
from llava_video_app.synth import QAPair, SynthOptions

ALL_TYPES = [t.name for t in QUESTION_TYPES]


# --- parsing: a corpus of outputs ---------------------------------------------------------------------

GOOD = '{"Dimension": "Count", "Question": "How many squares are there?", "Answer": "There is one square.", ' \
       '"Correct Option": "One", "Wrong Options": ["Two", "Three", "Four"]}'

# (name, model output, expected type (None = joint mode), questions kept, rejects)
CORPUS = [
    ("plain object", GOOD, "Count", ["How many squares are there?"], {}),
    ("fenced json with trailing commas",
     '```json\n{"Dimension": "Count", "Question": "How many squares?", "Answer": "One.", '
     '"Wrong Options": ["Two", "Three",],}\n```', "Count", ["How many squares?"], {}),
    ("single quotes and prose around",
     "Sure! Here is the pair you asked for:\n{'Question': 'What colour is the square?', 'Answer': 'It is red.', "
     "'Wrong Options': ['Blue', 'Green', 'Yellow']}\nLet me know if you need anything else.",
     "Description-Object", ["What colour is the square?"], {}),
    ("bare None", "None", "Speed", [], {"none": 1}),
    ("None with a full stop", "None.", "Speed", [], {"none": 1}),
    ("None in a fence", "```json\nNone\n```", "Speed", [], {"none": 1}),
    ("None as a JSON entry", '{"Dimension": "Speed", "Question": "None", "Answer": "None"}', "Speed", [],
     {"none": 1}),
    ("None then an explanation", "None - the description does not mention any speed.", "Speed", [], {"none": 1}),
    ("empty output", "", "Speed", [], {"unparseable": 1}),
    ("prose only", "I am sorry, I cannot write a question about this video.", "Speed", [], {"unparseable": 1}),
    ("garbage brackets", "{{{{[[[[ ))) ::", "Speed", [], {"unparseable": 1}),
    ("pathologically deep", "[" * 5000, "Speed", [], {"unparseable": 1}),
    ("truncated inside the answer", '{"Dimension": "Count", "Question": "How many squares?", "Answer": "There a',
     "Count", [], {"malformed": 1}),
    ("truncated inside the options: the pair stays, the options go",
     '{"Dimension": "Count", "Question": "How many squares?", "Answer": "One.", "Wrong Options": ["Two", "Thr',
     "Count", ["How many squares?"], {}),
    ("answer admits the description lacks it",
     '{"Question": "What is the man wearing?", "Answer": "The description does not specify his clothing."}',
     "Description-Human", [], {"lacks_info": 1}),
    ("answer: cannot be determined", '{"Question": "How old is she?", "Answer": "Her age cannot be determined."}',
     "Description-Human", [], {"lacks_info": 1}),
    ("answer: unknown", '{"Question": "Where is it?", "Answer": "Unknown."}', "Spatial", [], {"lacks_info": 1}),
    ("a non-existent action answered 'no' is kept",
     '{"Question": "Does the man start dancing?", "Answer": "No, he does not dance; he only cooks."}',
     "Non-Existent Actions with Existent Scene Depictions", ["Does the man start dancing?"], {}),
    ("two pairs for one type: the first is kept",
     '[{"Question": "Q one?", "Answer": "A."}, {"Question": "Q two?", "Answer": "B."}]', "Count", ["Q one?"],
     {"extra_for_type": 1}),
    ("python literals", "{'Question': 'Is the square red?', 'Answer': True, 'Wrong Options': None}", "Binary",
     ["Is the square red?"], {}),
    ("lowercase keys and 'distractors'",
     '{"question": "Which way does it move?", "answer": "Left to right.", "distractors": ["Up", "Down"]}',
     "Object Direction", ["Which way does it move?"], {}),
    ("missing answer", '{"Question": "What happens?"}', "Temporal", [], {"malformed": 1}),
    ("a list of strings", '["What happens?", "It moves."]', "Temporal", [], {"malformed": 2}),
    # joint mode: a list over types
    ("joint: clean list",
     '[{"Dimension": "Temporal", "Question": "What happens first?", "Answer": "The square appears."},'
     ' {"Dimension": "Speed", "Question": "How fast does it move?", "Answer": "Slowly."}]',
     None, ["What happens first?", "How fast does it move?"], {}),
    ("joint: truncated list drops only the cut item",
     '```json\n[{"Dimension": "Temporal", "Question": "What happens first?", "Answer": "The square appears."},\n'
     ' {"Dimension": "Spatial", "Question": "Where is the square?", "Ans', None, ["What happens first?"],
     {"malformed": 1}),
    ("joint: unclosed fence after a complete item",
     '```json\n[{"Dimension": "Count", "Question": "How many?", "Answer": "Two."},', None, ["How many?"], {}),
    ("joint: unknown type, None entries and lacks-info",
     '[{"Dimension": "Smell", "Question": "What does it smell like?", "Answer": "Roses."},'
     ' {"Dimension": "Count", "Question": "None", "Answer": "None"}, "None",'
     ' {"Dimension": "Camera Direction", "Question": "How does the camera move?", "Answer": "Not mentioned."},'
     ' {"Dimension": "camera direction", "Question": "Is the camera still?", "Answer": "Yes, it stays still."}]',
     None, ["Is the camera still?"], {"unknown_type": 1, "none": 2, "lacks_info": 1}),
    ("joint: wrapped in an object", '{"questions": [{"Dimension": "Speed", "Question": "How fast?", "Answer": "Slowly."}]}',
     None, ["How fast?"], {}),
    ("joint: empty list means nothing fits", "[]", None, [], {"none": 1}),
    ("joint: prose with a bracket before the JSON",
     'Here are the pairs [as requested]:\n{"Dimension": "Speed", "Question": "How fast?", "Answer": "Slowly."}',
     None, ["How fast?"], {}),
]


@pytest.mark.parametrize("name,text,expected_type,questions,rejects", CORPUS, ids=[c[0] for c in CORPUS])
def test_qa_output_corpus(name, text, expected_type, questions, rejects):
    counted = Counter()
    pairs = synth.pairs_from_output(text, expected_type=expected_type, allowed_types=ALL_TYPES, rejects=counted)
    assert [p.question for p in pairs] == questions
    assert dict(counted) == rejects
    for pair in pairs:
        assert pair.question_type in ALL_TYPES and pair.answer
        if expected_type:
            assert pair.question_type == expected_type


def test_parsed_fields_and_options():
    [pair] = synth.pairs_from_output(GOOD, expected_type="Count", allowed_types=ALL_TYPES, rejects=Counter())
    assert (pair.correct_option, pair.wrong_options) == ("One", ["Two", "Three", "Four"])
    # options given with letters, or as a dict, are cleaned up
    text = '{"Question": "Q?", "Answer": "A.", "Options": {"A": "A. red", "B": "(B) blue", "C": "green"}}'
    [pair] = synth.pairs_from_output(text, expected_type="Count", allowed_types=ALL_TYPES, rejects=Counter())
    assert pair.wrong_options == ["red", "blue", "green"]


def test_the_parser_never_raises_on_random_junk():
    import random

    rng = random.Random(0)
    alphabet = '{}[]",:\'` \nNoneTrueabc123\\'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        synth.pairs_from_output(text, expected_type=None, allowed_types=ALL_TYPES, rejects=Counter())


@pytest.mark.parametrize("answer", [
    "The description does not specify.", "It doesn't mention the colour.", "This is not mentioned in the video.",
    "Cannot be determined from the description.", "Unknown", "It is unclear what he holds.",
    "There is no information about the weather.", "Not specified.", "It is impossible to tell.",
])
def test_lacks_info_matches(answer):
    assert synth.lacks_info(answer)


@pytest.mark.parametrize("answer", [
    "No, the gardener does not start the lawnmower.", "The square moves from left to right.",
    "She picks up an unknown object and smiles.", "Yes.", "Three times.",
])
def test_lacks_info_leaves_real_answers(answer):
    assert not synth.lacks_info(answer)


def test_duplicates_by_normalised_question_and_one_pair_per_type():
    rejects = Counter()
    pairs = [QAPair("Count", "How many squares are there?", "One."),
             QAPair("Binary", "how many squares are there", "One."),  # same question, other type
             QAPair("Count", "How many colours?", "Two."),  # second Count
             QAPair("Speed", "How fast?", "Slowly.")]
    kept = synth.filter_pairs(pairs, rejects)
    assert [p.question for p in kept] == ["How many squares are there?", "How fast?"]
    assert rejects == {"duplicate": 1, "extra_for_type": 1}


# --- multiple choice ------------------------------------------------------------------------------

def test_multiple_choice_is_shuffled_stably_with_one_correct_letter():
    pair = QAPair("Count", "How many squares?", "There is one square.", "One", ["Two", "Three", "Four", "Five", "Six"])
    item = synth.make_multiple_choice(pair, "v_mc_count")
    assert len(item.options) == 5 and item.options[item.answer_index] == "One"
    assert sorted(item.options) == sorted(["One", "Two", "Three", "Four", "Five"])
    again = synth.make_multiple_choice(pair, "v_mc_count")
    assert (again.options, again.letter, again.seed) == (item.options, item.letter, item.seed)
    letters = {synth.make_multiple_choice(pair, f"video{i}_mc_count").letter for i in range(40)}
    assert len(letters) >= 4  # the correct answer is not always in the same place


def test_multiple_choice_needs_two_distinct_distractors():
    assert synth.make_multiple_choice(QAPair("Binary", "Is it red?", "Yes.", "Yes", ["No"]), "x") is None
    assert synth.make_multiple_choice(QAPair("Count", "How many?", "One.", "One", ["one", "Two", "two."]), "x") is None
    item = synth.make_multiple_choice(QAPair("Count", "How many?", "One.", None, ["Two", "Three"]), "x")
    assert len(item.options) == 3 and item.options[item.answer_index] == "One."  # falls back to the answer


# --- the window rule --------------------------------------------------------------------------------

def plan_for(duration, fps=1.0, **kw):
    timestamps = [k / fps for k in range(int(duration * fps - 1e-9) + 1)]
    options = SynthOptions(**kw)
    if len(timestamps) > options.max_frames:  # what the video stage does under the cap
        import numpy as np

        timestamps = [timestamps[i] for i in np.linspace(0, len(timestamps) - 1, options.max_frames, dtype=int)]
    return synth.plan_windows(timestamps, duration, options)


@pytest.mark.parametrize("duration,calls", [
    (25, (3, 1)), (70, (7, 3)), (5, (1, 1)), (30, (3, 1)), (31, (3, 1)),  # 1 s tail joins the last window
    (33, (4, 2)), (90, (9, 3)), (91.5, (9, 3)), (180, (18, 6)),
])
def test_calls_per_level(duration, calls):
    plan = plan_for(duration)
    assert (len(plan.level1), len(plan.level2)) == calls
    assert plan.calls == {"level1": calls[0], "level2": calls[1], "level3": 1, "qa": 16}
    assert plan.level1[0].start == 0 and plan.level1[-1].end == duration
    assert all(a.end == b.start for a, b in zip(plan.level1, plan.level1[1:]))
    assert sorted(p for w in plan.level1 for p in w.frames) == list(range(plan.frame_count))
    assert [c for w in plan.level2 for c in w.children] == list(range(len(plan.level1)))


def test_window_spans_and_frames_for_25_and_70_seconds():
    plan = plan_for(25)
    assert plan.windows_info() == {"level1": [[0, 10], [10, 20], [20, 25]], "level2": [[0, 25]], "level3": [[0, 25]]}
    assert [len(w.frames) for w in plan.level1] == [10, 10, 5]
    plan = plan_for(70)
    assert plan.windows_info()["level2"] == [[0, 30], [30, 60], [60, 70]]
    assert [w.children for w in plan.level2] == [(0, 1, 2), (3, 4, 5), (6,)]


def test_without_partial_level2_the_tail_goes_to_level3():
    plan = plan_for(70, keep_partial_level2=False)
    assert len(plan.level2) == 2 and plan.level3.tail == (6,)
    plan = plan_for(25, keep_partial_level2=False)  # 3 windows: a full group
    assert len(plan.level2) == 1 and plan.level3.tail == ()
    plan = plan_for(15, keep_partial_level2=False)
    assert plan.level2 == [] and plan.level3.tail == (0, 1)


def test_frame_cap_skips_windows_without_frames():
    plan = plan_for(600, max_frames=30)  # one frame every ~20 s
    assert plan.frame_count == 30 and plan.capped and plan.skipped_windows > 0
    assert len(plan.level1) + plan.skipped_windows == 60
    assert all(w.frames for w in plan.level1)


def test_options_validate_types_and_mode():
    assert SynthOptions(types=("camera direction",)).types == ("Camera Direction",)
    with pytest.raises(ValueError, match="Camera Direction"):
        SynthOptions(types=("Camera Angle",))
    with pytest.raises(ValueError):
        SynthOptions(qa_mode="both")
    assert SynthOptions(qa_mode="joint").qa_calls() == 1 and SynthOptions().qa_calls() == 16


def test_prompts_are_in_one_place_and_versioned():
    assert synth.PROMPT_VERSION
    assert set(synth.QA_DEMOS) == set(ALL_TYPES)
    per_type = synth.qa_prompt("A red square moves.", ["Speed"])
    assert per_type.startswith("Here is a detailed description of a video:\n\"\"\"\nA red square moves.")
    assert '"Speed"' in per_type and "None" in per_type
    joint = synth.qa_prompt("A red square moves.", ["Speed", "Count"])
    assert "- Speed:" in joint and "- Count:" in joint


# --- end to end on the tiny checkpoint --------------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from llava_video_app.sample_videos import make_video

    root = tmp_path_factory.mktemp("synth-videos")
    return {"root": root,
            25: make_video(root / "short.mp4", seconds=25, fps=2, size=(160, 120)),
            70: make_video(root / "sub" / "long.mp4", seconds=70, fps=2, size=(160, 120))}


def tiny_options(**kw):
    quick = GenerationSettings(max_new_tokens=6, ignore_eos=True)  # gibberish, but never empty
    return SynthOptions(description_settings=quick, qa_settings=quick, **kw)


def spy(engine):
    """Record what each model call got."""
    calls = []
    stream, stream_text = engine.stream, engine.stream_text

    def video_call(clip, question, *a, **k):
        calls.append(("video", question, clip))
        return stream(clip, question, *a, **k)

    def text_call(question, *a, **k):
        calls.append(("text", question, None))
        return stream_text(question, *a, **k)

    engine.stream, engine.stream_text = video_call, text_call
    return calls


@pytest.mark.parametrize("seconds,levels", [(25, (3, 1)), (70, (7, 3))])
def test_tiny_levels_windows_and_records(tiny_engine, videos, tmp_path, seconds, levels):
    calls = spy(tiny_engine)
    events = list(synth.synthesize(tiny_engine, videos[seconds], tiny_options(types=("Temporal", "Speed")),
                                   video_root=videos["root"]))
    result = events[-1].result
    assert events[0].kind == "plan" and events[-1].kind == "done"
    assert dict(result.calls) == {"level1": levels[0], "level2": levels[1], "level3": 1, "qa": 2}
    assert len(calls) == sum(result.calls.values()) == events[0].plan.total_steps
    # level 1 sees the frames of its window only (1 fps, original timestamps); levels 2, 3 and QA are text only
    video_calls = [c for c in calls if c[0] == "video"]
    assert len(video_calls) == levels[0]
    for k, (_, prompt, clip) in enumerate(video_calls):
        start, end = 10 * k, min(10 * (k + 1), seconds)
        assert clip.timestamps == pytest.approx(list(range(start, end)))
        assert clip.duration == pytest.approx(seconds) and len(clip.frames) == end - start
        assert f"seconds {start} to {end}" in prompt
        assert ("The part just before" in prompt) == (k > 0)  # the previous level-1 as context
    # recurrent order: each level-2 right after its last level-1, then level 3, then QA
    stages = [e.stage for e in events if e.kind == "step"]
    expected = {25: ["level1"] * 3 + ["level2"], 70: (["level1"] * 3 + ["level2"]) * 2 + ["level1", "level2"]}
    assert stages == expected[seconds] + ["level3", "qa", "qa"]
    assert [e.step for e in events if e.kind == "step"] == list(range(1, len(stages) + 1))
    described = [(e.description.level, e.description.index) for e in events if e.kind == "description"]
    assert [lvl for lvl, _ in described] == [1 if s == "level1" else 2 if s == "level2" else 3
                                             for s in stages if s != "qa"]
    assert result.caption == result.level(3)[0].text != ""
    # records: the caption validates; gibberish QA is counted as unparseable, never crashes
    records = result.records()
    assert len(records["cap"]) == 1
    assert sum(result.rejects.values()) + len(result.pairs) >= 1
    for task, recs in records.items():
        for r in recs:
            assert ds.validate_record(r, task) == []
            assert r["conversations"][0]["value"].startswith("<image>\n")
            assert r["prompt_version"] == synth.PROMPT_VERSION and r["model"] == tiny_engine.model_id
    cap = records["cap"][0]
    assert cap["video"] == Path(videos[seconds]).relative_to(videos["root"]).as_posix()
    assert cap["frames"]["count"] == seconds and cap["windows"]["level1"][-1] == [10 * (levels[0] - 1), seconds]


def test_tiny_all_types_per_type_and_joint(tiny_engine, videos):
    result = synth.run_synthesis(tiny_engine, videos[25], tiny_options())
    assert result.calls["qa"] == 16 and len(result.qa_outputs) == 16
    result = synth.run_synthesis(tiny_engine, videos[25], tiny_options(qa_mode="joint"))
    assert result.calls["qa"] == 1


def test_tiny_stop_event_ends_the_run(tiny_engine, videos):
    stop = threading.Event()
    kinds = []
    for event in synth.synthesize(tiny_engine, videos[25], tiny_options(), stop=stop):
        kinds.append(event.kind)
        if event.kind == "description":
            stop.set()
    assert kinds[-1] == "stopped" and "done" not in kinds and kinds.count("description") == 1
    stop.clear()
    with pytest.raises(synth.SynthStopped):
        synth.run_synthesis(tiny_engine, videos[25], tiny_options(), stop=stop,
                            on_event=lambda e: stop.set() if e.kind == "step" else None)


def test_tiny_batch_output_loads_with_datasets(tiny_engine, videos, tmp_path):
    import datasets

    out = tmp_path / "out"
    summary = synth.run_batch(videos["root"], out, tiny_options(types=("Count",)), engine=tiny_engine,
                              progress=False)
    assert (summary.done, summary.failed) == (2, 0) and summary.records["cap"] == 2
    assert check_dataset(out) == (2, [])
    for path in folder.split_files(out):
        for f in (path, path.with_suffix(".json")):  # JSON Lines and the exported array
            data = datasets.load_dataset("json", data_files=str(f), split="train", cache_dir=str(tmp_path / "hf"))
            assert len(data) == 1 and data[0]["conversations"][0]["value"].startswith("<image>\n")


# --- a scripted engine: known outputs, so the QA records can be checked ----------------------------------

class ScriptedEngine:
    """Engine stand-in: real frames, canned text. QA replies depend on the question type asked."""

    model_id, quant = "scripted-model", "none"

    def __init__(self, fail_on: str | None = None):
        self.calls = Counter()
        self.fail_on = fail_on

    def load_clip(self, path, *, frames=None, start=None, end=None, sample_fps=None, max_frames=None):
        from llava_video_app.video import load_video

        if self.fail_on and self.fail_on in str(path):
            raise ValueError(f"{path}: scripted failure")
        return load_video(path, num_frames=frames, sample_fps=sample_fps, max_frames=max_frames, size=(28, 28))

    def stream(self, video, question, history=(), *, settings=None, stop=None):
        self.calls["video"] += 1
        yield "A red square "
        yield f"moves right at {video.timestamps[0]:.0f}s."

    def stream_text(self, question, history=(), *, settings=None, stop=None):
        self.calls["text"] += 1
        if not question.startswith("Here is a detailed description"):
            yield "A red square moves from left to right <image> while its colour changes."
            return
        kind = re.search(r'of the type "([^"]+)"', question)
        yield self.reply(kind.group(1) if kind else None)

    @staticmethod
    def reply(kind):
        if kind is None:  # joint mode
            return json.dumps([{"Dimension": "Speed", "Question": "How fast does the square move?",
                                "Answer": "Steadily.", "Correct Option": "Steadily",
                                "Wrong Options": ["Very fast", "It stops", "It speeds up"]}])
        if kind == "Count":
            return "None"
        if kind == "Spatial":
            return '{"Question": "Where is the camera?", "Answer": "The description does not specify."}'
        if kind == "Camera Direction":
            return "```json\n{'Question': 'How many squares are there?', 'Answer': 'One.',}\n```"  # duplicate below
        if kind == "Binary":
            return '{"Question": "Is the square red?", "Answer": "Yes.", "Correct Option": "Yes", "Wrong Options": ["No"]}'
        if kind == "Speed":
            return "Sure: {\"Question\": \"Does the square speed up?\", \"Answer\": \"No, it moves ste"  # truncated
        question = "How many squares are there?" if kind == "Temporal" else f"What about {kind.lower()}?"
        return json.dumps({"Dimension": kind, "Question": question, "Answer": f"An answer about {kind}.",
                           "Correct Option": f"Right {kind}", "Wrong Options": ["Wrong one", "Wrong two", "Wrong three"]})


def test_scripted_run_makes_all_three_splits(videos, tmp_path):
    import datasets

    engine = ScriptedEngine()
    out = tmp_path / "out"
    summary = synth.run_batch(videos[70], out, SynthOptions(data_source="My Source"), engine=engine, progress=False,
                              video_root=videos["root"])
    assert summary.done == 1 and engine.calls == {"video": 7, "text": 3 + 1 + 16}
    # 16 types: Count None, Spatial lacks info, Camera Direction duplicates Temporal, Speed truncated
    assert summary.rejects == {"none": 1, "lacks_info": 1, "duplicate": 1, "malformed": 1}
    assert summary.records == {"cap": 1, "oe": 12, "mc": 11} and summary.mc_skipped == 1  # Binary: 1 distractor
    names = sorted(p.name for p in folder.split_files(out))
    assert names == ["1_2_m_my_source_cap_processed.jsonl", "1_2_m_my_source_mc_qa_processed.jsonl",
                     "1_2_m_my_source_oe_qa_processed.jsonl"]
    assert check_dataset(out) == (24, [])
    cap = read_jsonl(out / names[0]).records[0]
    assert "<image>" not in cap["conversations"][1]["value"]  # model text is cleaned of placeholders
    for record in read_jsonl(out / names[1]).records:
        human, answer = (t["value"] for t in record["conversations"])
        assert re.fullmatch(r"<image>\n.+\n(?:[A-E]\. .+\n){3,5}Please respond with only the letter of the correct "
                            r"answer\.", human)
        assert answer == f"{record['answer_letter']}." and record["options"][ord(answer[0]) - 65].startswith("Right")
    oe = {r["question_type"]: r for r in read_jsonl(out / names[2]).records}
    assert set(oe) == set(ALL_TYPES) - {"Count", "Spatial", "Camera Direction", "Speed"}
    assert oe["Temporal"]["id"] == synth.record_id(synth.video_id_for("sub/long.mp4"), "oe", "Temporal")
    for name in names:  # every split loads with datasets, exported arrays too
        data = datasets.load_dataset("json", data_files=str((out / name).with_suffix(".json")), split="train",
                                     cache_dir=str(tmp_path / "hf"))
        assert all(c[0]["value"].startswith("<image>\n") for c in data["conversations"])
    manifest = json.loads(folder.manifest_path(out, synth.video_id_for("sub/long.mp4")).read_text())
    assert manifest["status"] == "done" and [d["level"] for d in manifest["descriptions"]].count(1) == 7


def test_scripted_joint_mode(videos):
    result = synth.run_synthesis(ScriptedEngine(), videos[25], SynthOptions(qa_mode="joint"))
    assert result.calls["qa"] == 1 and [p.question_type for p in result.pairs] == ["Speed"]
    assert len(result.records()["mc"]) == 1


def test_edited_pairs_replace_the_videos_records(videos, tmp_path):
    out = tmp_path / "out"
    synth.run_batch(videos["root"], out, SynthOptions(types=("Temporal", "Plot Understanding", "Attribute Change")),
                    engine=ScriptedEngine(), progress=False)
    vid = synth.video_id_for("short.mp4")
    result = synth.load_result(out, vid)  # back from the manifest, as the UI would
    pairs = [p.to_dict() for p in result.pairs]
    pairs[0]["question"] = "Edited question?"
    pairs[1]["keep"] = False
    synth.save_edited_pairs(out, result, pairs)
    oe = [r for _, r in folder.iter_records(out) if r["task"] == "oe"]
    mine = {r["question_type"]: r["conversations"][0]["value"] for r in oe if r["video_id"] == vid}
    assert mine == {"Temporal": "<image>\nEdited question?", "Attribute Change": "<image>\nWhat about attribute change?"}
    assert len([r for r in oe if r["video_id"] != vid]) == 3  # the other video is untouched
    assert check_dataset(out)[1] == []
    assert synth.load_result(out, vid).pairs[0].question == "Edited question?"
    zip_path = synth.export_run(out)
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "0_30_s_local_oe_qa_processed.json" in names and f"videos/{vid}.json" in names


def test_resume_after_an_interrupted_folder_run(tmp_path):
    from llava_video_app.sample_videos import make_video

    root = tmp_path / "videos"
    for name in ("a", "b", "c"):
        make_video(root / f"{name}.mp4", seconds=12, fps=2, size=(64, 48))
    out = tmp_path / "out"
    options = SynthOptions(types=("Temporal", "Plot Understanding"))
    stop = threading.Event()
    seen = []

    def on_video(path, status, error):
        seen.append((path.name, status))
        stop.set()  # "Ctrl-C" once the first video is saved: the second is interrupted mid-way

    first = synth.run_batch(root, out, options, engine=ScriptedEngine(), progress=False, stop=stop, on_video=on_video)
    assert first.done == 1 and first.stopped and seen == [("a.mp4", "done"), ("b.mp4", "stopped")]
    # a crash after writing records but before the manifest: the video is redone, nothing is duplicated
    folder.manifest_path(out, synth.video_id_for("a.mp4")).unlink()
    second = synth.run_batch(root, out, options, engine=ScriptedEngine(), progress=False)
    assert (second.done, second.skipped, second.failed) == (3, 0, 0)
    assert second.records["cap"] == 2  # a's caption was already there
    third = synth.run_batch(root, out, options, engine=ScriptedEngine(), progress=False)
    assert (third.done, third.skipped) == (0, 3)
    ids = [r["id"] for _, r in folder.iter_records(out)]
    assert len(ids) == len(set(ids)) == 3 * (1 + 2 + 2)
    assert {r["video"] for _, r in folder.iter_records(out)} == {"a.mp4", "b.mp4", "c.mp4"}


def test_a_failing_video_is_logged_and_the_batch_goes_on(videos, tmp_path):
    out = tmp_path / "out"
    summary = synth.run_batch(videos["root"], out, SynthOptions(types=("Temporal",)),
                              engine=ScriptedEngine(fail_on="short.mp4"), progress=False)
    assert (summary.done, summary.failed) == (1, 1) and "scripted failure" in summary.format()
    assert "short.mp4" in (out / "errors.log").read_text()
    manifest = json.loads(folder.manifest_path(out, synth.video_id_for("short.mp4")).read_text())
    assert manifest["status"] == "failed"
    again = synth.run_batch(videos["root"], out, SynthOptions(types=("Temporal",)), engine=ScriptedEngine(),
                            progress=False)
    assert (again.done, again.skipped) == (1, 1)  # the failed one is retried


def test_an_engine_that_cannot_load_stops_the_batch(videos, tmp_path):
    def broken():
        raise FileNotFoundError("no such model: nowhere/model")

    with pytest.raises(FileNotFoundError, match="no such model"):
        synth.run_batch(videos["root"], tmp_path / "out", make_engine=broken, progress=False)


# --- the CLI ------------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "llava_video_app.cli"]


@pytest.mark.slow
def test_cli_synth_on_a_folder_then_resume(tiny_checkpoint, tmp_path):
    from llava_video_app.sample_videos import make_video

    root = tmp_path / "videos"
    make_video(root / "one.mp4", seconds=14, fps=2, size=(64, 48))
    make_video(root / "nested" / "two.webm", seconds=8, fps=2, size=(64, 48), codec="vp9")
    (root / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    args = [*CLI, "synth", str(root), "--out", str(out), "--types", "Temporal,Camera Direction", "--types", "Speed",
            "--max-frames", "60", "--data-source", "test", "--model", str(tiny_checkpoint), "--quant", "fp32",
            "--device", "cpu", "--max-new-tokens", "4", "--qa-max-new-tokens", "4", "--quiet"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "2 done" in run.stdout and "cap 2" in run.stdout and "qa 6" in run.stdout
    assert check_dataset(out)[1] == []
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 done, 2 skipped" in again.stdout
    bad = subprocess.run([*CLI, "synth", str(root), "--out", str(out), "--types", "Smell"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "Camera Direction" in bad.stderr and "Traceback" not in bad.stderr
