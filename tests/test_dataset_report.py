"""`llava-video dataset stats|check|export` (dataset_report.py, the CLI): counts per split, type and
length, every bad line reported, the public dataset's .json arrays read too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llava_video_app.dataset_report import check_dataset, dataset_stats

CLI = [sys.executable, "-m", "llava_video_app.cli"]
ROOT = Path(__file__).resolve().parents[1]


def test_stats_per_split_type_and_length(dataset_folder):
    stats = dataset_stats(dataset_folder).to_dict()
    assert stats["records"] == 5 and stats["by_task"] == {"cap": 1, "oe": 3, "mc": 1}
    assert stats["by_length"] == {"0-30s": 2, "30-60s": 1, "1-2min": 1, "2-3min": 0, "longer": 1}
    assert stats["by_question_type"] == {"Temporal": 5}


def test_check_passes_then_reports_each_bad_line(record, dataset_folder):
    assert check_dataset(dataset_folder) == (5, [])
    bad = dataset_folder / "0_30_s_test_oe_qa_processed.jsonl"
    broken = record("o2")  # same id as in another file
    broken["conversations"][0]["value"] = "no image tag"
    with open(bad, "a") as f:
        f.write("{oops\n" + json.dumps(broken) + "\n")
    checked, errors = check_dataset(dataset_folder)
    text = [str(e) for e in errors]
    assert checked == 6
    assert any(t.endswith(":2: not valid JSON (Expecting property name enclosed in double quotes at column 2)")
               for t in text), text
    assert any(":3: the first human turn must start with" in t for t in text)
    assert any("30_60_s_test_oe_qa_processed.jsonl:1: id 'o2' already used at 0_30_s_test_oe_qa_processed.jsonl:3"
               in t for t in text), text


def test_public_format_json_arrays_are_read(tmp_path):
    path = tmp_path / "0_30_s_academic_oe_v0_1_qa_processed.json"
    path.write_text(json.dumps([{"id": "v_1", "video": "academic_source/v.mp4", "data_source": "academic",
                                 "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                   {"from": "gpt", "value": "That."}]}]))
    assert check_dataset(tmp_path) == (1, [])
    stats = dataset_stats(tmp_path).to_dict()
    assert stats["by_task"] == {"oe": 1} and stats["by_length"]["0-30s"] == 1


# --- the CLI -------------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_cli_dataset_stats_check_export(record, dataset_folder, tmp_path):
    result = cli("dataset", "stats", dataset_folder, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["by_task"] == {"cap": 1, "oe": 3, "mc": 1}
    result = cli("dataset", "stats", dataset_folder)
    assert "per split:  cap 1, oe 3, mc 1" in result.stdout and "1-2min 1" in result.stdout
    result = cli("dataset", "check", dataset_folder)
    assert result.returncode == 0 and "5 records checked, 0 errors" in result.stderr
    with open(dataset_folder / "1_2_m_test_mc_qa_processed.jsonl", "a") as f:
        f.write(json.dumps(record("m2", task="mc") | {"conversations": [
            {"from": "human", "value": "<image>\nWhat?\nA. x\nB. y\nC. z\nPlease respond."},
            {"from": "gpt", "value": "D."}]}) + "\n")
    result = cli("dataset", "check", dataset_folder)
    assert result.returncode == 1
    assert "1_2_m_test_mc_qa_processed.jsonl:2: the answer 'D.' is not one of the options A, B, C" in result.stdout
    result = cli("dataset", "export", dataset_folder, "--zip", tmp_path / "all.zip")
    assert result.returncode == 0 and (tmp_path / "all.zip").exists()
    result = cli("dataset", "check", tmp_path / "nowhere")
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
