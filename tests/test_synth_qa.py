"""A QA call's output -> pairs (synth/qa.py): parsing and filters on a corpus of real-looking and
broken model outputs, and multiple choice."""

from __future__ import annotations

from collections import Counter

import pytest

from llava_video_app.prompts import QUESTION_TYPES
from llava_video_app.synth import qa
from llava_video_app.synth.qa import QAPair

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
    pairs = qa.pairs_from_output(text, expected_type=expected_type, allowed_types=ALL_TYPES, rejects=counted)
    assert [p.question for p in pairs] == questions
    assert dict(counted) == rejects
    for pair in pairs:
        assert pair.question_type in ALL_TYPES and pair.answer
        if expected_type:
            assert pair.question_type == expected_type


def test_parsed_fields_and_options():
    [pair] = qa.pairs_from_output(GOOD, expected_type="Count", allowed_types=ALL_TYPES, rejects=Counter())
    assert (pair.correct_option, pair.wrong_options) == ("One", ["Two", "Three", "Four"])
    # options given with letters, or as a dict, are cleaned up
    text = '{"Question": "Q?", "Answer": "A.", "Options": {"A": "A. red", "B": "(B) blue", "C": "green"}}'
    [pair] = qa.pairs_from_output(text, expected_type="Count", allowed_types=ALL_TYPES, rejects=Counter())
    assert pair.wrong_options == ["red", "blue", "green"]


def test_the_parser_never_raises_on_random_junk():
    import random

    rng = random.Random(0)
    alphabet = '{}[]",:\'` \nNoneTrueabc123\\'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        qa.pairs_from_output(text, expected_type=None, allowed_types=ALL_TYPES, rejects=Counter())


@pytest.mark.parametrize("answer", [
    "The description does not specify.", "It doesn't mention the colour.", "This is not mentioned in the video.",
    "Cannot be determined from the description.", "Unknown", "It is unclear what he holds.",
    "There is no information about the weather.", "Not specified.", "It is impossible to tell.",
])
def test_lacks_info_matches(answer):
    assert qa.lacks_info(answer)


@pytest.mark.parametrize("answer", [
    "No, the gardener does not start the lawnmower.", "The square moves from left to right.",
    "She picks up an unknown object and smiles.", "Yes.", "Three times.",
])
def test_lacks_info_leaves_real_answers(answer):
    assert not qa.lacks_info(answer)


def test_duplicates_by_normalised_question_and_one_pair_per_type():
    rejects = Counter()
    pairs = [QAPair("Count", "How many squares are there?", "One."),
             QAPair("Binary", "how many squares are there", "One."),  # same question, other type
             QAPair("Count", "How many colours?", "Two."),  # second Count
             QAPair("Speed", "How fast?", "Slowly.")]
    kept = qa.filter_pairs(pairs, rejects)
    assert [p.question for p in kept] == ["How many squares are there?", "How fast?"]
    assert rejects == {"duplicate": 1, "extra_for_type": 1}


# --- multiple choice ------------------------------------------------------------------------------

def test_multiple_choice_is_shuffled_stably_with_one_correct_letter():
    pair = QAPair("Count", "How many squares?", "There is one square.", "One", ["Two", "Three", "Four", "Five", "Six"])
    item = qa.make_multiple_choice(pair, "v_mc_count")
    assert len(item.options) == 5 and item.options[item.answer_index] == "One"
    assert sorted(item.options) == sorted(["One", "Two", "Three", "Four", "Five"])
    again = qa.make_multiple_choice(pair, "v_mc_count")
    assert (again.options, again.letter, again.seed) == (item.options, item.letter, item.seed)
    letters = {qa.make_multiple_choice(pair, f"video{i}_mc_count").letter for i in range(40)}
    assert len(letters) >= 4  # the correct answer is not always in the same place


def test_multiple_choice_needs_two_distinct_distractors():
    assert qa.make_multiple_choice(QAPair("Binary", "Is it red?", "Yes.", "Yes", ["No"]), "x") is None
    assert qa.make_multiple_choice(QAPair("Count", "How many?", "One.", "One", ["one", "Two", "two."]), "x") is None
    item = qa.make_multiple_choice(QAPair("Count", "How many?", "One.", None, ["Two", "Three"]), "x")
    assert len(item.options) == 3 and item.options[item.answer_index] == "One."  # falls back to the answer
