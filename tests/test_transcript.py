"""Conversations as files (transcript.py): one JSON schema for a conversation and a history, and the
same content as Markdown."""

import json

from llava_video_app import transcript

PROVENANCE = {"settings": {"frames": 16, "temperature": 0.7, "top_p": 0.9, "pool_mode": "average", "model": "m",
                           "quant": "4bit"}, "video": {"name": "clip.mp4", "sha256": "ab" * 32, "bytes": 10},
              "trim": {"start": 1.5, "end": None}, "seed": 5, "visual_tokens": 100, "prompt_tokens": 140,
              "new_tokens": 9, "tokens_per_s": 20.0, "timings": {"time_to_first_token": 0.5}}


def _conversation(question="What turns?", answer="The car, at 3.2 s."):
    return {"video": PROVENANCE["video"], "frames": 16, "trim": {"start": 1.5, "end": None},
            "turns": [{"question": question, "answer": answer, "provenance": PROVENANCE}]}


def test_json_export_is_one_schema_for_one_or_many_conversations():
    one = json.loads(transcript.to_json(transcript.export([_conversation()])))
    many = json.loads(transcript.to_json(transcript.export([_conversation(), _conversation("Why?", "Because.")])))
    for exported in (one, many):
        assert exported["schema"] == transcript.SCHEMA and exported["exported"].endswith("Z")
        assert all(set(c) == {"video", "frames", "trim", "turns"} for c in exported["conversations"])
    assert many["conversations"][1]["turns"][0] == {"question": "Why?", "answer": "Because.", "provenance": PROVENANCE}


def test_markdown_has_every_question_answer_and_how_it_was_made():
    text = transcript.to_markdown(transcript.export([_conversation(), _conversation("Why?", "Because.")]))
    assert text.count("## ") == 2 and "## 1. clip.mp4" in text and "## 2. clip.mp4" in text
    assert "**Question:** What turns?" in text and "**Answer:** The car, at 3.2 s." in text
    assert "**Question:** Why?" in text and "**Answer:** Because." in text
    assert "16 frames of 1.5 s to the end" in text and "ab" * 32 in text
    assert "seed 5" in text and "temperature 0.7, top-p 0.9" in text and "m (4bit)" in text
