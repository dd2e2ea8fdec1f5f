"""The GPU suite: every speed and memory figure of the app on LLaVA-Video-7B-Qwen2's real configuration
(random weights: the speed and memory are the real model's, the answers noise), in one command.

    python bench/gpu_suite.py --quick      # a CUDA machine, ~6 min: int4 and nf4 eager + compiled, bf16 compiled
    python bench/gpu_suite.py              # everything, ~12 min: split it over two calls of 10 min, e.g.
    python bench/gpu_suite.py --parts preflight,nf4,restart,bf16 --budget 540
    python bench/gpu_suite.py --parts int4,synth --continue --budget 540   # same machine: one report of both
    python bench/gpu_suite.py --dry-run [--quick]  # the tiny checkpoint on CPU: checks every part end to end

On the GPU machine it runs through bench/gpu_run.sh, with the wheels of bench/gpu_wheels.sh (docs/benchmarks.md).
The report (gpu_suite[-dry-run].json and .md) goes to --out: $OUT when set, else bench/results; it is
rewritten after every part, and every part saves each figure the moment it has it, so a part killed by
its timeout, by --budget or by hand keeps what it measured (its error says why it stopped).

First a preflight (bench/gpu_preflight.py, about 30 s: versions, one int4 and one NF4 matmul, one tiny
answer): a machine that cannot run the suite fails there, before the random 7B (15 GB) is written.
Then the random 7B is built once (original on-disk format, bench/configs/llava-video-7b-qwen2.json) with
the test videos (a 60 s 1280x720 H.264 pan, a 4 s warm-up clip), and each part runs in a process of its
own, so that no part inherits another's compiled graphs, kernel plans or allocator state:

  nf4, int4, bf16   load; eager decoding at 64 frames: time to first token from the file, broken
                    down (video decode, vision tower, prefill), tokens/s, peak VRAM, three follow-ups
                    of different lengths; 128 frames (time to first token, peak VRAM); int4 also
                    with a prefill chunk of 8192 tokens instead of 2048; compiled
                    decoding (the app's default on CUDA): compile time, tokens/s, follow-ups, a
                    profile of the compiled step; the whole prompt's last-position logits (compared
                    with bf16's at the end). nf4 also replays its follow-ups the old way (cuDNN
                    attention, unpadded prefills) to show what the per-shape cost was; int4 also
                    builds a second and a third compiled engine (one after, one beside the first).
                    --quick: 64 frames, one follow-up, no profile; bf16 compiled only.
  restart           the default route (CUDA_DEFAULT_QUANT, compiled) started again: load and compile
                    time with PyTorch's compile caches on disk from the nf4 part.
  synth             bench/synth_throughput.py on two one-minute videos (default route).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG_7B = ROOT / "bench" / "configs" / "llava-video-7b-qwen2.json"
CACHE = ROOT / "bench" / ".cache"
FOLLOW_UPS = (  # three new lengths (the tiny benchmark tokenizer makes them about 10, 35 and 90 tokens)
    "What happens next?",
    "Which way does the camera move, and does its speed change at any point during the video?",
    "Describe again, in order, everything that moves in the video, where it starts, where it ends, which way it "
    "goes, how fast it moves compared with the rest of the scene, and what changes in the background meanwhile.",
)
OLD_WAY_FOLLOW_UPS = ("What is in the background?", "Is there any text visible in the video, and where is it?",
                      "List every colour you can see in the video, from the most to the least common one, and say "
                      "which objects have each colour and whether any colour changes over time.")
CAPTION = "Please describe this video in detail."
# The default route first (restart reuses its compile caches), then bf16 (int4's logits are compared with
# it). Split over two 10-minute calls after restart and after bf16 (docs/benchmarks.md).
PARTS = ("preflight", "nf4", "restart", "bf16", "int4", "synth")
# --quick: int4 first (it has never run on a GPU: the new information, and a crash shows at once).
QUICK_PARTS = ("preflight", "int4", "nf4", "bf16")
QUANT_OF = {"nf4": "4bit", "int4": "int4", "bf16": "bf16"}
REPORT_S = 20  # what --budget keeps back for the last report
MIN_PART_S = 30  # a part given less than this by --budget is skipped, not started


@dataclasses.dataclass(frozen=True)
class Sizes:
    frames: int
    more_frames: int
    eager_tokens: int
    compiled_tokens: int
    video: Path
    warmup_video: Path
    checkpoint: Path
    device: str


def sizes(dry_run: bool, checkpoint: Path) -> Sizes:
    from llava_video_app.sample_videos import make_video

    CACHE.mkdir(parents=True, exist_ok=True)
    size, seconds = ((320, 240), 8) if dry_run else ((1280, 720), 60)
    video = CACHE / f"suite_{seconds}s_{size[0]}x{size[1]}.mp4"
    if not video.exists():
        make_video(video, seconds=seconds, fps=25, size=size, pattern="pan", gop=50, noise=4.0)
    warmup = CACHE / f"suite_warmup_4s_{size[0]}x{size[1]}.mp4"
    if not warmup.exists():
        make_video(warmup, seconds=4, fps=25, size=size)
    if dry_run:
        return Sizes(8, 16, 8, 8, video, warmup, checkpoint, "cpu")
    return Sizes(64, 128, 48, 256, video, warmup, checkpoint, "cuda")


def build_checkpoint(dry_run: bool, path: Path) -> Path:
    if dry_run:
        from llava_video_app.tiny import build_tiny_checkpoint

        return path if (path / "config.json").exists() else build_tiny_checkpoint(path)
    # config.json is written last: a write cut short (a call's time limit) is written again
    if (path / "model.safetensors.index.json").is_file() and (path / "config.json").is_file():
        return path
    from llava_video_app.checkpoint import KNOWN_VISION_TOWERS
    from llava_video_app.tiny import build_tokenizer, write_random_weights

    path.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in json.loads(CONFIG_7B.read_text()).items() if not k.startswith("_")}
    size = build_tokenizer(path)  # a small BPE: tokenising costs nothing next to the model
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [size - 1, size - 3]}))
    print(f"writing a random 7B checkpoint to {path} ...", flush=True)
    write_random_weights(path, config, KNOWN_VISION_TOWERS[config["mm_vision_tower"]], shards=8, device="cuda")
    return path


# --- a part's figures, saved as they are measured ---------------------------------------------------------

class Record:
    """A part's figures, each appended to a JSON-lines file the moment it is measured (the file is opened,
    written and closed per figure): a part killed half-way leaves every figure it had. read_record()
    folds the lines back into one dict."""

    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def __setitem__(self, key: str | tuple[str, ...], value) -> None:
        self._write({"set": [key] if isinstance(key, str) else list(key), "value": value})

    def append(self, key: str | tuple[str, ...], value) -> None:
        self._write({"append": [key] if isinstance(key, str) else list(key), "value": value})

    def _write(self, line: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def read_record(path: Path) -> dict:
    """The dict a Record wrote. A last line cut off mid-write (the process killed inside write) is left
    out and flagged as "record_truncated"; a bad line before it is an error."""
    result: dict = {}
    if not path.exists():
        return result
    lines = path.read_text().split("\n")
    for number, text in enumerate(lines):
        if not text:
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            if number == len(lines) - 1:  # no newline after it: the write was cut off
                result["record_truncated"] = True
                continue
            raise ValueError(f"{path}:{number + 1}: not a JSON line: {text[:80]!r}") from None
        keys = line.get("set") or line["append"]
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if "set" in line:
            node[keys[-1]] = line["value"]
        else:
            node.setdefault(keys[-1], []).append(line["value"])
    return result


# --- measurements inside a part's process ----------------------------------------------------------

def gib(n: float) -> float:
    return round(n / 2**30, 2)


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> dict:
    import torch

    if device != "cuda":
        return {}
    return {"peak_allocated_gib": gib(torch.cuda.max_memory_allocated()),
            "peak_reserved_gib": gib(torch.cuda.max_memory_reserved())}


def first_question(engine, s: Sizes, tokens: int, frames: int) -> dict:
    """Time to first token from the file (nothing of it cached), broken down; tokens/s; peak VRAM."""
    from llava_video_app.config import GenerationSettings

    engine.clear()
    reset_peak(s.device)
    engine.ask(s.video, CAPTION, settings=GenerationSettings(max_new_tokens=tokens, ignore_eos=True))
    st = engine.last_stats
    return {"frames": frames, "visual_tokens": st.visual_tokens, "prompt_tokens": st.prompt_tokens,
            "ttft_s": round(st.time_to_first_token_s, 3), "video_s": round(st.video_s, 3),
            "vision_s": round(st.vision_s, 3), "prefill_s": round(st.prefill_s, 3),
            "decode_tok_s": round(st.tokens_per_s, 1), "new_tokens": st.new_tokens, **peak(s.device)}


def follow_ups(engine, s: Sizes, questions=FOLLOW_UPS):
    """Follow-ups on the conversation of first_question, each a new prompt length: one row each, as it is
    measured."""
    from llava_video_app.config import GenerationSettings
    from llava_video_app.prompts import Turn

    history = [Turn(CAPTION, "A video.")]
    for question in questions:
        engine.ask(s.video, question, history, settings=GenerationSettings(max_new_tokens=8, ignore_eos=True))
        st = engine.last_stats
        yield {"new_tokens_prefilled": st.prompt_tokens - st.reused_tokens, "reused": st.reused_tokens,
               "ttft_s": round(st.time_to_first_token_s, 3), "prefill_s": round(st.prefill_s, 3)}
        history = [*history, Turn(question, "Something.")]


def profile_steps(engine, s: Sizes, steps: int = 16) -> list[dict]:
    """The top kernels of `steps` decode steps (self device time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from llava_video_app.config import GenerationSettings

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s.device == "cuda" else [])
    with profile(activities=activities) as prof:
        engine.ask(s.video, "And then?", settings=GenerationSettings(max_new_tokens=steps, ignore_eos=True))
        if s.device == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if s.device == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:12]
    return [{"name": e.key[:90], "calls": e.count, "self_ms": round(getattr(e, key, 0) / 1000, 2)} for e in events]


