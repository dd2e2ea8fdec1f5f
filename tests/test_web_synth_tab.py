"""The "Generate synthetic QA" tab (web/synth_tab.py), its handlers over the tiny engine: streamed progress and level
texts, the QA table, edits saved to the output folder, Stop, bad input, the wiring. The model is
random: QA calls are answered by a script (the descriptions come from the tiny model), and only
structure is checked."""

import json
import threading
from pathlib import Path

import gradio as gr
import pytest

from llava_video_app import output_folder as folder
from llava_video_app.prompts import QUESTION_TYPES
from llava_video_app.sample_videos import make_video
from llava_video_app.synth.result import SynthResult
from llava_video_app.web.app import build_ui
from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.serving import MODEL_EVENTS, SYNTH_EVENTS, ModelRunner
from llava_video_app.web.synth_tab import (
    SYNTH_COLUMNS,
    SynthPanel,
    synth_source,
    synth_tab,
)

TYPES = ["Temporal", "Camera Direction", "Count"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(make_video(tmp_path_factory.mktemp("synth-videos") / "clip.mp4", seconds=12, fps=5, size=(160, 120)))


def _pair(question_type: str) -> dict:
    kind = question_type.lower()
    return {"Question": f"What about {kind} in the video?", "Answer": f"The {kind} answer.",
            "Correct Option": "Option one", "Wrong Options": ["Option two", "Option three", "Option four"]}


@pytest.fixture
def panel(tiny_engine, tmp_path, scripted_qa):
    """Descriptions from the tiny model; each QA call answered with a valid JSON object of its type."""
    scripted_qa(tiny_engine, _pair)
    return SynthPanel(ModelRunner(tiny_engine), out_dir=tmp_path / "out")


def _generate(panel, video, types=TYPES, tokens=4):
    return list(panel.generate(video, types, tokens, 64))


def _value(outputs, column):
    """The last value given to a column (gr.skip() updates are not values)."""
    values = [o[column] for o in outputs if not isinstance(o[column], dict)]
    return values[-1] if values else None


def test_generate_streams_progress_levels_and_ends_with_a_table(panel, video):
    outputs = _generate(panel, video)
    assert all(len(o) == 6 for o in outputs)
    progress = [o[0] for o in outputs]
    steps = [p for p in progress if p.startswith("step ")]
    # 12 s: 2 level-1 windows (0-10, 10-12), 1 level-2, 1 level-3, 3 QA calls = 7 steps
    assert steps[0] == "step 1/7: level-1 window 0-10 s"
    assert "step 2/7: level-1 window 10-12 s" in steps
    assert any(p.startswith("step 3/7: level-2 window") for p in steps)
    assert "step 5/7: QA: Temporal" in steps and steps[-1] == "step 7/7: QA: Count"
    assert progress[-1].startswith("Done: 3 QA pairs")
    level1 = _value(outputs, 1)
    assert level1.startswith("[0-10 s]") and "[10-12 s]" in level1
    assert _value(outputs, 2).startswith("[0-12 s]")
    table, result = outputs[-1][4], outputs[-1][5]
    assert [row[1] for row in table] == TYPES and all(row[0] is True and len(row) == 5 for row in table)
    assert isinstance(result, SynthResult) and len(result.level(1)) == 2
    assert _value(outputs, 3) == result.caption, "the level-3 box shows the caption"


def test_edits_and_unticks_are_saved_and_downloadable(panel, video):
    outputs = _generate(panel, video)
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    table[0][0] = False  # untick Temporal
    table[1][3] = "It pans to the left."  # new answer for Camera Direction
    message = panel.save(result, table)
    assert str(panel.out_dir.resolve()) in message and "2 open-ended" in message
    assert message.endswith("**Not saved as shown:**\n- row 2 (Camera Direction): no multiple-choice record: the "
                            "answer was edited and is none of the options (they were made for the old answer); edit "
                            "the options too, marking the correct one with ✓")
    records = {r["question_type"]: r for _, r in folder.iter_records(panel.out_dir) if r["task"] == "oe"}
    assert set(records) == {"Camera Direction", "Count"}
    assert records["Camera Direction"]["conversations"][1]["value"] == "It pans to the left."
    mc = [r for _, r in folder.iter_records(panel.out_dir) if r["task"] == "mc"]
    assert [r["question_type"] for r in mc] == ["Count"], "an edited answer drops its old options"
    manifest = json.loads(folder.manifest_path(panel.out_dir, result.video_id).read_text())
    assert manifest["status"] == "done"
    # a pandas table (what gr.Dataframe gives) works too; re-ticking brings Temporal back
    import pandas as pd

    table[0][0] = True
    panel.save(result, pd.DataFrame(table, columns=SYNTH_COLUMNS))
    assert {r["question_type"] for _, r in folder.iter_records(panel.out_dir) if r["task"] == "oe"} == {
        "Temporal", "Camera Direction", "Count"}
    zip_path = panel.download()
    assert zip_path.endswith(".zip")
    assert not Path(zip_path).resolve().is_relative_to(panel.out_dir.resolve()), "the zip is not written into the data"
    import zipfile

    assert any(n.startswith("videos/") for n in zipfile.ZipFile(zip_path).namelist())
    assert not list(panel.out_dir.rglob("*.zip"))


class _Visitor:
    """What Gradio passes a handler as gr.Request: the browser session's hash (chosen by the client)."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def _zip_text(path: str) -> str:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return "".join(zf.read(name).decode() for name in zf.namelist())


def test_on_a_shared_app_each_browser_session_saves_and_downloads_only_its_own(tiny_engine, tmp_path, scripted_qa,
                                                                               video):
    scripted_qa(tiny_engine, _pair)
    panel = SynthPanel(ModelRunner(tiny_engine), out_dir=tmp_path / "out", per_session=True)
    alice, bob, mallory = _Visitor("alice-tab"), _Visitor("bob-tab"), _Visitor("../../..")
    outputs = _generate(panel, video, types=["Count"])
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    with pytest.warns(UserWarning, match="Nothing saved yet"):
        assert panel.download(alice) is None

    table[0][3] = "Alice's own answer."
    message = panel.save(result, table, alice)
    assert message.startswith("Saved to this browser session's folder:") and str(tmp_path) not in message
    with pytest.warns(UserWarning, match="Nothing saved yet"):
        assert panel.download(bob) is None, "a fresh visitor gets nothing of Alice's"
    table[0][3] = "Bob's own answer."
    panel.save(result, table, bob)
    alice_zip, bob_zip = panel.download(alice), panel.download(bob)
    assert "Alice's own answer." in _zip_text(alice_zip) and "Bob's own answer." not in _zip_text(alice_zip)
    assert "Bob's own answer." in _zip_text(bob_zip) and "Alice's own answer." not in _zip_text(bob_zip)
    assert alice_zip != bob_zip

    sessions = tmp_path / "out" / "sessions"
    assert sorted(len(p.name) for p in sessions.iterdir()) == [32, 32], "hashes, not the names the clients chose"
    assert not list((tmp_path / "out").glob("*.jsonl")), "nothing in the shared folder itself"
    assert panel.folder_for(mallory).resolve().parent == sessions.resolve(), "no way out of sessions/"
    for path in (alice_zip, bob_zip):
        assert not Path(path).resolve().is_relative_to((tmp_path / "out").resolve())


def test_stop_ends_the_generation(panel, video):
    gen = panel.generate(video, TYPES, 64, 64)
    first = [next(gen) for _ in range(3)]
    assert first[-1][0].startswith("step 1/")
    threading.Thread(target=panel.stop).start()
    rest = list(gen)
    assert rest[-1][0].startswith("Stopped at step")
    assert not any(o[5] is not None and not isinstance(o[5], dict) for o in rest), "no result after Stop"


def test_bad_input_is_a_message(panel, tmp_path):
    for video, words in ((None, "Upload a video"), ("", "Upload a video")):
        outputs = list(panel.generate(video, TYPES, 4, 4))
        assert len(outputs) == 1 and words in outputs[0][0]
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video")
    outputs = list(panel.generate(str(junk), TYPES, 4, 4))
    assert outputs[-1][0].startswith("Not a usable video") and "notes.mp4" in outputs[-1][0]
    assert str(tmp_path) not in outputs[-1][0]
    assert "Tick at least one" in list(panel.generate(str(junk), [], 4, 4))[0][0]
    assert "generate first" in panel.save(None, [])
    with pytest.raises(gr.Error):
        list(panel.api_synth(None))


def test_api_synth_streams_progress_then_json(panel, video):
    panel.api_description_tokens, panel.api_qa_tokens = 4, 64
    outputs = list(panel.api_synth(video))
    assert outputs[0] == "step 1/20: level1" and outputs[-2] == "step 20/20: qa"  # 2 + 1 + 1 + 16 calls
    final = json.loads(outputs[-1])
    assert set(final) == {"caption", "pairs", "records", "summary"}
    assert len(final["pairs"]) == 16 and len(final["records"]["oe"]) == 16
    assert {p["question_type"] for p in final["pairs"]} == {t.name for t in QUESTION_TYPES}


def test_build_ui_wires_the_tab_and_the_synth_endpoint(tiny_engine, tmp_path):
    demo = build_ui(tiny_engine, extra_tabs=[lambda model, ask_video: synth_tab(model, ask_video, tmp_path)])
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    # one synthesis at a time, in a queue of its own; its model calls take turns with the answers' (gpu_queue)
    assert fns["synth"].concurrency_id == SYNTH_EVENTS and fns["synth"].concurrency_limit == 1
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == MODEL_EVENTS]
    assert len(model_events) == 9  # ask, regenerate, edit, Compare, the five endpoints
    assert len([fn for fn in demo.fns.values() if fn.concurrency_id == SYNTH_EVENTS]) == 2  # Generate, /synth
    api = demo.get_api_info()["named_endpoints"]
    assert set(api) == {"/caption", "/ask", "/ask_type", "/ask_record", "/compare", "/synth"}
    assert [p["parameter_name"] for p in api["/synth"]["parameters"]] == ["video"]
    stops = [fn for fn in demo.fns.values() if fn.cancels]
    assert len(stops) >= 3  # Ask's Stop and Clear, Generate's Stop


def test_generate_uses_the_ask_tabs_video_unless_another_is_uploaded_here(panel, video, tmp_path):
    other = str(make_video(tmp_path / "other.mp4", seconds=3, fps=5, size=(160, 120)))

    def generated_from(own, ask_video):
        outputs = list(panel.generate(own, ["Count"], 4, 64, ask_video))
        assert outputs[-1][0].startswith("Done"), outputs[-1][0]
        return outputs[-1][5]

    from_ask = generated_from(None, video)  # nothing uploaded here: the Ask tab's video
    assert Path(from_ask.video_path) == Path(video).resolve() and from_ask.duration == pytest.approx(12, abs=0.5)
    assert from_ask.level(1)[-1].end == pytest.approx(12, abs=0.5)
    assert Path(generated_from(other, video).video_path) == Path(other).resolve()  # uploaded here: that one
    assert "Upload a video" in list(panel.generate(None, ["Count"], 4, 64, None))[0][0]


def test_the_tab_says_which_video_generate_will_use(video, tmp_path):
    other = str(make_video(tmp_path / "other.mp4", seconds=3, fps=5, size=(160, 120)))
    assert synth_source(None, video) == "Video: `clip.mp4` (12.00 s), the Ask tab's; upload one here to use another."
    assert synth_source(other, video) == "Video: `other.mp4` (3.00 s), uploaded here; clear it to use the Ask tab's."
    assert synth_source(other, None) == "Video: `other.mp4` (3.00 s), uploaded here."
    assert synth_source(None, None).startswith("No video yet")
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video")
    assert synth_source(None, str(junk)).startswith("Video: `notes.mp4`, the Ask tab's")


def test_the_tab_is_wired_to_the_ask_tabs_video(tiny_engine, tmp_path):
    chat = VideoChat(tiny_engine)
    given = []

    def tab(model, ask_video):
        given.append((synth_tab(model, ask_video, tmp_path), ask_video))

    demo = build_ui(chat, extra_tabs=[tab])
    (panel, ask_video), = given
    assert ask_video.elem_id == "video" and panel.model is chat.model, "the Ask tab's video and model runner"
    fns = list(demo.fns.values())
    generate = next(fn for fn in fns if fn.fn == panel.generate)
    assert generate.inputs[0].elem_id == "synth-video" and generate.inputs[-1] is ask_video
    source_updates = [fn for fn in fns if fn.fn is synth_source]
    assert {fn.targets[0][0] for fn in source_updates} == {generate.inputs[0]._id, ask_video._id}
    assert all(fn.outputs[0].elem_id == "synth-source" for fn in source_updates)


# --- the QA table (issue 20 item 11): the options shown, edits that keep or drop a record said -------------

def _mc_records(panel) -> dict[str, dict]:
    return {r["question_type"]: r for _, r in folder.iter_records(panel.out_dir) if r["task"] == "mc"}


def test_the_table_shows_each_pairs_options_as_they_will_be_saved(panel, video):
    outputs = _generate(panel, video)
    table, result = outputs[-1][4], outputs[-1][5]
    assert SYNTH_COLUMNS == ["keep", "type", "question", "answer", "options"], "keep first, options last"
    panel.save(result, table)
    saved = _mc_records(panel)
    assert set(saved) == set(TYPES)
    for row in table:
        record = saved[row[1]]
        shown = row[4].splitlines()
        # the saved order and letters, the correct one marked
        assert [line.removesuffix(" ✓") for line in shown] == [f"{letter}. {option}" for letter, option in
                                                               zip("ABCDE", record["options"])]
        assert [line[0] for line in shown if line.endswith(" ✓")] == [record["answer_letter"]]
        assert record["options"][ord(record["answer_letter"]) - 65] == "Option one"


def test_an_answer_edited_to_another_option_makes_it_the_correct_one(panel, video):
    outputs = _generate(panel, video)
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    table[0][3] = "option three"  # Temporal: the answer is now one of the distractors
    message = panel.save(result, table)
    assert "Not saved as shown" not in message and "3 multiple-choice" in message
    temporal = _mc_records(panel)["Temporal"]
    assert temporal["options"][ord(temporal["answer_letter"]) - 65] == "Option three"


def test_edited_options_are_saved_as_written_or_the_row_says_why_not(panel, video):
    outputs = _generate(panel, video)
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    table[0][4] = "A. Early\nB. Late ✓\nC. Never"  # Temporal: new options, one marked
    table[1][4] = "A. Left\nB. Right\nC. Up"  # Camera Direction: none marked
    table[2][4] = ""  # Count: options cleared
    message = panel.save(result, table)
    assert message.endswith("**Not saved as shown:**\n"
                            "- row 2 (Camera Direction): no multiple-choice record: mark exactly one option as "
                            "correct with ✓\n"
                            "- row 3 (Count): no multiple-choice record: its options were cleared")
    saved = _mc_records(panel)
    assert set(saved) == {"Temporal"}
    assert sorted(saved["Temporal"]["options"]) == ["Early", "Late", "Never"]
    assert saved["Temporal"]["options"][ord(saved["Temporal"]["answer_letter"]) - 65] == "Late"


def test_every_other_row_not_saved_as_shown_is_named(panel, video):
    outputs = _generate(panel, video)
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    table[0][2] = ""  # Temporal: question emptied
    table[1][1] = "Camera Angle"  # not a type: the row keeps its own
    table[2][4] = "A. One ✓\nB. one\nC. ONE!"  # Count: the wrong options repeat the right one
    table.append([True, "Nonsense", "A new question?", "A new answer.", ""])
    table.append([True, "Speed", "How fast?", "Slowly.", ""])  # a new open-ended pair: nothing to say
    message = panel.save(result, table)
    notes = message.split("**Not saved as shown:**\n")[1].splitlines()
    assert notes == ["- row 1 (Temporal): the question is empty, so the row is not saved",
                     "- row 2: 'Camera Angle' is not a question type; saved as Camera Direction",
                     "- row 3 (Count): no multiple-choice record: it needs at least two distinct wrong options",
                     "- row 4: 'Nonsense' is not a question type, so the row is not saved"]
    oe = {r["question_type"] for _, r in folder.iter_records(panel.out_dir) if r["task"] == "oe"}
    assert oe == {"Camera Direction", "Count", "Speed"}
    assert set(_mc_records(panel)) == {"Camera Direction"}


def test_unticked_rows_and_an_unchanged_table_save_without_notes(panel, video):
    outputs = _generate(panel, video)
    table, result = [list(r) for r in outputs[-1][4]], outputs[-1][5]
    table[0][0] = False
    table[0][3] = "edited but dropped anyway"  # unticked: its records are not wanted, nothing to warn about
    message = panel.save(result, table)
    assert "Not saved as shown" not in message and "2 multiple-choice" in message
