"""The GPU suite and the synthesis benchmark run end to end (on the tiny checkpoint, on CPU), so that
whoever has a GPU next can run them as they are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_its_tables(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--dry-run", "--parts",
                           "int4,restart,synth", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite-dry-run.json").read_text())
    parts = {p["part"]: p for p in report["parts"]}
    assert set(parts) == {"int4", "restart", "synth"} and not any("error" in p for p in parts.values())
    int4 = parts["int4"]
    assert int4["compiled"]["new_tokens"] == 8 and len(int4["compiled"]["follow_ups"]) == 3
    assert int4["eager"]["ttft_s"] >= int4["eager"]["prefill_s"] > 0 and int4["compiled"]["profile"]
    assert int4["eager_more_frames"]["visual_tokens"] == 2 * int4["eager"]["visual_tokens"]
    assert int4["more_compiled_engines"]["ok"] is True
    assert parts["restart"]["compiled"] is True
    assert parts["synth"]["videos_per_hour"] > 0 and parts["synth"]["videos"][0]["calls"]["qa"] == 16
    table = (tmp_path / "gpu_suite-dry-run.md").read_text()
    assert "| int4 | compiled |" in table and "Synthesis:" in table
