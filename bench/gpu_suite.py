"""The GPU suite: every speed and memory figure of the app on LLaVA-Video-7B-Qwen2's real configuration
(random weights: the speed and memory are the real model's, the answers noise), in one command.

    python bench/gpu_suite.py              # a CUDA machine: ~8 min; bench/results/gpu_suite.{json,md}
    python bench/gpu_suite.py --dry-run    # the tiny checkpoint on CPU: checks every part end to end
    python bench/gpu_suite.py --parts int4,bf16

Builds the random 7B once (original on-disk format, bench/configs/llava-video-7b-qwen2.json) and the
test videos (a 60 s 1280x720 H.264 pan, a 4 s warm-up clip), then runs each part in a process of its
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
  restart           the default route (int4, compiled) started again: load and compile time with
                    PyTorch's compile caches on disk from the int4 part.
  synth             bench/synth_throughput.py on two one-minute videos (default route).

Wheels a bare GPU machine lacks: bench/gpu_wheels.sh (run where PyPI is reachable; carry .whl/).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
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
PARTS = ("nf4", "int4", "bf16", "restart", "synth")
QUANT_OF = {"nf4": "4bit", "int4": "int4", "bf16": "bf16"}


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
    if (path / "model.safetensors.index.json").is_file():
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
    return {"peak_allocated_gib": gib(torch.cuda.max_memory_allocated()), "peak_reserved_gib": gib(torch.cuda.max_memory_reserved())}


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


def follow_ups(engine, s: Sizes, questions=FOLLOW_UPS) -> list[dict]:
    """Follow-ups on the conversation of first_question, each a new prompt length."""
    from llava_video_app.config import GenerationSettings
    from llava_video_app.prompts import Turn

    history, rows = [Turn(CAPTION, "A video.")], []
    for question in questions:
        engine.ask(s.video, question, history, settings=GenerationSettings(max_new_tokens=8, ignore_eos=True))
        st = engine.last_stats
        rows.append({"new_tokens_prefilled": st.prompt_tokens - st.reused_tokens, "reused": st.reused_tokens,
                     "ttft_s": round(st.time_to_first_token_s, 3), "prefill_s": round(st.prefill_s, 3)})
        history = [*history, Turn(question, "Something.")]
    return rows


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


def run_quant_part(part: str, s: Sizes, out: Path) -> dict:
    import torch

    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine
    from llava_video_app.model import LlavaVideoModel

    quant = QUANT_OF[part]
    result: dict = {"part": part, "quant": quant}
    reset_peak(s.device)
    started = time.perf_counter()
    model = LlavaVideoModel.load(str(s.checkpoint), quant=quant, device=s.device)
    result["load_s"] = round(time.perf_counter() - started, 1)
    if s.device == "cuda":
        result["weights_gib"] = gib(torch.cuda.memory_allocated())

    config = AppConfig(frames=s.frames, max_new_tokens=s.compiled_tokens, compile=False)
    eager = Engine(model, config)
    eager.warm_up()
    eager.ask(s.warmup_video, "Warm-up.", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
    result["eager"] = first_question(eager, s, s.eager_tokens, s.frames)
    result["eager"]["follow_ups"] = follow_ups(eager, s)
    if part == "nf4":  # the old way: cuDNN attention and unpadded prefills, three more new lengths
        from llava_video_app import engine as engine_module

        bucket = engine_module.PREFILL_BUCKET
        engine_module.PREFILL_BUCKET = 1
        torch.backends.cuda.enable_cudnn_sdp(True)
        try:
            result["eager"]["follow_ups_old_way"] = follow_ups(eager, s, OLD_WAY_FOLLOW_UPS)
        finally:
            engine_module.PREFILL_BUCKET = bucket
            torch.backends.cuda.enable_cudnn_sdp(False)
    if part == "int4":  # a larger prefill chunk: fewer, fuller forward passes over the 13K-token prompt
        wide = Engine(model, dataclasses.replace(config, prefill_chunk=8192))
        result["eager_prefill_chunk_8192"] = first_question(wide, s, 8, s.frames)
        wide.close()
    logits = eager.prompt_logits(s.video, CAPTION)
    torch.save(logits.float().cpu(), out / f"logits_{part}.pt")
    eager.close()
    more = Engine(model, dataclasses.replace(config, frames=s.more_frames))
    result["eager_more_frames"] = first_question(more, s, 8, s.more_frames)
    more.close()
    del eager, more

    compiled = Engine(model, dataclasses.replace(config, compile=True))
    started = time.perf_counter()
    compiled.warm_up()
    result["compile_s"] = round(time.perf_counter() - started, 1)
    compiled.ask(s.warmup_video, "Warm-up.", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
    result["compiled"] = first_question(compiled, s, s.compiled_tokens, s.frames)
    result["compiled"]["follow_ups"] = follow_ups(compiled, s)
    result["compiled"]["profile"] = profile_steps(compiled, s)
    if part == "int4":
        result["more_compiled_engines"] = more_compiled_engines(model, compiled, s)
    compiled.close()
    return result


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


def run_restart_part(s: Sizes) -> dict:
    """The default route started again: compile caches on disk from the int4 part's compile."""
    from llava_video_app.config import AppConfig
    from llava_video_app.engine import Engine

    started = time.perf_counter()
    engine = Engine.from_config(AppConfig(model=str(s.checkpoint), device=s.device, quant="int4", compile=True,
                                          frames=s.frames, max_new_tokens=s.compiled_tokens),
                                progress=lambda m: print(m, flush=True))
    total = time.perf_counter() - started
    return {"part": "restart", "load_and_compile_s": round(total, 1), "compiled": engine._decoder is not None}


