"""CPU benchmark of the video stage: 64 frames from a 10-minute and a 60-second 1280x720 H.264 video.

    (a) naive      decord at full resolution + get_batch, then PIL bicubic resize to 384 x 384
    (b) load_video load_video(path, num_frames=64, size=(384, 384)), the app's default path (for an
                   H.264 .mp4: PyAV, keyframe-to-target spans, unwanted non-reference frames skipped)
    (c) load_video the same with LLAVA_VIDEO_DECODER=decord (decord's scaled decode + get_batch)

    python bench/video_decode.py                    # 5 repeats, writes bench/results/video_decode.json
    python bench/video_decode.py --cores 2 --gop 250

The videos are generated once into bench/.cache/ (a textured camera pan with sensor noise, x264
veryfast crf 20, a keyframe every `--gop` frames; about 3.4 Mb/s). Decoding cost depends mostly on the
keyframe interval: each sampled frame costs one decode from the keyframe before it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llava_video_app import video as video_stage  # noqa: E402
from llava_video_app.video.parallel import decode_workers  # noqa: E402
from llava_video_app.video.pyav_reader import read_frame_table  # noqa: E402
from llava_video_app.sample_videos import make_video  # noqa: E402

SIZE = (384, 384)


def cached_video(cache: Path, seconds: int, gop: int, noise: float) -> Path:
    path = cache / f"pan_{seconds}s_1280x720_25fps_gop{gop}_noise{noise:g}.mp4"
    if not path.is_file():
        print(f"generating {path.name} (once) ...", flush=True)
        started = time.perf_counter()
        partial = make_video(path.with_suffix(".part.mp4"), seconds=seconds, fps=25, size=(1280, 720),
                             pattern="pan", gop=gop, noise=noise)
        partial.rename(path)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return path


def naive(path: Path, frames: int) -> np.ndarray:
    import decord
    from PIL import Image

    reader = decord.VideoReader(str(path))
    indices = np.linspace(0, len(reader) - 1, frames, dtype=int).tolist()
    batch = reader.get_batch(indices).asnumpy()
    return np.stack([np.asarray(Image.fromarray(frame).resize(SIZE, Image.BICUBIC)) for frame in batch])


def app(decoder: str):
    def run(path: Path, frames: int) -> np.ndarray:
        os.environ["LLAVA_VIDEO_DECODER"] = decoder
        read_frame_table.cache_clear()  # measure a first look at the file, frame table included
        try:
            return video_stage.load_video(path, num_frames=frames, size=SIZE).frames
        finally:
            os.environ.pop("LLAVA_VIDEO_DECODER", None)
    return run


METHODS = {
    "(a) naive: decord full-res get_batch + PIL resize": naive,
    "(b) load_video(size=384), default": app("auto"),
    "(c) load_video(size=384), LLAVA_VIDEO_DECODER=decord": app("decord"),
}


def video_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                "bytes": path.stat().st_size, "seconds": float(container.duration / 1e6),
                "frames": stream.frames, "width": stream.codec_context.width, "height": stream.codec_context.height,
                "codec": stream.codec_context.name, "bit_rate_mbps": round(container.bit_rate / 1e6, 2)}


def device() -> dict:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": model, "cores_total": os.cpu_count(), "cores_used": usable, "machine": platform.machine(),
            "system": platform.platform()}


def versions() -> dict:
    import av
    import decord
    import PIL

    return {"python": platform.python_version(), "decord": decord.__version__, "av": av.__version__,
            "ffmpeg (PyAV)": av.ffmpeg_version_info, "numpy": np.__version__, "pillow": PIL.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--gop", type=int, default=50, help="keyframe interval of the generated videos (frames)")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise of the generated videos")
    parser.add_argument("--cores", type=int, default=None, help="pin the process to this many cores (Linux)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "results" / "video_decode.json")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])

    videos = {"10 min": cached_video(args.cache, 600, args.gop, args.noise),
              "60 s": cached_video(args.cache, 60, args.gop, args.noise)}
    results = []
    load_before = os.getloadavg()  # other work on the machine skews timings: recorded with them
    for label, path in videos.items():
        for method in METHODS.values():  # warm-up: file in the page cache, libraries loaded
            method(path, args.frames)
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        outputs = {}
        for _ in range(args.repeats):  # interleaved, so that drift hits every method alike
            for name, method in METHODS.items():
                started = time.perf_counter()
                outputs[name] = method(path, args.frames)
                times[name].append(time.perf_counter() - started)
        reference = outputs[next(iter(METHODS))].astype(np.int16)
        for name in METHODS:
            diff = float(np.abs(outputs[name].astype(np.int16) - reference).mean())
            results.append({"video": label, **video_facts(path), "method": name, "times_s": [round(t, 4) for t in times[name]],
                            "median_s": round(statistics.median(times[name]), 4), "min_s": round(min(times[name]), 4),
                            "mean_abs_diff_vs_naive": round(diff, 3)})
        base = statistics.median(times[next(iter(METHODS))])
        for row in results[-len(METHODS):]:
            row["speedup_vs_naive"] = round(base / row["median_s"], 2)

    print(f"\n{args.frames} frames -> {SIZE[0]}x{SIZE[1]}, median of {args.repeats}, {device()['cores_used']} cores, "
          f"keyframe every {args.gop} frames, load average before/after {load_before[0]:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"| video  | method{' ' * 46}| median s | min s  | vs (a) | pixel diff |")
    print(f"|--------|{'-' * 52}|----------|--------|--------|------------|")
    for row in results:
        print(f"| {row['video']:<6} | {row['method']:<50} | {row['median_s']:8.2f} | {row['min_s']:6.2f} | "
              f"{row['speedup_vs_naive']:5.2f}x | {row['mean_abs_diff_vs_naive']:10.2f} |")

    report = {
        "benchmark": "video_decode", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "device": device(), "versions": versions(),
        "load_average_1_5_15min": {"before": [round(x, 2) for x in load_before],
                                   "after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"frames": args.frames, "size": SIZE, "repeats": args.repeats, "gop": args.gop, "noise": args.noise,
                     "decode_workers": decode_workers(args.frames)},
        "results": results,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