def run_quant_part(part: str, s: Sizes, work: Path, rec: Record, quick: bool) -> None:
    import torch

    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine
    from llava_video_app.model import LlavaVideoModel

    quant = QUANT_OF[part]
    rec["quant"] = quant
    questions = FOLLOW_UPS[:1] if quick else FOLLOW_UPS
    reset_peak(s.device)
    started = time.perf_counter()
    model = LlavaVideoModel.load(str(s.checkpoint), quant=quant, device=s.device)
    rec["load_s"] = round(time.perf_counter() - started, 1)
    if s.device == "cuda":
        rec["weights_gib"] = gib(torch.cuda.memory_allocated())

    config = AppConfig(frames=s.frames, max_new_tokens=s.compiled_tokens, compile=False)
    if not (quick and part == "bf16"):  # --quick: bf16 compiled only (its logits from the compiled engine)
        eager = Engine(model, config)
        eager.warm_up()
        eager.ask(s.warmup_video, "Warm-up.", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
        rec["eager"] = first_question(eager, s, s.eager_tokens, s.frames)
        for row in follow_ups(eager, s, questions):
            rec.append(("eager", "follow_ups"), row)
        save_logits(eager, s, work, part)
        if not quick:
            eager_extras(part, model, eager, config, s, rec)
        eager.close()
        del eager

    compiled = Engine(model, dataclasses.replace(config, compile=True))
    started = time.perf_counter()
    compiled.warm_up()
    rec["compile_s"] = round(time.perf_counter() - started, 1)
    compiled.ask(s.warmup_video, "Warm-up.", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
    rec["compiled"] = first_question(compiled, s, s.compiled_tokens, s.frames)
    for row in follow_ups(compiled, s, questions):
        rec.append(("compiled", "follow_ups"), row)
    if quick and part == "bf16":
        save_logits(compiled, s, work, part)
    if not quick:
        rec[("compiled", "profile")] = profile_steps(compiled, s)
    if part == "int4" and not quick:
        rec["more_compiled_engines"] = more_compiled_engines(model, compiled, s)
    compiled.close()


def save_logits(engine, s: Sizes, work: Path, part: str) -> None:
    import torch

    torch.save(engine.prompt_logits(s.video, CAPTION).float().cpu(), work / f"logits_{part}.pt")


def eager_extras(part: str, model, eager, config, s: Sizes, rec: Record) -> None:
    """The full suite's eager figures past the first question: the old follow-ups (nf4), a wider prefill
    chunk (int4), 128 frames (all)."""
    import torch

    from llava_video_app.engine import Engine

    if part == "nf4":  # the old way: cuDNN attention and unpadded prefills, three more new lengths
        from llava_video_app import engine as engine_module

        bucket = engine_module.PREFILL_BUCKET
        engine_module.PREFILL_BUCKET = 1
        torch.backends.cuda.enable_cudnn_sdp(True)
        try:
            for row in follow_ups(eager, s, OLD_WAY_FOLLOW_UPS):
                rec.append(("eager", "follow_ups_old_way"), row)
        finally:
            engine_module.PREFILL_BUCKET = bucket
            torch.backends.cuda.enable_cudnn_sdp(False)
    if part == "int4":  # a larger prefill chunk: fewer, fuller forward passes over the 13K-token prompt
        wide = Engine(model, dataclasses.replace(config, prefill_chunk=8192))
        rec["eager_prefill_chunk_8192"] = first_question(wide, s, 8, s.frames)
        wide.close()
    more = Engine(model, dataclasses.replace(config, frames=s.more_frames))
    rec["eager_more_frames"] = first_question(more, s, 8, s.more_frames)
    more.close()


def more_compiled_engines(model, first, s: Sizes) -> dict:
    """A second compiled engine after the first (a reload) and a third beside it (a synthesis
    engine next to the chat's): the crash of torch 2.11's thread-local CUDA graph state."""
    from llava_video_app.config import GenerationSettings
    from llava_video_app.engine import Engine

    settings = GenerationSettings(max_new_tokens=8, ignore_eos=True)
    expected = first.ask(s.warmup_video, "Which way?", settings=settings)
    first.close()
    started = time.perf_counter()
    second = Engine(model, first.config)
    second.warm_up()
    answers = {"second": second.ask(s.warmup_video, "Which way?", settings=settings)}
    third = Engine(model, first.config)
    third.warm_up()
    threads = [threading.Thread(target=lambda e=e, k=k: answers.__setitem__(k, e.ask(s.warmup_video, "Which way?",
                                                                                         settings=settings)))
               for k, e in (("second_again", second), ("third", third))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"ok": all(a == expected for a in answers.values()) and len(answers) == 3,
            "seconds": round(time.perf_counter() - started, 1)}


def run_restart_part(s: Sizes, rec: Record) -> None:
    """The default route started again: compile caches on disk from the same route's part."""
    from llava_video_app.config import CUDA_DEFAULT_QUANT, AppConfig
    from llava_video_app.engine import Engine

    rec["quant"] = CUDA_DEFAULT_QUANT
    started = time.perf_counter()
    engine = Engine.from_config(AppConfig(model=str(s.checkpoint), device=s.device, quant=CUDA_DEFAULT_QUANT,
                                          compile=True, frames=s.frames, max_new_tokens=s.compiled_tokens),
                                progress=lambda m: print(m, flush=True))
    rec["load_and_compile_s"] = round(time.perf_counter() - started, 1)
    rec["compiled"] = engine._decoder is not None


def run_part(part: str, s: Sizes, work: Path, rec: Record, quick: bool) -> None:
    if part == "preflight":
        import gpu_preflight  # bench/ is on sys.path: this file's folder

        gpu_preflight.run(s.device, lambda key, value: rec.__setitem__(key, value))
    elif part in QUANT_OF:
        run_quant_part(part, s, work, rec, quick)
    elif part == "restart":
        run_restart_part(s, rec)
    elif part == "synth":
        cmd = [sys.executable, str(ROOT / "bench" / "synth_throughput.py"), "--checkpoint", str(s.checkpoint),
               "--videos", "2", "--first-is-warm-up", "--json-out", str(work / "synth.json")]
        subprocess.run(cmd + (["--dry-run"] if s.device == "cpu" else []), check=True)
        for key, value in json.loads((work / "synth.json").read_text()).items():
            rec[key] = value
    else:
        raise ValueError(f"unknown part {part!r}: one of {', '.join(PARTS)}")


def child_main(args) -> None:
    """One part, in its own process: every figure into <workdir>/<part>.jsonl as it is measured."""
    rec = Record(args.workdir / f"{args.child}.jsonl")
    rec["part"] = args.child
    try:
        s = sizes(args.dry_run, args.checkpoint)
        run_part(args.child, s, args.workdir, rec, args.quick)
    except BaseException as err:  # recorded for the report, then raised: the part fails with its traceback
        rec["error"] = f"{type(err).__name__}: {err}"[:600]
        raise


# --- the parent: one process per part, then the tables ------------------------------------------------

def compare_logits(work: Path) -> dict:
    import torch

    reference = work / "logits_bf16.pt"
    if not reference.exists():
        return {}
    bf16 = torch.load(reference)
    rows = {}
    for part in ("nf4", "int4"):
        path = work / f"logits_{part}.pt"
        if path.exists():
            got = torch.load(path)
            rows[part] = {"max_abs_diff_over_std": round(float((got - bf16).abs().max() / bf16.std()), 4),
                          "cosine": round(float(torch.nn.functional.cosine_similarity(got, bf16, dim=0)), 5),
                          "same_top1": int(got.argmax()) == int(bf16.argmax())}
    return rows


def choose_default(results: list[dict], logits: dict) -> tuple[str | None, str]:
    """The CUDA default the figures choose: int4 only when its compiled decoding is faster than NF4's and
    its last-position logits are at least as close to bf16's (max |diff| / std, cosine, top-1); NF4, the
    route that has run on a GPU, otherwise. None while a figure is missing."""
    tok_s = {r.get("quant"): r["compiled"].get("decode_tok_s") for r in results  # restart's "compiled" is a flag
             if r.get("part") in QUANT_OF and isinstance(r.get("compiled"), dict)}
    int4, nf4 = logits.get("int4"), logits.get("nf4")
    if not (tok_s.get("int4") and tok_s.get("4bit") and int4 and nf4):
        return None, "not decided: it needs int4's and NF4's compiled tokens/s and their logits against bf16"
    faster = tok_s["int4"] > tok_s["4bit"]
    closer = (int4["max_abs_diff_over_std"] <= nf4["max_abs_diff_over_std"] and int4["cosine"] >= nf4["cosine"]
              and (int4["same_top1"] or not nf4["same_top1"]))
    why = (f"int4 {tok_s['int4']} vs NF4 {tok_s['4bit']} compiled tokens/s; logits vs bf16: int4 max|diff|/std "
           f"{int4['max_abs_diff_over_std']}, cosine {int4['cosine']}; NF4 {nf4['max_abs_diff_over_std']}, "
           f"cosine {nf4['cosine']}")
    return ("int4" if faster and closer else "4bit"), why


def _ttfts(rows) -> str:
    return ", ".join(str(f.get("ttft_s", "-")) for f in rows or []) or "-"


def markdown(results: list[dict], logits: dict, dry_run: bool = False) -> str:
    """The report's tables. Any figure may be missing (a part that failed, timed out or was skipped): it
    shows as "-", and the parts that did not finish are listed with why."""
    lines = ["| part | decode | frames | load s | compile s | peak alloc GiB | TTFT s (video / vision / prefill) "
             "| tok/s | follow-up TTFT s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "quant" not in r or r.get("part") == "restart":
            continue
        for mode, key in (("eager", "eager"), ("eager", "eager_more_frames"), ("eager, prefill chunk 8192",
                                                                              "eager_prefill_chunk_8192"),
                          ("compiled", "compiled")):
            row = r.get(key)
            if not row:
                continue
            tok_s = row.get("decode_tok_s", "-") if row.get("new_tokens", 0) > 8 else "-"
            lines.append(f"| {r['quant']} | {mode} | {row.get('frames', '-')} | {r.get('load_s', '-')} | "
                         f"{r.get('compile_s', '-') if mode == 'compiled' else '-'} | "
                         f"{row.get('peak_allocated_gib', '-')} | {row.get('ttft_s', '-')} "
                         f"({row.get('video_s', '-')} / {row.get('vision_s', '-')} / {row.get('prefill_s', '-')}) | "
                         f"{tok_s} | "
                         f"{_ttfts(row.get('follow_ups'))} |")
        old = (r.get("eager") or {}).get("follow_ups_old_way")
        if old:
            lines.append(f"| {r['quant']} | eager, cuDNN attention + unpadded prefill | "
                         f"{r['eager'].get('frames', '-')} | | | | | | {_ttfts(old)} |")
    for r in results:
        if r.get("part") == "preflight" and "versions" in r:
            v = r["versions"]
            lines.append("\nVersions: " + ", ".join(f"{k} {str(v.get(k, '-')).split(' (')[0]}" for k in
                                                    ("python", "torch", "transformers", "bitsandbytes", "torchao",
                                                     "av", "accelerate")) + f"; GPU {v.get('gpu', '-')}.")
        if r.get("part") == "restart" and "load_and_compile_s" in r:
            lines.append(f"\nRestart of the default route ({r.get('quant', '-')}, compiled), compile caches on disk: "
                         f"{r['load_and_compile_s']} s from start to ready.")
        if r.get("part") == "int4" and r.get("more_compiled_engines"):
            m = r["more_compiled_engines"]
            lines.append(f"\nSecond and third compiled engines in one process: "
                         f"{'ok' if m.get('ok') else 'FAILED'} ({m.get('seconds', '-')} s).")
        if r.get("part") == "synth" and "videos_per_hour" in r:
            lines.append(f"\nSynthesis: {r.get('videos_per_hour', '-')} one-minute videos/hour "
                         f"({r.get('seconds_per_video', '-')} s per video).")
    if logits:
        lines.append("\nLast-position logits of the caption prompt vs bf16 (a prefill: the same eager or compiled): "
                     + "; ".join(f"{k}: max|diff|/std {v.get('max_abs_diff_over_std', '-')}, cosine "
                                 f"{v.get('cosine', '-')}, same top-1 {v.get('same_top1', '-')}"
                                 for k, v in logits.items()))
    choice, why = choose_default(results, logits)
    if dry_run:  # CPU timings of the tiny checkpoint choose nothing
        choice, why = None, f"not decided: a dry run; the rule on these figures would give {choice}"
    lines.append(f"\nThe CUDA default these figures choose: {choice or '-'} ({why}).")
    failed = [f"{r.get('part', '?')} ({r['error']})" for r in results if r.get("error")]
    if failed:
        lines.append("\nDid not finish (figures above are what they measured first): " + "; ".join(failed) + ".")
    return "\n".join(lines)


def run_child(part: str, cmd: list[str], timeout: float, work: Path) -> dict:
    """One part in a process group of its own (a synth part's own child dies with it); its figures as read
    back from its record, with an error if it did not end well."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, start_new_session=True)
    print(f"== {part} (pid {child.pid}, at most {timeout:.0f} s)", flush=True)
    try:
        code = child.wait(timeout=timeout)
        why = None if code == 0 else (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        why = f"stopped at its time limit, {timeout:.0f} s"
    finally:
        if child.poll() is None:  # the parent itself interrupted: leave nothing running on the GPU
            os.killpg(child.pid, signal.SIGKILL)
    result = {"part": part, **read_record(work / f"{part}.jsonl")}
    if why:
        result["error"] = f"{why}: {result['error']}" if result.get("error") else why
    result["part_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny checkpoint on CPU")
    parser.add_argument("--quick", action="store_true", help=f"parts {','.join(QUICK_PARTS)}, 64 frames, one "
                        "follow-up, bf16 compiled only (fits one 10-minute call)")
    parser.add_argument("--parts", default=None, help=f"default {','.join(PARTS)} ({','.join(QUICK_PARTS)} with "
                        "--quick); preflight is a part: leave it out of a second call on the same machine")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default /tmp/llava-video-7b-random")
    parser.add_argument("--out", type=Path, default=None, help="the report's folder: default $OUT when set, "
                        "else bench/results (gpu_suite[-quick][-dry-run].json/.md)")
    parser.add_argument("--workdir", type=Path, default=None, help="the parts' records and logits: default "
                        "bench/.cache/suite[-dry-run]")
    parser.add_argument("--continue", dest="keep", action="store_true", help="keep the parts an earlier call "
                        "left in --workdir and report them with this call's")
    parser.add_argument("--part-timeout", type=int, default=300, help="seconds per part (default 300)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run: each part gets "
                        f"what is left less {REPORT_S} s for the report, and is skipped under {MIN_PART_S} s")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = (args.parts or ",".join(QUICK_PARTS if args.quick else PARTS)).split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    args.workdir = args.workdir or CACHE / ("suite-dry-run" if args.dry_run else "suite")
    args.checkpoint = args.checkpoint or (CACHE / "tiny" if args.dry_run else Path("/tmp/llava-video-7b-random"))

    if args.child:  # one part, in its own process
        child_main(args)
        return

    started = time.perf_counter()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --dry-run to check the suite on CPU")
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    for stale in [*work.glob("*.jsonl"), *work.glob("*.pt")]:  # an earlier run's parts must not be reported
        if not args.keep or stale.stem.removeprefix("logits_") in parts:
            stale.unlink()
    name = "gpu_suite" + "-quick" * args.quick + "-dry-run" * args.dry_run
    out.mkdir(parents=True, exist_ok=True)
    earlier = sorted(work.glob("*.jsonl"), key=lambda p: PARTS.index(p.stem) if p.stem in PARTS else len(PARTS))
    results = [{"part": p.stem, **read_record(p), "from_earlier_call": True} for p in earlier if p.stem not in parts]
    built = False
    for part in parts:
        left = None if args.budget is None else args.budget - (time.perf_counter() - started) - REPORT_S
        if left is not None and left < MIN_PART_S:
            results.append({"part": part, "error": f"skipped: {max(left, 0):.0f} s of --budget left"})
        else:
            if part != "preflight" and not built:  # after the preflight: a broken machine writes no 15 GB
                checkpoint_started = time.perf_counter()
                build_checkpoint(args.dry_run, args.checkpoint)
                sizes(args.dry_run, args.checkpoint)  # the videos, before any part times anything
                built = True
                print(f"checkpoint and videos ready in {time.perf_counter() - checkpoint_started:.0f} s", flush=True)
                left = None if args.budget is None else args.budget - (time.perf_counter() - started) - REPORT_S
            cmd = [sys.executable, __file__, "--child", part, "--workdir", str(work), "--checkpoint",
                   str(args.checkpoint)] + ["--dry-run"] * args.dry_run + ["--quick"] * args.quick
            timeout = args.part_timeout if left is None else max(1.0, min(args.part_timeout, left))
            results.append(run_child(part, cmd, timeout, work))
        print(json.dumps(results[-1])[:2000], flush=True)
        # after every part: a run cut short keeps its report
        table = write_report(out, name, results, work, started, args)
        if part == "preflight" and results[-1].get("error") and not results[-1]["error"].startswith("skipped"):
            print(f"preflight failed ({results[-1]['error']}): nothing else run; report in {out / name}.md")
            sys.exit(1)
    print(table)
    print(f"wrote {out / name}.json and .md in {time.perf_counter() - started:.0f} s")
    if any("error" in r for r in results):
        sys.exit(1)


def write_report(out: Path, name: str, results: list[dict], work: Path, started: float, args) -> str:
    import torch

    logits = compare_logits(work)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if not args.dry_run else platform.processor() or platform.machine(),
        "dry_run": args.dry_run, "quick": args.quick, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "command": " ".join(sys.argv), "total_s": round(time.perf_counter() - started, 1), "logits_vs_bf16": logits,
        "parts": results, "cuda_default_chosen": None if args.dry_run else choose_default(results, logits)[0],
    }
    for package in ("bitsandbytes", "torchao", "av", "accelerate"):
        try:
            meta[package] = __import__(package).__version__
        except Exception as err:  # the report is written whatever is broken; the preflight names it
            meta[package] = f"not importable: {type(err).__name__}"
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    table = markdown(results, logits, args.dry_run)
    (out / f"{name}.md").write_text(f"# {meta['device']}, {meta['date']} ({meta['total_s']} s)\n\n{table}\n")
    return table


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
