"""The GPU suite and the synthesis benchmark run end to end (on the tiny checkpoint, on CPU), so that
whoever has a GPU next can run them as they are: a part that fails or is killed keeps what it measured,
and the report is written whatever is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "bench" / "gpu_suite.py"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_report_is_written_whatever_figures_a_part_is_missing():
    suite = load("gpu_suite")
    results = [
        {"part": "preflight", "versions": {"torch": "2.11.0 (/x)"}},
        {"part": "nf4", "quant": "4bit", "eager": {"frames": 64, "ttft_s": 1.2}, "error": "killed by signal 9"},
        {"part": "restart", "quant": "4bit", "error": "stopped at its time limit, 300 s"},
        {"part": "int4", "quant": "int4", "load_s": 20.0, "compiled": {"follow_ups": [{}]},
         "more_compiled_engines": {}},
        {"part": "bf16", "quant": "bf16", "compiled": {"new_tokens": 256, "frames": 64}},
        {"part": "synth", "error": "exit code 1"},
    ]
    table = suite.markdown(results, {"int4": {"cosine": 0.99}})
    assert "| 4bit | eager | 64 | - | - | - | 1.2 (- / - / -) | - | - |" in table
    assert "| int4 | compiled | - | 20.0 | - | - | - (- / - / -) | - | - |" in table
    assert "| bf16 | compiled | 64 | - | - | - | - (- / - / -) | - | - |" in table
    assert "int4: max|diff|/std -, cosine 0.99, same top-1 -" in table
    assert "Did not finish" in table and "nf4 (killed by signal 9)" in table and "synth (exit code 1)" in table
    assert "Restart" not in table and "Synthesis:" not in table  # nothing measured, nothing claimed


def test_the_figures_choose_int4_only_when_it_is_faster_and_as_close_to_bf16():
    suite = load("gpu_suite")

    def parts(int4_tok_s, nf4_tok_s):
        return [{"part": "nf4", "quant": "4bit", "compiled": {"decode_tok_s": nf4_tok_s}},
                {"part": "restart", "quant": "4bit", "compiled": True},  # the default route's restart: a flag
                {"part": "int4", "quant": "int4", "compiled": {"decode_tok_s": int4_tok_s}}]

    nf4 = {"max_abs_diff_over_std": 0.35, "cosine": 0.995, "same_top1": True}
    closer = {"max_abs_diff_over_std": 0.30, "cosine": 0.996, "same_top1": True}
    assert suite.choose_default(parts(150, 76), {"nf4": nf4, "int4": closer})[0] == "int4"
    assert suite.choose_default(parts(70, 76), {"nf4": nf4, "int4": closer})[0] == "4bit"  # slower
    further = {**closer, "cosine": 0.99}
    assert suite.choose_default(parts(150, 76), {"nf4": nf4, "int4": further})[0] == "4bit"
    assert suite.choose_default(parts(150, 76), {"nf4": nf4, "int4": {**closer, "same_top1": False}})[0] == "4bit"
    assert suite.choose_default(parts(150, None), {"nf4": nf4, "int4": closer})[0] is None  # nf4 cut short
    assert suite.choose_default(parts(150, 76), {"int4": closer})[0] is None  # no bf16 logits for nf4
    table = suite.markdown(parts(150, 76), {"nf4": nf4, "int4": closer})
    assert "The CUDA default these figures choose: int4 (int4 150 vs NF4 76 compiled tokens/s;" in table


def test_a_record_keeps_every_figure_up_to_a_write_cut_off(tmp_path):
    suite = load("gpu_suite")
    rec = suite.Record(tmp_path / "int4.jsonl")
    rec["load_s"] = 1.5
    rec["eager"] = {"ttft_s": 0.5}
    rec.append(("eager", "follow_ups"), {"ttft_s": 0.1})
    rec.append(("eager", "follow_ups"), {"ttft_s": 0.2})
    rec[("compiled", "profile")] = [{"name": "mm"}]
    assert suite.read_record(rec.path) == {"load_s": 1.5, "eager": {"ttft_s": 0.5, "follow_ups": [{"ttft_s": 0.1},
                                           {"ttft_s": 0.2}]}, "compiled": {"profile": [{"name": "mm"}]}}
    with rec.path.open("a") as f:
        f.write('{"set": ["compile_s"], "val')  # the process killed inside a write
    assert suite.read_record(rec.path)["record_truncated"] is True
    assert suite.read_record(rec.path)["eager"]["ttft_s"] == 0.5


def test_the_preflight_names_a_broken_package_in_one_line(tmp_path):
    fake = tmp_path / "site" / "bitsandbytes"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libbitsandbytes_cuda130.so: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_preflight.py"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "preflight versions: cannot import bitsandbytes: OSError: libbitsandbytes_cuda130.so: cannot open shared "
        "object file (carry it: bash bench/gpu_wheels.sh, then carry .whl)")


def test_the_preflight_refuses_a_quantised_product_far_from_bf16():
    import torch

    preflight = load("gpu_preflight")
    weight = torch.randn(64, 32, dtype=torch.bfloat16)
    assert preflight._check_product("int4", lambda x: x @ weight.t() * 1.02, weight, "cpu")  # noise: passes
    with pytest.raises(preflight.PreflightError, match=r"int4 matmul on cpu \(1 rows\) is .* from bf16"):
        preflight._check_product("int4", lambda x: x @ weight.t() * 1.5, weight, "cpu")
    with pytest.raises(preflight.PreflightError, match="nan from bf16"):
        preflight._check_product("NF4", lambda x: x @ weight.t() * float("nan"), weight, "cpu")


def test_a_budget_spent_skips_every_part_and_the_report_goes_to_out(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SUITE), "--dry-run", "--quick", "--budget", "0", "--workdir",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OUT": str(out)})
    assert done.returncode == 1, done.stderr[-2000:]
    report = json.loads((out / "gpu_suite-quick-dry-run.json").read_text())
    assert [p["part"] for p in report["parts"]] == ["preflight", "int4", "nf4", "bf16"]
    assert all(p["error"].startswith("skipped: 0 s of --budget left") for p in report["parts"])
    assert not (tmp_path / "work" / "int4.jsonl").exists()  # no part was started


def wait_for(predicate, what: str, timeout: float = 400):
    deadline = time.monotonic() + timeout  # only a guard against a hang, never what the test measures
    while not predicate():
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_part_killed_half_way_keeps_what_it_measured_and_the_suite_goes_on(tmp_path):
    """Kill the nf4 part once it has its eager figures: the report keeps them, says why the part stopped,
    and the next part (the preflight here: the cheapest) still runs."""
    log = tmp_path / "suite.log"
    work = tmp_path / "work"
    with log.open("w") as stdout:
        suite = subprocess.Popen([sys.executable, str(SUITE), "--dry-run", "--quick", "--parts", "nf4,preflight",
                                  "--out", str(tmp_path / "out"), "--workdir", str(work)], stdout=stdout,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: re.search(r"== nf4 \(pid (\d+)", log.read_text()), "nf4 child")
        pid = int(re.search(r"== nf4 \(pid (\d+)", log.read_text()).group(1))
        record = work / "nf4.jsonl"
        wait_for(lambda: record.exists() and '"eager"' in record.read_text(), "eager figures")
        os.kill(pid, signal.SIGKILL)
        assert suite.wait(timeout=400) == 1, log.read_text()[-3000:]
    finally:
        if suite.poll() is None:
            suite.kill()
    report = json.loads((tmp_path / "out" / "gpu_suite-quick-dry-run.json").read_text())
    nf4, preflight = report["parts"]
    assert nf4["part"] == "nf4" and nf4["error"] == "killed by signal 9"
    assert nf4["load_s"] > 0 and nf4["eager"]["ttft_s"] > 0 and "compiled" not in nf4
    assert preflight["part"] == "preflight" and "error" not in preflight and preflight["tiny_answer"]["new_tokens"] == 4
    table = (tmp_path / "out" / "gpu_suite-quick-dry-run.md").read_text()
    assert "| 4bit | eager | 8 |" in table and "nf4 (killed by signal 9)" in table


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_its_tables(tmp_path):
    done = subprocess.run([sys.executable, str(SUITE), "--dry-run", "--parts", "int4,restart,synth", "--out",
                           str(tmp_path), "--workdir", str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite-dry-run.json").read_text())
    parts = {p["part"]: p for p in report["parts"]}
    assert set(parts) == {"int4", "restart", "synth"} and not any("error" in p for p in parts.values())
    int4 = parts["int4"]
    assert int4["compiled"]["new_tokens"] == 8 and len(int4["compiled"]["follow_ups"]) == 3
    assert int4["eager"]["ttft_s"] >= int4["eager"]["prefill_s"] > 0 and int4["compiled"]["profile"]
    assert int4["eager_more_frames"]["visual_tokens"] == 2 * int4["eager"]["visual_tokens"]
    assert int4["more_compiled_engines"]["ok"] is True
    assert parts["restart"]["compiled"] is True and parts["restart"]["quant"] == "4bit"
    assert parts["synth"]["videos_per_hour"] > 0 and parts["synth"]["videos"][0]["calls"]["qa"] == 16
    table = (tmp_path / "gpu_suite-dry-run.md").read_text()
    assert "| int4 | compiled |" in table and "Synthesis:" in table
