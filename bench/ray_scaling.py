"""How synthesis throughput scales with Ray CPU workers (synth/ray_runner.py), against the in-process
runner, on the tiny random checkpoint: videos per hour, end to end (engines' start-up included) and
steady (after every worker has finished its first video).

    python bench/ray_scaling.py                       # 12 one-minute videos; 1, 2, 3 workers; in-process
    python bench/ray_scaling.py --videos 8 --workers 1 2 --repeats 2

Every model call is real (descriptions and QA; the random model's QA is rejected as unparseable, but
it costs its tokens): `--tokens` new tokens per call, end of sequence ignored, so each run makes the
same work. The in-process runner runs with torch at 1 thread (as a Ray CPU worker: Ray sets
OMP_NUM_THREADS to the worker's 1 CPU) and at the machine's default. Ray is started with
max(workers, cores) logical CPUs, so 3 workers on 2 cores run (and show where scaling stops), and
its workers at nice 0 like the in-process runner (RAY_worker_niceness; Ray's default is 15).
Writes bench/results/ray_scaling.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # Ray workers
# Ray runs its workers at nice 15 (so its own daemons stay responsive); on a machine shared with other
# work that alone would slow them against the in-process runner at nice 0. Same priority for both:
os.environ.setdefault("RAY_worker_niceness", "0")

from llava_video_app.config import AppConfig, GenerationSettings  # noqa: E402
from llava_video_app.synth.plan import SynthOptions  # noqa: E402


def rates(times: list[float], started: float, workers: int) -> dict:
    """Videos per hour end to end, and steady: from the moment every worker has delivered a video."""
    times = sorted(times)
    end_to_end = len(times) / (times[-1] - started) * 3600
    k = min(workers, len(times) - 1)
    steady = (len(times) - k) / (times[-1] - times[k - 1]) * 3600 if k >= 1 and times[-1] > times[k - 1] else None
    return {"seconds": round(times[-1] - started, 1), "videos_per_hour": round(end_to_end),
            "steady_videos_per_hour": round(steady) if steady else None}


def run_in_process(videos: Path, out: Path, options: SynthOptions, config: AppConfig, threads: int | None) -> dict:
    import torch

    from llava_video_app.engine import Engine
    from llava_video_app.synth.batch import run_batch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        times: list[float] = []
        engine = Engine.from_config(config)
        summary = run_batch(videos, out, options, engine=engine, progress=False,
                            on_video=lambda *_: times.append(time.perf_counter()))
        assert summary.done == len(times) and not summary.failed, summary.format()
        return {"runner": "in-process", "torch_threads": torch.get_num_threads(), **rates(times, started, 1),
                "calls_per_video": sum(summary.calls.values()) / summary.done}
    finally:
        torch.set_num_threads(before)


def run_on_ray(videos: Path, out: Path, options: SynthOptions, config: AppConfig, workers: int) -> dict:
    import ray

    from llava_video_app.synth.ray_runner import run_ray

    ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING")
    try:
        times: list[float] = []
        started = time.perf_counter()
        summary = run_ray(videos, out, options, config=config, workers=workers, gpus_per_worker=0, progress=False,
                          on_video=lambda *_: times.append(time.perf_counter()))
        assert summary.done == len(times) and not summary.failed, summary.format()
        return {"runner": "ray", "workers": workers, **rates(times, started, workers)}
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=60, help="length of each video")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per model call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_scaling.json")
    args = parser.parse_args()

    from llava_video_app.sample_videos import make_video
    from llava_video_app.tiny import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    try:
        checkpoint = build_tiny_checkpoint(work / "tiny")
        videos = work / "videos"
        for i in range(args.videos):
            make_video(videos / f"v{i:03d}.mp4", seconds=args.seconds, fps=2, size=(64, 48))
        settings = GenerationSettings(max_new_tokens=args.tokens, ignore_eos=True)
        options = SynthOptions(description_settings=settings, qa_settings=settings)
        config = AppConfig(model=str(checkpoint), quant="fp32", device="cpu")
        results = []
        for repeat in range(args.repeats):
            for threads in (1, None):
                results.append(run_in_process(videos, work / f"out-local-{threads}-{repeat}", options, config, threads))
                print(json.dumps(results[-1]), flush=True)
            for workers in args.workers:
                results.append(run_on_ray(videos, work / f"out-ray-{workers}-{repeat}", options, config, workers))
                print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              "videos": args.videos, "video_seconds": args.seconds, "tokens_per_call": args.tokens,
              "command": "python bench/ray_scaling.py " + " ".join(sys.argv[1:]), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
