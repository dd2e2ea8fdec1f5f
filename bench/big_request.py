"""One oversized request against a running app, timed, with the server's memory before and after:
`python app.py` on the tiny checkpoint in a subprocess, a warm-up answer, then /ask with --frames
(default 100,000) on a 6 s video. docs/reliability.md quotes it, for this tree and for an older one:

    python bench/big_request.py                           # this checkout
    git archive e3609e7 | tar -x -C /tmp/old && python bench/big_request.py --root /tmp/old
    LLAVA_VIDEO_MAX_FRAMES=100000 python bench/big_request.py   # past check_request, to the token budget

CPU only; builds the tiny checkpoint and the video in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree whose app.py to run")
    parser.add_argument("--frames", type=int, default=100_000)
    args = parser.parse_args()

    import httpx
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT))
    from llava_video_app.sample_videos import make_video
    from llava_video_app.tiny import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="big-request-"))
    checkpoint = build_tiny_checkpoint(work / "tiny")
    video = make_video(work / "square.mp4", seconds=6, fps=10, size=(160, 120))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(args.root), "LLAVA_VIDEO_MAX_NEW_TOKENS": "4"}
    app = subprocess.Popen([sys.executable, "app.py", "--model", str(checkpoint), "--quant", "fp32", "--device", "cpu",
                            "--port", str(port), "--frames", "8"], cwd=args.root, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(360):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = Client(url, verbose=False)
        client.predict(handle_file(str(video)), "Warm-up?", max_new_tokens=2, api_name="/ask")
        before = rss_mib(app.pid)
        started = time.perf_counter()
        try:
            answer = client.predict(handle_file(str(video)), "What?", frames=args.frames, api_name="/ask")
            outcome = f"answered: {answer!r}"
        except Exception as err:  # the refusal is the result being measured
            outcome = f"refused: {err}"
        elapsed = time.perf_counter() - started
        after = rss_mib(app.pid)
        print(f"{args.root}: frames={args.frames}: {elapsed:.2f} s, server RSS {before:.0f} -> {after:.0f} MiB")
        print(outcome)
    finally:
        app.terminate()
        app.wait()


if __name__ == "__main__":
    main()