def run_part(part: str, s: Sizes, out: Path) -> dict:
    if part in QUANT_OF:
        return run_quant_part(part, s, out)
    if part == "restart":
        return run_restart_part(s)
    if part == "synth":
        cmd = [sys.executable, str(ROOT / "bench" / "synth_throughput.py"), "--checkpoint", str(s.checkpoint),
               "--videos", "2", "--json-out", str(out / "synth.json")] + (["--dry-run"] if s.device == "cpu" else [])
        subprocess.run(cmd, check=True)
        return {"part": "synth", **json.loads((out / "synth.json").read_text())}
    raise ValueError(part)


# --- the parent: one process per part, then the tables ------------------------------------------------

def compare_logits(out: Path) -> dict:
    import torch

    reference = out / "logits_bf16.pt"
    if not reference.exists():
        return {}
    bf16 = torch.load(reference)
    rows = {}
    for part in ("nf4", "int4"):
        path = out / f"logits_{part}.pt"
        if path.exists():
            got = torch.load(path)
            rows[part] = {"max_abs_diff_over_std": round(float((got - bf16).abs().max() / bf16.std()), 4),
                          "cosine": round(float(torch.nn.functional.cosine_similarity(got, bf16, dim=0)), 5),
                          "same_top1": int(got.argmax()) == int(bf16.argmax())}
    return rows


