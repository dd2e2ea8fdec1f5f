"""Many new sessions against `python app.py` (bench/sessions.py, smaller): the server's memory and its
upload folder plateau once the session bound (LLAVA_VIDEO_MAX_SESSIONS) is reached and the uploads'
time to live (LLAVA_VIDEO_UPLOAD_TTL_S) has passed. docs/reliability.md has the bigger run's numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_memory_and_the_upload_folder_plateau_over_hundreds_of_new_sessions():
    sys.path.insert(0, str(ROOT / "bench"))
    from sessions import run

    rows = run(ROOT, sessions=240, every=80, env_extra={"LLAVA_VIDEO_MAX_SESSIONS": "30",
                                                         "LLAVA_VIDEO_UPLOAD_TTL_S": "10"},
               report=print, sweep_wait_s=40)
    first, second, third, swept = rows
    assert third["complete"] + third["error"] == 240, "every session answered or refused"
    # Past the bound each new session replaces an old one: the last 80 sessions cost what sessions
    # 81-160 did, or less (unbounded, each kept ~150 KB: 12 MB per 80 sessions).
    print(f"RSS {first['rss_mib']} -> {second['rss_mib']} -> {third['rss_mib']} MiB")
    assert third["rss_mib"] - second["rss_mib"] < 6
    examples = 2  # the app's example videos, which Gradio keeps
    assert swept["upload_files"] <= examples, "every upload deleted once older than its time to live"
