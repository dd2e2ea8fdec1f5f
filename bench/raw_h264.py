"""The same H.264 stream read from an mp4 and as a raw Annex B stream (remuxed with h264_mp4toannexb):
64 frames sampled by load_video from each, timed, with the count, rate and where the rate came from.
docs/reliability.md quotes it:

    python bench/raw_h264.py                      # 30 s of 1280x720 at 25 fps, keyframe every 10 s
    python bench/raw_h264.py --seconds 120

CPU only; writes its videos into a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from llava_video_app import video as video_stage
from llava_video_app.sample_videos import make_video


def remux_raw(mp4: Path, raw: Path) -> Path:
    """The mp4's H.264 packets as an Annex B stream (what `ffmpeg -i X.mp4 -c copy X.h264` writes)."""
    with av.open(str(mp4)) as source, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        annexb = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", source.streams.video[0], stream)
        for packet in source.demux(source.streams.video[0]):
            for filtered in annexb.filter(packet if packet.size else None):
                out.mux(filtered)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--frames", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        mp4 = make_video(Path(folder) / "clip.mp4", seconds=args.seconds, fps=25, size=(1280, 720), gop=250)
        raw = remux_raw(mp4, Path(folder) / "clip.h264")
        for path in (mp4, raw):
            start = time.perf_counter()
            clip = video_stage.load_video(path, num_frames=args.frames)
            took = time.perf_counter() - start
            print(f"{path.name:10} {clip.total_frames} frames at {clip.fps:g} fps, {clip.decoder}, "
                  f"{clip.timing or 'rate from the container'}: {took:.2f} s")


if __name__ == "__main__":
    main()
