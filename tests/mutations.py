"""Plant faults in the model path, one at a time, in a temporary copy of the project, and report which
test catches each: a check that the parity tests see drift from the authors' model.

    python tests/mutations.py                 # every fault; a Markdown table on stdout
    python tests/mutations.py --only 3 7      # some of them (numbers as listed by --list)
    python tests/mutations.py --all-tests     # run every model-path test per fault (slower), not up to
                                              # the first failure
    python tests/mutations.py --only 8 9 --tests tests/test_parity.py   # caught by this file alone?

A fault is one exact text replacement in one file of llava_video_app/ (the original, or one of its
alternative forms, must occur exactly once, else the fault is reported as not applicable and counts as
uncaught: the code moved on and the fault needs updating).
The copy's tests run with the copy first on PYTHONPATH; the unmutated copy must pass first. Exit
status 1 when a fault goes uncaught. Not collected by pytest (no test_ prefix); it runs pytest itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Fast files first: without --all-tests a run stops at the first failing test.
MODEL_PATH_TESTS = (
    "tests/test_model_weights.py", "tests/test_parity_generation.py", "tests/test_parity.py",
    "tests/test_generation_config.py", "tests/test_parity_default_route.py", "tests/test_prompts.py",
    "tests/test_model_settings.py", "tests/test_model.py", "tests/test_engine.py",
)


@dataclass(frozen=True)
class Fault:
    kind: str
    what: str
    file: str
    original: str
    planted: str
    # the same fault in another form of the code (e.g. after a refactor that another branch made)
    alternatives: tuple[tuple[str, str], ...] = ()

    def plant(self, text: str) -> str | None:
        """`text` with the fault planted, or None when no form of it occurs exactly once."""
        for original, planted in ((self.original, self.planted), *self.alternatives):
            if text.count(original) == 1:
                return text.replace(original, planted)
        return None


FAULTS = (
    # --- after the prefill ---------------------------------------------------------------------------
    Fault("decode", "decode steps one position ahead", "engine.py",
          "return self.model.lm(input_ids=input_ids, ",
          "return self.model.lm(input_ids=input_ids, position_ids=torch.tensor([[cache.get_seq_length() + 1]], "
          "device=input_ids.device), "),
    Fault("decode", "prefill keeps one padding position in the cache (first token's context stale)", "engine.py",
          "        if pad:\n            cache.crop(-pad)", "        if pad:\n            cache.crop(-pad + 1)",
          (("drop_last(cache, pad)", "drop_last(cache, pad - 1)"),)),
    Fault("decode", "decode step fed the previous input token instead of the new one", "engine.py",
          "logits = self._decode_step(torch.tensor([[token]], device=model.device), cache)",
          "logits = self._decode_step(torch.tensor([[fed[-1]]], device=model.device), cache)"),
    # --- follow-ups from the KV cache --------------------------------------------------------------
    Fault("follow-up", "history answers not stripped (warm prompt differs by a space)", "prompts.py",
          'text += f"{turn.answer.strip()}{IM_END}\\n"', 'text += f"{turn.answer}{IM_END}\\n"'),
    Fault("follow-up", "no newline after an earlier answer's <|im_end|>", "prompts.py",
          'text += f"{turn.answer.strip()}{IM_END}\\n"', 'text += f"{turn.answer.strip()}{IM_END}"'),
    Fault("follow-up", "stored cache reused one position past the shared prefix", "kv_cache.py",
          "positions = min(positions, total - 1, int(state.cache.get_seq_length()))",
          "positions = min(positions + 1, total - 1, int(state.cache.get_seq_length()))"),
    Fault("follow-up", "stored cache not cropped to the shared prefix (stale positions stay)", "kv_cache.py",
          "state.cache.crop(reused - int(state.cache.get_seq_length()))", "pass",
          (("drop_last(state.cache, int(state.cache.get_seq_length()) - reused)", "pass"),)),
    # --- weights the old tiny checkpoint hid -------------------------------------------------------
    Fault("weights", "LM q_proj bias ignored", "model.py", "    lm.eval()\n    return lm",
          "    for layer in lm.model.layers:\n        layer.self_attn.q_proj.bias.data.zero_()\n"
          "    lm.eval()\n    return lm"),
    Fault("weights", "LM k_proj bias ignored", "model.py", "    lm.eval()\n    return lm",
          "    for layer in lm.model.layers:\n        layer.self_attn.k_proj.bias.data.zero_()\n"
          "    lm.eval()\n    return lm"),
    Fault("weights", "LM RMSNorm (input_layernorm) ignores its weight", "model.py", "    lm.eval()\n    return lm",
          "    for layer in lm.model.layers:\n        layer.input_layernorm.weight.data.fill_(1)\n"
          "    lm.eval()\n    return lm"),
    Fault("weights", "LM final RMSNorm ignores its weight", "model.py", "    lm.eval()\n    return lm",
          "    lm.model.norm.weight.data.fill_(1)\n    lm.eval()\n    return lm"),
    Fault("weights", "SigLIP LayerNorms ignore their bias", "model.py",
          "            state[name] = tensor\n",
          "            state[name] = tensor * 0 if 'layer_norm' in name and name.endswith('bias') else tensor\n"),
    Fault("weights", "SigLIP LayerNorm 2 ignores its weight", "model.py",
          "            state[name] = tensor\n",
          "            state[name] = tensor * 0 + 1 if name.endswith('layer_norm2.weight') else tensor\n"),
    Fault("weights", "SigLIP q_proj bias ignored", "model.py",
          "            state[name] = tensor\n",
          "            state[name] = tensor * 0 if name.endswith('q_proj.bias') else tensor\n"),
    Fault("weights", "projector ignores its biases", "model.py", "projector.load_state_dict(proj_state)",
          "projector.load_state_dict({k: v * 0 if k.endswith('bias') else v for k, v in proj_state.items()})"),
    Fault("weights", "image_newline read as zeros", "model.py",
          "newline = ckpt.read_tensors([NEWLINE_KEY])[NEWLINE_KEY].to(device, dtype)",
          "newline = ckpt.read_tensors([NEWLINE_KEY])[NEWLINE_KEY].to(device, dtype) * 0"),
    # --- routes ----------------------------------------------------------------------------------
    Fault("routes", "vision batches joined in the wrong order", "model.py",
          "projected.append(self.projector(self.vision(pixels)))",
          "projected.insert(0, self.projector(self.vision(pixels)))"),
    Fault("routes", "chunked prefill: chunks overlap by one position", "engine.py",
          "for chunk_start in range(0, length + pad, step):", "for chunk_start in range(0, length + pad, step - 1):"),
    Fault("routes", "batched answers: suffix positions off by one", "engine.py",
          "positions = (shared + torch.arange(suffixes.shape[1], device=device))",
          "positions = (shared + 1 + torch.arange(suffixes.shape[1], device=device))"),
    Fault("routes", "batched answers: decode positions skip one", "engine.py",
          "next_position = next_position + 1", "next_position = next_position + 2"),
    Fault("routes", "default route scales nearest-neighbour", "video/pyav_reader.py",
          'INTERPOLATION = "BICUBIC"', 'INTERPOLATION = "POINT"'),
    Fault("routes", "default route takes limited-range video as full range", "video/pyav_reader.py",
          'convert = {"format": "rgb24"}', 'convert = {"format": "rgb24", "src_color_range": "JPEG"}'),
    # --- generation_config.json ------------------------------------------------------------------
    Fault("generation", "repetition penalty not applied", "generation_config.py",
          "if self.repetition_penalty == 1.0 or not generated:", "if True:"),
    Fault("generation", "repetition penalty multiplies positive scores", "generation_config.py",
          "scores / self.repetition_penalty)", "scores * self.repetition_penalty)"),
    Fault("generation", "generation_config.json stop ids ignored", "model.py",
          "stops |= set(self.generation.eos_token_ids)", "pass"),
)


def copy_project(destination: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache", "node_modules")
    for part in ("llava_video_app", "tests", "assets"):
        if (ROOT / part).exists():
            shutil.copytree(ROOT / part, destination / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)


def run_tests(copy: Path, report: Path, all_tests: bool,
              tests: tuple[str, ...] = MODEL_PATH_TESTS) -> tuple[int, list[str], float]:
    """(pytest's exit status, failing test ids, seconds) for the copy's model-path tests."""
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{copy / 'tests'}"}
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-m", "not slow", "-p", "no:cacheprovider",
               f"--junitxml={report}", *([] if all_tests else ["-x"])]
    started = time.monotonic()
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    failed = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{Path(case.get('classname', '').replace('.', '/')).name}::{case.get('name')}")
    return done.returncode, failed, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", help="fault numbers to plant (1-based)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--all-tests", action="store_true", help="run every model-path test per fault")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated copy first")
    parser.add_argument("--tests", nargs="*", default=list(MODEL_PATH_TESTS), help="test files to run")
    args = parser.parse_args(argv)
    chosen = [(n, f) for n, f in enumerate(FAULTS, 1) if not args.only or n in args.only]
    if args.list:
        for n, fault in chosen:
            print(f"{n:3d}  {fault.kind:10s}  {fault.file:22s}  {fault.what}")
        return 0
    with tempfile.TemporaryDirectory(prefix="llava-mutations-") as tmp:
        copy = Path(tmp) / "project"
        copy.mkdir()
        copy_project(copy)
        check = subprocess.run([sys.executable, "-c", "import llava_video_app; print(llava_video_app.__file__)"],
                               cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True)
        if not check.stdout.strip().startswith(str(copy)):
            print(f"the copy's package is not the one imported: {check.stdout or check.stderr}", file=sys.stderr)
            return 2
        if not args.skip_baseline:
            status, failed, seconds = run_tests(copy, Path(tmp) / "baseline.xml", True, tuple(args.tests))
            print(f"baseline (no fault): exit {status}, {len(failed)} failing, {seconds:.0f} s", file=sys.stderr)
            if status != 0:
                print("the unmutated copy fails:", *failed, sep="\n  ", file=sys.stderr)
                return 2
        rows, uncaught = [], 0
        for n, fault in chosen:
            path = copy / "llava_video_app" / fault.file
            original = path.read_text()
            planted = fault.plant(original)
            if planted is None:
                rows.append((n, fault, "NOT APPLICABLE (the code changed: update the fault)", 0.0))
                uncaught += 1
                continue
            path.write_text(planted)
            try:
                status, failed, seconds = run_tests(copy, Path(tmp) / f"fault-{n}.xml", args.all_tests,
                                                    tuple(args.tests))
            finally:
                path.write_text(original)
            if status == 0 or not failed:
                caught = "**NOT CAUGHT**" if status == 0 else f"pytest exit {status}, no failing test recorded"
                uncaught += 1
            else:
                caught = ", ".join(failed[:4]) + (f" (+{len(failed) - 4} more)" if len(failed) > 4 else "")
            rows.append((n, fault, caught, seconds))
            print(f"fault {n}: {caught} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    print("| # | kind | fault | file | caught by | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, fault, caught, seconds in rows:
        print(f"| {n} | {fault.kind} | {fault.what} | {fault.file} | {caught} | {seconds:.0f} |")
    print(f"\n{len(rows) - uncaught} of {len(rows)} faults caught")
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
