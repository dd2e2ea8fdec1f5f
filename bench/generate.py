"""GPU benchmark: LLaVA-Video-7B-Qwen2's real configuration with random weights, 4-bit NF4 vs bf16.

For each quantisation, loaded through the project's own loader from a checkpoint written in the
original format, each decode mode (eager: dynamic KV cache, Python-driven steps; compile: static KV
cache + torch.compile "reduce-overhead", i.e. CUDA graphs, the app's --compile) and each frame count:
load time, peak VRAM (allocated and reserved), time to first token from the video file (decode +
encode + prefill, warm model), decode tokens/s over a forced number of new tokens, and time to first
token of a follow-up question on the same video.

    python bench/generate.py                       # on a CUDA machine (writes ~15 GB of random weights once)
    python bench/generate.py --modes eager         # skip the compiled runs (each compiles ~1 min per size)
    python bench/generate.py --dry-run             # tiny config on CPU: checks the script end to end

Random weights: speed and memory are those of the real model; the answers are noise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llava_video_app.checkpoint import KNOWN_VISION_TOWERS  # noqa: E402
from llava_video_app.config import AppConfig, GenerationSettings  # noqa: E402
from llava_video_app.engine import Engine  # noqa: E402
from llava_video_app.model import LlavaVideoModel  # noqa: E402
from llava_video_app.prompts import Turn  # noqa: E402
from llava_video_app.sample_videos import make_video  # noqa: E402
from llava_video_app.tiny import (  # noqa: E402
    build_tiny_checkpoint,
    build_tokenizer,
    write_random_weights,
)

CONFIG_7B = ROOT / "bench" / "configs" / "llava-video-7b-qwen2.json"


def build_random_7b(outdir: Path, device: str) -> Path:
    if (outdir / "model.safetensors.index.json").is_file():
        return outdir
    outdir.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in json.loads(CONFIG_7B.read_text()).items() if not k.startswith("_")}
    build_tokenizer(outdir)  # a small BPE: tokenisation cost is negligible next to the model
    vision = KNOWN_VISION_TOWERS[config["mm_vision_tower"]]
    print(f"writing a random 7B checkpoint to {outdir} ...", flush=True)
    write_random_weights(outdir, config, vision, shards=8, device=device)
    return outdir


def gib(n: int) -> float:
    return round(n / 2**30, 2)


def run_one(checkpoint: Path, quant: str, modes: list[str], device: str, frame_counts: list[int], video: Path,
            warmup_video: Path, new_tokens: int) -> list[dict]:
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = LlavaVideoModel.load(str(checkpoint), quant=quant, device=device)
    load_s = time.perf_counter() - started
    weights_gib = gib(torch.cuda.memory_allocated()) if cuda else None
    rows = []
    for mode in modes:
        for frames in frame_counts:
            engine = Engine(model, AppConfig(frames=frames, max_new_tokens=new_tokens, compile=mode == "compile"))
            settings = GenerationSettings(max_new_tokens=new_tokens, ignore_eos=True)
            # Warm model: CUDA kernels loaded, and for "compile" the decode step compiled for this size.
            compile_started = time.perf_counter()
            engine.warm_up(frames)
            compile_s = time.perf_counter() - compile_started
            engine.ask(warmup_video, "Warm-up.", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
            engine.clear()  # nothing of the measured video is cached: the first question starts from the file
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            engine.ask(video, "Please describe this video in detail.", settings=settings)
            first = engine.last_stats
            follow = GenerationSettings(max_new_tokens=8, ignore_eos=True)
            engine.ask(video, "What happens next?", [Turn("Please describe this video in detail.", "A video.")],
                       settings=follow)
            second = engine.last_stats
            row = {
                "quant": quant, "mode": mode, "frames": frames, "load_s": round(load_s, 2), "weights_gib": weights_gib,
                "compile_s": round(compile_s, 1) if mode == "compile" else None,
                "visual_tokens": first.visual_tokens, "prompt_tokens": first.prompt_tokens,
                "ttft_s": round(first.time_to_first_token_s, 3), "decode_tok_s": round(first.tokens_per_s, 1),
                "new_tokens": first.new_tokens, "followup_ttft_s": round(second.time_to_first_token_s, 3),
                "followup_reused_tokens": second.reused_tokens,
            }
            if cuda:
                row["peak_allocated_gib"] = gib(torch.cuda.max_memory_allocated())
                row["peak_reserved_gib"] = gib(torch.cuda.max_memory_reserved())
            rows.append(row)
            print(json.dumps(row), flush=True)
            engine.clear()
            del engine
    del model
    if cuda:
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict]) -> str:
    cols = ["quant", "mode", "frames", "visual_tokens", "load_s", "compile_s", "peak_allocated_gib", "peak_reserved_gib", "ttft_s",
            "decode_tok_s", "followup_ttft_s"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(str(r.get(c, "n/a")) for c in cols) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny config on CPU, to check the script")
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/llava-video-7b-random"))
    parser.add_argument("--quants", default="4bit,bf16")
    parser.add_argument("--modes", default="eager,compile", help="decode modes: eager, compile (--compile)")
    parser.add_argument("--frames", default="8,32,64")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--video-seconds", type=float, default=60)
    parser.add_argument("--json-out", type=Path, default=None,
                        help="default bench/results/generate.json (generate-dry-run.json with --dry-run)")
    args = parser.parse_args()

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --dry-run to check the script on CPU")
    cache = ROOT / "bench" / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    size = (1280, 720) if not args.dry_run else (320, 240)
    video = cache / f"bench_{int(args.video_seconds)}s_{size[0]}x{size[1]}.mp4"
    if not video.exists():
        make_video(video, seconds=args.video_seconds, fps=25, size=size)
    warmup_video = cache / f"bench_warmup_4s_{size[0]}x{size[1]}.mp4"
    if not warmup_video.exists():
        make_video(warmup_video, seconds=4, fps=25, size=size, pattern="pan")
    if args.dry_run:
        checkpoint = build_tiny_checkpoint(cache / "tiny")
        quants, frames, new_tokens = args.quants.split(","), [int(f) for f in args.frames.split(",")], min(args.new_tokens, 16)
    else:
        checkpoint = build_random_7b(args.checkpoint, device)
        quants, frames, new_tokens = args.quants.split(","), [int(f) for f in args.frames.split(",")], args.new_tokens

    rows = []
    for quant in quants:
        rows += run_one(checkpoint, quant, args.modes.split(","), device, frames, video, warmup_video, new_tokens)
    print(table(rows))
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "dry_run": args.dry_run, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "command": " ".join(sys.argv), "rows": rows,
    }
    try:
        meta["bitsandbytes"] = __import__("bitsandbytes").__version__
    except ImportError:
        pass
    if args.json_out is None:
        args.json_out = ROOT / "bench" / "results" / ("generate-dry-run.json" if args.dry_run else "generate.json")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
