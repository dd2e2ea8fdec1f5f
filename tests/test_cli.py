"""`llava-video` as a user runs it: a real subprocess for an answer (the process's exit code, stdout,
stderr), the commands' other paths in this process through typer's runner (a new interpreter and a
model load per case would cost seconds each); exit codes and one line per mistake either way."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from llava_video_app import cli

CLI = [sys.executable, "-m", "llava_video_app.cli"]


def run(*args, timeout=180):
    """`llava-video ARGS` in a subprocess."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def invoke(*args):
    """`llava-video ARGS` in this process: returncode, stdout and stderr, like run(). The command must end
    through its own exit (typer.Exit / SystemExit), never an exception of its own (a traceback)."""
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def tiny_flags(checkpoint):
    return ["--model", checkpoint, "--quant", "fp32", "--device", "cpu", "--frames", "8"]


def test_ask_streams_an_answer_and_exits_zero(tiny_checkpoint, sample_video):
    result = run("ask", sample_video, "What happens?", *tiny_flags(tiny_checkpoint), "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr
    assert "visual tokens" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip() and result.stdout.endswith("\n"), "the answer, then a newline"


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n" * 20])
def test_not_a_video_is_one_readable_line_and_a_non_zero_exit(tiny_checkpoint, tmp_path, content):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    result = invoke("ask", bad, "What happens?", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "clip.mp4" in lines[-1]
    assert "Traceback" not in result.stderr


def test_unknown_question_type_and_missing_file_are_user_errors(tiny_checkpoint, sample_video):
    result = invoke("ask", sample_video, "--type", "Camera Angle", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1 and "Camera Direction" in result.stderr and "Traceback" not in result.stderr
    result = invoke("ask", "no/such/video.mp4", "What?", *tiny_flags(tiny_checkpoint))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_inspect_json_has_the_documented_keys(sample_video):
    result = invoke("inspect", sample_video, "--json", "--model", "lmms-lab/LLaVA-Video-7B-Qwen2")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"frame_indices", "timestamps", "duration", "fps", "prompt", "visual_tokens", "tokens_per_frame",
            "newline_position", "pool_mode"} <= set(plan)
    assert len(plan["timestamps"]) == 64 and plan["visual_tokens"] == 13_440


def test_inspect_text_for_a_question_type(sample_video):
    result = invoke("inspect", sample_video, "--type", "Speed", "--model", "lmms-lab/LLaVA-Video-7B-Qwen2", "--frames", "16")
    assert result.returncode == 0, result.stderr
    assert "16 frames x 210" in result.stdout and "speed up or slow down" in result.stdout


def test_tiny_checkpoint_command_builds_a_loadable_checkpoint(tmp_path):
    result = invoke("tiny-checkpoint", tmp_path / "tiny", "--newline-position", "one_token")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert config["mm_newline_position"] == "one_token"


def test_inspect_shows_the_language_models_effective_settings(tiny_checkpoint, sample_video):
    result = invoke("inspect", sample_video, "--json", "--model", tiny_checkpoint, "--quant", "4bit", "--frames", "4")
    assert result.returncode == 0, result.stderr
    lm = json.loads(result.stdout)["language_model"]
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert lm["rope_theta"] == config["rope_theta"] == 1_000_000.0
    assert lm["context_length"] == config["max_position_embeddings"]
    assert (lm["quant"], lm["dtype"]) == ("4bit", "bfloat16")
    text = invoke("inspect", sample_video, "--model", tiny_checkpoint, "--quant", "bf16", "--frames", "4").stdout
    assert "rotary base 1e+06, context 32768 tokens" in text and "bf16 (bfloat16)" in text


def test_a_bad_quant_is_one_line():
    result = invoke("ask", "v.mp4", "What?", "--quant", "int3")
    assert result.returncode == 1
    assert result.stderr == "error: --quant must be one of 4bit, int4, bf16, fp16, fp32, got 'int3'\n"


def test_dataset_export_writes_its_zip_outside_the_folder(dataset_folder, tmp_path):
    result = invoke("dataset", "export", dataset_folder, "--zip", dataset_folder / "data.zip")
    assert result.returncode == 1 and result.stderr.startswith("error: write the zip outside the folder it zips")
    result = invoke("dataset", "export", dataset_folder, "--zip", tmp_path / "data.zip")
    assert result.returncode == 0 and (tmp_path / "data.zip").is_file()


def test_help_names_the_quantisation_a_cuda_device_gets():
    from llava_video_app.config import AppConfig

    text = " ".join(invoke("ask", "--help").stdout.replace("│", " ").split())
    assert f"(default: {AppConfig(device='cuda').resolved().quant} on CUDA, fp32 on CPU)" in text, text


@pytest.mark.parametrize("device,message", [
    ("tpu:9", "error: device must be cpu, cuda or cuda:N (N = a GPU's number), not 'tpu:9'"),
    ("cuda", "error: device cuda was asked for, but torch finds no CUDA GPU on this machine: use --device cpu (or "
             "leave --device out to choose by hardware)")])
def test_a_device_this_machine_lacks_is_one_line_not_a_traceback(device, message, tiny_checkpoint, sample_video):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    flags = [*tiny_flags(tiny_checkpoint)[:4], "--device", device, "--frames", "8"]
    result = invoke("ask", sample_video, "What happens?", *flags)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == message


def test_a_question_that_is_not_valid_utf8_on_the_command_line_is_one_line(tiny_checkpoint, sample_video):
    import os

    question = os.fsdecode(b"What \xff happens?")  # how Python hands an invalid byte of argv over
    result = subprocess.run([*CLI, "ask", str(sample_video), question, *map(str, tiny_flags(tiny_checkpoint))],
                            capture_output=True, text=True, errors="replace", timeout=180)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: the question is not valid text: character 6 is not a "
                                                      "Unicode character (invalid UTF-8 or a lone surrogate); "
                                                      "retype it")


def test_seed_makes_a_sampled_answer_repeatable_and_the_seed_used_is_printed(tiny_checkpoint, sample_video):
    flags = [*tiny_flags(tiny_checkpoint), "--max-new-tokens", "8", "--temperature", "1.5"]
    first = invoke("ask", sample_video, "What happens?", *flags, "--seed", "5")
    again = invoke("ask", sample_video, "What happens?", *flags, "--seed", "5")
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout.strip()
    assert "seed 5]" in first.stderr
    drawn = invoke("caption", sample_video, *flags)
    seed = drawn.stderr.rsplit("seed ", 1)[1].split("]")[0]
    assert invoke("caption", sample_video, *flags, "--seed", seed).stdout == drawn.stdout, "the printed seed repeats it"


def test_a_bad_seed_is_one_line(sample_video):
    result = invoke("ask", sample_video, "What?", "--seed", "-3")
    assert result.returncode == 1 and result.stderr.startswith("error: seed must be a whole number from 0")
