"""The Ask tab's "Ask again with…" panel (web/compare_panel.py) through its handler, on the tiny
checkpoint: the last question under the current settings and the picked variants, side by side with
the differing settings marked; the answers join the tab's history and its export; refusals are one
warning that leaves the page as it is."""

import json

import gradio as gr
import pytest

from llava_video_app.web.ask_tab import VideoChat
from llava_video_app.web.compare_panel import comparer_of, split_variants


@pytest.fixture
def chat(tiny_engine):
    return VideoChat(tiny_engine)


def _asked(chat, video, question="What happens?"):
    _, _, _, state, _, _ = chat.on_video(str(video))
    outputs = list(chat.ask(str(video), question, 0, None, 8, 6, 0.0, 1.0, state))
    return outputs[-1][1]


def _compare(chat, video, state, picked, question_box=""):
    return list(comparer_of(chat).run_in_page(str(video), question_box, picked, 0, None, 8, 6, 0.0, 1.0, state))


def test_compare_shows_the_answers_side_by_side_and_keeps_them_in_the_history(chat, sample_video):
    state = _asked(chat, sample_video)
    outputs = _compare(chat, sample_video, state, ["frames=4"])
    table, kept, status, stop = outputs[-1]
    assert table.count("class='compare-column'") == 2
    assert "data-variant='as asked'" in table and "data-variant='frames=4'" in table
    assert "<mark>frames: 4</mark>" in table and "<mark>frames: 8</mark>" in table
    assert "reused frames, features" in table  # "as asked" is the answer's own clip, already cached
    assert stop == gr.update(interactive=False)
    # the conversation on screen stays; the two answers join the history before it
    assert kept.turns == state.turns
    compared = [c for c in kept.history() if c.compare]
    assert [c.compare["variant"] for c in compared] == ["as asked", "frames=4"]
    exported = json.loads(open(chat.export(kept, "history", "json")).read())
    variants = [c.get("compare", {}).get("variant") for c in exported["conversations"]]
    assert variants == ["as asked", "frames=4", None]
    assert exported["conversations"][1]["turns"][0]["provenance"]["settings"]["frames"] == 4


def test_while_comparing_the_answers_grow_and_stop_is_live(chat, sample_video):
    state = _asked(chat, sample_video)
    outputs = _compare(chat, sample_video, state, ["temperature=0.7"])
    assert outputs[0][2] == "Comparing…" and outputs[0][3] == gr.update(interactive=True)
    assert len(outputs) > 2, "updates while the answers grow"


@pytest.mark.parametrize("picked, words", [([], "Pick at least one variant"),
                                           (["frames=2", "frames=3", "frames=4", "frames=5"], "at most 3"),
                                           (["pool=median"], "pool must be one of")])
def test_a_refusal_is_one_warning_and_the_page_keeps_what_it_shows(chat, sample_video, monkeypatch, picked, words):
    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    state = _asked(chat, sample_video)
    outputs = _compare(chat, sample_video, state, picked)
    assert len(warned) == 1 and words in warned[0]
    table, kept, _, stop = outputs[-1]
    assert table is gr.skip() or table == gr.skip()
    assert stop == gr.update(interactive=False)


def test_before_any_answer_the_question_box_is_compared(chat, sample_video):
    _, _, _, state, _, _ = chat.on_video(str(sample_video))
    table = _compare(chat, sample_video, state, ["frames=4"], question_box="Is it red?")[-1][0]
    assert "Is it red?" in table and table.count("class='compare-column'") == 2


def test_the_api_takes_variants_one_per_line_or_between_bars():
    assert split_variants("as asked | frames=16\npool=max, route=exact\n") == \
        ["as asked", "frames=16", "pool=max, route=exact"]
    assert split_variants(["frames=4", " "]) == ["frames=4"]
    assert split_variants(None) == []


def test_on_zerogpu_a_comparison_runs_in_one_gpu_slot_with_its_arguments_pickled(tiny_engine, sample_video):
    """spaces.GPU hands a forked worker pickled arguments; here a wrapper does the same in-process."""
    import pickle

    slots = []

    def gpu(task, duration):
        def in_slot(*args):
            slots.append((task.__name__, duration(*args)))
            return task(*pickle.loads(pickle.dumps(args)))
        return in_slot

    chat = VideoChat(tiny_engine, gpu=gpu)
    result = json.loads(comparer_of(chat).api_compare(str(sample_video), "What?", "as asked | frames=4",
                                                      max_new_tokens=4))
    assert [a["variant"] for a in result["answers"]] == ["as asked", "frames=4"] and result["answers"][1]["answer"]
    assert slots == [("_compare", int(30 + 0.25 * 8 + 4 / 20 + 0.25 * 4 + 4 / 20))]  # the app has 8 frames


def test_times_in_a_compared_answer_seek_the_player_and_the_answer_stays_escaped():
    from llava_video_app.compare import VariantAnswer
    from llava_video_app.web.compare_panel import comparison_html

    answer = VariantAnswer("as asked")
    answer.answer = "The <b>turn</b> is at 3.2 s, not at 0:45."
    shown = comparison_html("When?", [answer], {}, duration=8.0)
    assert "The &lt;b&gt;turn&lt;/b&gt; is at <a href=\"#t=3.2\">3.2 s</a>, not at 0:45." in shown  # 0:45 > 8 s
