"""Many new browser sessions against a running app: does the server's memory and its upload folder
plateau? `python app.py` on the tiny checkpoint in a subprocess (its temporary files in a folder of
their own, GRADIO_TEMP_DIR); each session uploads a video and asks once through /gradio_api/call/ask
(a new session each call): an empty question (refused, no model work), and every 10th a real 1-token
answer. Prints the server's RSS and the upload folder's files and bytes every --every sessions.
docs/reliability.md quotes it, for this tree and an older one:

    python bench/sessions.py --sessions 3000
    git archive main | tar -x -C /tmp/old && python bench/sessions.py --root /tmp/old --sessions 3000

Settings go to the app through the environment (LLAVA_VIDEO_MAX_SESSIONS, LLAVA_VIDEO_UPLOAD_TTL_S).
"""

from __future__ import annotations

import argparse
import json
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


def folder_usage(folder: Path) -> tuple[int, int]:
    """(files, bytes) under `folder`; files deleted while counting are not counted."""
    count = size = 0
    for base, _, names in os.walk(folder):  # a folder deleted while walking is skipped
        for name in names:
            try:
                size += os.stat(os.path.join(base, name)).st_size
                count += 1
            except FileNotFoundError:
                continue
    return count, size


def one_session(http, api: str, video: Path, question: str) -> str:
    """Upload `video` and ask `question` on /ask as a new session; the last SSE event's name."""
    data = video.read_bytes() + os.urandom(64)  # each upload its own (Gradio keeps one copy of equal files)
    uploaded = http.post(f"{api}upload", files={"files": (video.name, data, "video/mp4")}).json()[0]
    file_data = {"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": video.name}
    event = http.post(f"{api}call/ask", json={"data": [file_data, question, 8, None, None, 1, None, None, None]}).json()
    reply = http.get(f"{api}call/ask/{event['event_id']}", timeout=120).text
    return re.findall(r"^event: (\w+)", reply, re.M)[-1]


def run(root: Path, sessions: int, every: int, env_extra: dict[str, str], report=print,
        sweep_wait_s: float = 0) -> list[dict]:
    """The rows printed; with `sweep_wait_s`, a last row once the upload folder is empty (or that
    many seconds after the last session, whichever comes first)."""
    import httpx

    sys.path.insert(0, str(ROOT))
    from llava_video_app.sample_videos import make_video
    from llava_video_app.tiny import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="sessions-"))
    checkpoint = build_tiny_checkpoint(work / "tiny")
    video = make_video(work / "clip.mp4", seconds=2, fps=5, size=(64, 48))
    uploads = work / "gradio-tmp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root), "LLAVA_VIDEO_MAX_NEW_TOKENS": "1", "GRADIO_TEMP_DIR": str(uploads),
           **env_extra}
    app = subprocess.Popen([sys.executable, "app.py", "--model", str(checkpoint), "--quant", "fp32", "--device", "cpu",
                            "--port", str(port), "--frames", "8"], cwd=root, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    api = url + "gradio_api/"
    rows = []
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(360):
                try:
                    if http.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            events = {"complete": 0, "error": 0}
            for n in range(1, sessions + 1):
                outcome = one_session(http, api, video, "What?" if n % 10 == 0 else "")
                events[outcome] = events.get(outcome, 0) + 1
                if n % every == 0 or n == sessions:
                    files, size = folder_usage(uploads)
                    row = {"sessions": n, "rss_mib": round(rss_mib(app.pid), 1), "upload_files": files,
                           "upload_kib": size // 1024, **events}
                    rows.append(row)
                    report(json.dumps(row))
            waited_until = time.monotonic() + sweep_wait_s
            while sweep_wait_s and time.monotonic() < waited_until and folder_usage(uploads)[0]:
                time.sleep(0.5)
            if sweep_wait_s:
                files, size = folder_usage(uploads)
                row = {"sessions": sessions, "after_sweep": True, "rss_mib": round(rss_mib(app.pid), 1),
                       "upload_files": files, "upload_kib": size // 1024, **events}
                rows.append(row)
                report(json.dumps(row))
    finally:
        app.terminate()
        app.wait()
    return rows


def _print(line: str) -> None:
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree whose app.py to run")
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--sweep-wait", type=float, default=0, help="seconds to wait for the uploads to be deleted")
    args = parser.parse_args()
    run(args.root, args.sessions, args.every, {}, _print, sweep_wait_s=args.sweep_wait)


if __name__ == "__main__":
    main()
