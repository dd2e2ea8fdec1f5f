"""Synthesis throughput: the recipe (llava-video synth) on N one-minute videos, videos per hour.

    python bench/synth_throughput.py                      # a CUDA machine, the app's default route
    python bench/synth_throughput.py --qa-sequential      # the 16 QA calls one after another, to compare
    python bench/synth_throughput.py --dry-run            # the tiny checkpoint on CPU: checks the script

Random weights write no JSON and stop at random places, so every call is forced to a length typical
of real outputs (ignore_eos): level-1 descriptions (one per 10 s window, with its 10 frames) 128 new
tokens, level-2 (per 30 s, text) 192, level-3 (the caption) 512, each QA call 96 (one JSON object
with a question, an answer and four options). A one-minute video at 1 fps is then 60 frames, 6 + 2 +
1 description calls and 16 QA calls. The QA calls run as one batch unless --qa-sequential.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llava_video_app.config import AppConfig, GenerationSettings  # noqa: E402
from llava_video_app.engine import Engine  # noqa: E402
from llava_video_app.sample_videos import make_video  # noqa: E402
from llava_video_app.synth.plan import SynthOptions  # noqa: E402
from llava_video_app.synth.prompts import PROMPTS, qa_prompt_types  # noqa: E402
from llava_video_app.synth.recipe import run_synthesis  # noqa: E402

LENGTHS = {"level1": 128, "level2": 192, "level3": 512, "qa": 96}  # new tokens per call (see above)


class ForcedLengths:
    """The engine with each call's length forced by its stage: descriptions by their level (read from
    the prompt's window kind), QA by LENGTHS["qa"] (the recipe passes qa_settings)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.model_id, self.quant = engine.model_id, engine.quant

    def load_clip(self, *args, **kwargs):
        return self.engine.load_clip(*args, **kwargs)

    def stream(self, video, question, history=(), *, settings=None, stop=None):
        return self.engine.stream(video, question, history, settings=_forced("level1"), stop=stop)

    def stream_text(self, question, history=(), *, settings=None, stop=None):
        if qa_prompt_types(question) is not None:  # a QA call (with --qa-sequential)
            return self.engine.stream_text(question, history, settings=settings, stop=stop)
        level = "level3" if question.startswith(PROMPTS["level3"].split("{")[0]) else "level2"
        return self.engine.stream_text(question, history, settings=_forced(level), stop=stop)

    def answer_texts(self, questions, *, settings=None, stop=None):
        return self.engine.answer_texts(questions, settings=settings, stop=stop)


def _forced(stage: str) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=LENGTHS[stage], ignore_eos=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny checkpoint on CPU")
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/llava-video-7b-random"))
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--quant", default=None, help="default: the app's (4bit NF4 on CUDA)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--qa-sequential", action="store_true", help="the QA calls one after another")
    parser.add_argument("--first-is-warm-up", action="store_true",
                        help="no separate warm-up run: the first video's time is reported, not averaged")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    cache = ROOT / "bench" / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    size = (320, 240) if args.dry_run else (1280, 720)
    videos = []
    for k in range(args.videos):  # different files: nothing of one video is cached for the next
        path = cache / f"synth_{k}_60s_{size[0]}x{size[1]}.mp4"
        if not path.exists():
            make_video(path, seconds=60, fps=25, size=size, pattern="pan" if k % 2 else "moving_square")
        videos.append(path)
    if args.dry_run:
        from llava_video_app.tiny import build_tiny_checkpoint

        checkpoint = cache / "tiny"
        if not (checkpoint / "config.json").exists():
            build_tiny_checkpoint(checkpoint)
        LENGTHS.update(level1=4, level2=4, level3=6, qa=5)
    else:
        checkpoint = args.checkpoint
    config = AppConfig(model=str(checkpoint), device="cpu" if args.dry_run else None, quant=args.quant,
                       compile=False if args.no_compile else None)
    started = time.perf_counter()
    engine = Engine.from_config(config, progress=lambda m: print(m, flush=True))
    load_s = time.perf_counter() - started
    options = SynthOptions(qa_batch=not args.qa_sequential,
                           description_settings=_forced("level1"), qa_settings=_forced("qa"))
    forced = ForcedLengths(engine)
    if not args.first_is_warm_up:
        run_synthesis(forced, videos[0], options, video_root=cache)  # warm-up: kernels, compiled shapes
        engine.clear()
    per_video = []
    for video in videos:
        t = time.perf_counter()
        result = run_synthesis(forced, video, options, video_root=cache)
        per_video.append({"video": video.name, "seconds": round(time.perf_counter() - t, 2),
                          "calls": dict(result.calls), "stage_seconds": {k: round(v, 2) for k, v in result.seconds.items()}})
        print(json.dumps(per_video[-1]), flush=True)
        engine.clear()
    measured = per_video[1:] if args.first_is_warm_up and len(per_video) > 1 else per_video
    mean = sum(v["seconds"] for v in measured) / len(measured)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": platform.processor() or platform.machine() if args.dry_run else __import__("torch").cuda.get_device_name(),
        "dry_run": args.dry_run, "quant": engine.quant, "compiled": engine._decoder is not None,
        "qa_batch": options.qa_batch, "forced_lengths": dict(LENGTHS), "load_s": round(load_s, 1),
        "seconds_per_video": round(mean, 2), "videos_per_hour": round(3600 / mean, 1), "videos": per_video,
        "command": " ".join(sys.argv),
    }
    print(f"{out['videos_per_hour']} one-minute videos/hour ({out['seconds_per_video']} s each; "
          f"{engine.quant}, {'compiled' if out['compiled'] else 'eager'}, QA {'batched' if options.qa_batch else 'sequential'})")
    path = args.json_out or ROOT / "bench" / "results" / ("synth_throughput-dry-run.json" if args.dry_run else "synth_throughput.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
