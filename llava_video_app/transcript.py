"""Conversations as files: one JSON schema for a conversation and for a whole session's history
(`export`), and the same as Markdown for reading (`to_markdown`).

A conversation is {"video": {"name", "sha256", "bytes"}, "frames", "trim": {"start", "end"},
"turns": [{"question", "answer", "provenance"}]}, each provenance a provenance.Provenance.to_dict();
a comparison's answers are conversations marked with "compare": {"variant", "differs", "reused"};
an export wraps a list of them: {"schema": SCHEMA, "exported": ISO time, "conversations": [...]}.
Torch-free.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

from .provenance import summary_of

SCHEMA = "llava-video/conversations/1"


def export(conversations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The export of `conversations` (one, or a session's history), oldest first."""
    return {"schema": SCHEMA, "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "conversations": [dict(c) for c in conversations]}


def to_json(exported: Mapping[str, Any]) -> str:
    return json.dumps(exported, ensure_ascii=False, indent=2) + "\n"


def trim_text(trim: Mapping[str, Any] | None) -> str:
    trim = trim or {}
    if trim.get("start") is None and trim.get("end") is None:
        return "the whole video"
    end = "the end" if trim.get("end") is None else f"{trim['end']:g} s"
    return f"{trim.get('start') or 0:g} s to {end}"


def to_markdown(exported: Mapping[str, Any]) -> str:
    """The export for a person: each conversation's video and settings, each question and answer,
    and under each answer the line that says how it was made."""
    conversations = exported.get("conversations", [])
    lines = ["# LLaVA-Video conversations", "",
             f"Exported {exported.get('exported', '')}: {len(conversations)} conversation(s).", ""]
    for n, conversation in enumerate(conversations, 1):
        video = conversation.get("video") or {}
        sha = f" (sha256 `{video['sha256']}`)" if video.get("sha256") else ""
        lines += [f"## {n}. {video.get('name', 'no video')}", "",
                  f"{conversation.get('frames')} frames of {trim_text(conversation.get('trim'))}{sha}", ""]
        compared = conversation.get("compare")  # one variant of a comparison (compare.as_conversations)
        if compared:
            differs = ", ".join(f"{name} {value}" for name, value in (compared.get("differs") or {}).items())
            lines += [f"Variant: {compared.get('variant')}" + (f" (differs: {differs})" if differs else ""), ""]
        for turn in conversation.get("turns", []):
            lines += [f"**Question:** {turn.get('question', '')}", "", f"**Answer:** {turn.get('answer', '')}", ""]
            if turn.get("provenance"):
                lines += [f"> {summary_of(turn['provenance'])}", ""]
    return "\n".join(lines)
