"""`llava-video` as a user runs it: real subprocesses for the exit codes, one line per mistake."""

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "llava_video_app.cli"]


def run(*args, timeout=180):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def tiny_flags(checkpoint):
    return ["--model", checkpoint, "--quant", "fp32", "--device", "cpu", "--frames", "8"]


def test_ask_streams_an_answer_and_exits_zero(tiny_checkpoint, sample_video):
    result = run("ask", sample_video, "What happens?", *tiny_flags(tiny_checkpoint), "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr
    assert "visual tokens" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.endswith("\n")


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n" * 20])
def test_not_a_video_is_one_readable_line_and_a_non_zero_exit(tiny_checkpoint, tmp_path, content):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    result = run("ask", bad, "What happens?", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "clip.mp4" in lines[-1]
    assert "Traceback" not in result.stderr


def test_unknown_question_type_and_missing_file_are_user_errors(tiny_checkpoint, sample_video):
    result = run("ask", sample_video, "--type", "Camera Angle", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1 and "Camera Direction" in result.stderr and "Traceback" not in result.stderr
    result = run("ask", "no/such/video.mp4", "What?", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_inspect_json_has_the_documented_keys(sample_video):
    result = run("inspect", sample_video, "--json", "--model", "lmms-lab/LLaVA-Video-7B-Qwen2")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"frame_indices", "timestamps", "duration", "fps", "prompt", "visual_tokens", "tokens_per_frame",
            "newline_position", "pool_mode"} <= set(plan)
    assert len(plan["timestamps"]) == 64 and plan["visual_tokens"] == 13_440


def test_inspect_text_for_a_question_type(sample_video):
    result = run("inspect", sample_video, "--type", "Speed", "--model", "lmms-lab/LLaVA-Video-7B-Qwen2", "--frames", "16")
    assert result.returncode == 0, result.stderr
    assert "16 frames x 210" in result.stdout and "speed up or slow down" in result.stdout


def test_tiny_checkpoint_command_builds_a_loadable_checkpoint(tmp_path):
    result = run("tiny-checkpoint", tmp_path / "tiny", "--newline-position", "one_token")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert config["mm_newline_position"] == "one_token"


def test_inspect_shows_the_language_models_effective_settings(tiny_checkpoint, sample_video):
    result = run("inspect", sample_video, "--json", "--model", tiny_checkpoint, "--quant", "4bit", "--frames", "4")
    assert result.returncode == 0, result.stderr
    lm = json.loads(result.stdout)["language_model"]
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert lm["rope_theta"] == config["rope_theta"] == 1_000_000.0
    assert lm["context_length"] == config["max_position_embeddings"]
    assert (lm["quant"], lm["dtype"]) == ("4bit", "bfloat16")
    text = run("inspect", sample_video, "--model", tiny_checkpoint, "--quant", "bf16", "--frames", "4").stdout
    assert "rotary base 1e+06, context 32768 tokens" in text and "bf16 (bfloat16)" in text
