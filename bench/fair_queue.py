"""How long a second visitor's /ask waits on a shared app (issues 18 and 20): `python app.py` on the tiny
checkpoint with its model calls paced at 20 ms a token (tests/app_call_log.py, as a GPU would), CPU only.
Two cases, each against a fresh app:

- `synth`: a /synth runs (its first call, a 512-token level-1 description, is running) when /ask comes;
- `stall`: an /ask whose video read stalls (held for good; header-read deadline 30 s) is pending.

docs/reliability.md quotes it, for this tree and for the one before the GPU's line:

    python bench/fair_queue.py
    git archive 11f7459 | tar -x -C /tmp/before && python bench/fair_queue.py --root /tmp/before
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the tree whose app is measured")
    parser.add_argument("--case", choices=["synth", "stall", "both"], default="both")
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path[:0] = [str(root), str(root / "tests")]
    from app_process import free_port, wait_until_serving
    from gradio_client import Client, handle_file

    from llava_video_app.sample_videos import make_video
    from llava_video_app.tiny import build_tiny_checkpoint

    folder = Path(tempfile.mkdtemp())
    checkpoint = build_tiny_checkpoint(folder / "tiny")
    video = make_video(folder / "square.mp4", seconds=6, fps=10, size=(160, 120))
    for case in (["synth", "stall"] if args.case == "both" else [args.case]):
        calls = folder / f"calls-{case}.log"
        calls.touch()
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "PYTHONPATH": str(root), "LLAVA_TEST_CALL_LOG": str(calls),
               "LLAVA_TEST_TOKEN_DELAY": "0.02", "LLAVA_TEST_STALL": "stall", "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1", "LLAVA_VIDEO_OUTPUT_DIR": str(folder / "out")}
        log = folder / f"app-{case}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "tests/app_call_log.py", "--model", str(checkpoint), "--quant",
                                     "fp32", "--device", "cpu", "--port", str(port), "--frames", "8"],
                                    cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(url, proc, log)
            if case == "synth":
                first = Client(url, verbose=False).submit(handle_file(str(video)), api_name="/synth")
                next(iter(first))  # "step 1/N: level1": its first model call runs
            else:
                stalled = folder / "stall.mp4"
                shutil.copy(video, stalled)
                first = Client(url, verbose=False).submit(handle_file(str(stalled)), "What?", max_new_tokens=3,
                                                          api_name="/ask")
                while "stalled stall.mp4" not in calls.read_text():  # its read is stuck
                    time.sleep(0.1)
            asker = Client(url, verbose=False)
            started = time.monotonic()
            asker.predict(handle_file(str(video)), "Who is next?", max_new_tokens=3, api_name="/ask")
            waited = time.monotonic() - started
            what = "the synthesis" if case == "synth" else "the stalled request"
            print(f"{case}: the second /ask answered in {waited:.1f} s; {what} still pending then: {not first.done()}",
                  flush=True)
            first.cancel()
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