def markdown(results: list[dict], logits: dict) -> str:
    lines = ["| part | decode | frames | load s | compile s | peak alloc GiB | TTFT s (video / vision / prefill) "
             "| tok/s | follow-up TTFT s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "quant" not in r:
            continue
        for mode, key in (("eager", "eager"), ("eager", "eager_more_frames"), ("eager, prefill chunk 8192",
                                                                              "eager_prefill_chunk_8192"),
                          ("compiled", "compiled")):
            row = r.get(key)
            if not row:
                continue
            follow = ", ".join(str(f["ttft_s"]) for f in row.get("follow_ups", [])) or "-"
            lines.append(f"| {r['quant']} | {mode} | {row['frames']} | {r['load_s']} | "
                         f"{r.get('compile_s', '-') if mode == 'compiled' else '-'} | {row.get('peak_allocated_gib', '-')} | "
                         f"{row['ttft_s']} ({row['video_s']} / {row['vision_s']} / {row['prefill_s']}) | "
                         f"{row['decode_tok_s'] if row['new_tokens'] > 8 else '-'} | {follow} |")
        old = (r.get("eager") or {}).get("follow_ups_old_way")
        if old:
            lines.append(f"| {r['quant']} | eager, cuDNN attention + unpadded prefill | {r['eager']['frames']} | | | | | | "
                         f"{', '.join(str(f['ttft_s']) for f in old)} |")
    for r in results:
        if r.get("part") == "restart":
            lines.append(f"\nRestart of the default route (int4, compiled), compile caches on disk: "
                         f"{r['load_and_compile_s']} s from start to ready.")
        if r.get("part") == "int4" and "more_compiled_engines" in r:
            m = r["more_compiled_engines"]
            lines.append(f"\nSecond and third compiled engines in one process: {'ok' if m['ok'] else 'FAILED'} ({m['seconds']} s).")
        if r.get("part") == "synth":
            lines.append(f"\nSynthesis: {r.get('videos_per_hour')} one-minute videos/hour ({r.get('seconds_per_video')} s per video).")
    if logits:
        lines.append("\nLast-position logits of the 64-frame caption prompt vs bf16: "
                     + "; ".join(f"{k}: max|diff|/std {v['max_abs_diff_over_std']}, cosine {v['cosine']}, "
                                 f"same top-1 {v['same_top1']}" for k, v in logits.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny checkpoint on CPU")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--checkpoint", type=Path, default=None, help="default /tmp/llava-video-7b-random")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results (gpu_suite[-dry-run].json/.md)")
    parser.add_argument("--part-timeout", type=int, default=300)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # one part, in its own process
        s = sizes(args.dry_run, args.checkpoint)
        result = run_part(args.child, s, args.workdir)
        (args.workdir / f"{args.child}.json").write_text(json.dumps(result))
        return

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --dry-run to check the suite on CPU")
    started = time.perf_counter()
    checkpoint = args.checkpoint or (CACHE / "tiny" if args.dry_run else Path("/tmp/llava-video-7b-random"))
    checkpoint = build_checkpoint(args.dry_run, checkpoint)
    sizes(args.dry_run, checkpoint)  # make the videos once, before the parts start timing anything
    out = args.out or ROOT / "bench" / "results"
    work = CACHE / ("suite-dry-run" if args.dry_run else "suite")
    work.mkdir(parents=True, exist_ok=True)
    for stale in [*work.glob("*.json"), *work.glob("*.pt")]:  # an earlier run's parts must not be reported
        stale.unlink()
    results = []
    for part in args.parts.split(","):
        print(f"== {part} ({time.perf_counter() - started:.0f} s so far)", flush=True)
        cmd = [sys.executable, __file__, "--child", part, "--workdir", str(work), "--checkpoint", str(checkpoint)]
        cmd += ["--dry-run"] if args.dry_run else []
        part_started = time.perf_counter()
        try:
            done = subprocess.run(cmd, timeout=args.part_timeout)
            if done.returncode == 0:
                results.append(json.loads((work / f"{part}.json").read_text()))
            else:
                results.append({"part": part, "error": f"exit code {done.returncode}"})
        except subprocess.TimeoutExpired:
            results.append({"part": part, "error": f"over {args.part_timeout} s"})
        results[-1]["part_s"] = round(time.perf_counter() - part_started, 1)
        print(json.dumps(results[-1])[:2000], flush=True)
    logits = compare_logits(work)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if not args.dry_run else platform.processor() or platform.machine(),
        "dry_run": args.dry_run, "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "command": " ".join(sys.argv), "total_s": round(time.perf_counter() - started, 1), "logits_vs_bf16": logits,
        "parts": results,
    }
    for package in ("bitsandbytes", "torchao", "av"):
        try:
            meta[package] = __import__(package).__version__
        except ImportError:
            meta[package] = None
    name = "gpu_suite-dry-run" if args.dry_run else "gpu_suite"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    table = markdown(results, logits)
    (out / f"{name}.md").write_text(f"# {meta['device']}, {meta['date']} ({meta['total_s']} s)\n\n{table}\n")
    print(table)
    print(f"wrote {out / name}.json and .md in {meta['total_s']} s")
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
