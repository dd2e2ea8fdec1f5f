"""Files that make FFmpeg read something other than themselves (issue 18): HLS playlists whose segments
name a server file (absolute, file://, ../ relative), a URL, themselves, or never end; an ffconcat
list; a playlist renamed .mp4; and names that FFmpeg reads as nested protocols. Each is made next to a
`secrets/` folder holding a real video, the file the trick tries to reach (watch it with OpenedFiles)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Callable

from llava_video_app.sample_videos import make_video

PLAYLIST_MESSAGE = ("{name} is an HLS playlist, not a video file: only a single video file (mp4/mov, mkv/webm, avi, "
                    "mpeg-ts, mpeg-ps, flv, ogg or raw H.264) is accepted")
CONCAT_MESSAGE = ("{name} is an ffmpeg concat list, not a video file: only a single video file (mp4/mov, mkv/webm, "
                  "avi, mpeg-ts, mpeg-ps, flv, ogg or raw H.264) is accepted")
NOT_FOUND = "video file not found: {name}"


def secret_video(folder: Path) -> Path:
    """folder/secrets/secret.mp4, a real video: what the tricks below point at."""
    secret = folder / "secrets" / "secret.mp4"
    if not secret.exists():
        make_video(secret, seconds=1, fps=10, size=(64, 48))
    return secret


def _vod(*segments: str) -> str:
    lines = "".join(f"#EXTINF:1.0,\n{segment}\n" for segment in segments)
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n{lines}#EXT-X-ENDLIST\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# file name -> (make(path, secret) -> path, the message after the refusal, with {name})
TRICKS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "absolute.m3u8": (lambda p, s: _write(p, _vod(str(s))), PLAYLIST_MESSAGE),
    "file-url.m3u8": (lambda p, s: _write(p, _vod(s.as_uri())), PLAYLIST_MESSAGE),
    "relative.m3u8": (lambda p, s: _write(p, _vod(os.path.relpath(s, p.parent))), PLAYLIST_MESSAGE),
    "http.m3u8": (lambda p, s: _write(p, _vod("http://127.0.0.1:9/segment.ts")), PLAYLIST_MESSAGE),
    "self.m3u8": (lambda p, s: _write(p, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nself.m3u8\n"), PLAYLIST_MESSAGE),
    "live.m3u8": (lambda p, s: _write(p, _vod(str(s)).replace("#EXT-X-ENDLIST\n", "")), PLAYLIST_MESSAGE),
    "concat.ffconcat": (lambda p, s: _write(p, f"ffconcat version 1.0\nfile '{s}'\n"), CONCAT_MESSAGE),
    "playlist-renamed.mp4": (lambda p, s: _write(p, _vod(str(s))), PLAYLIST_MESSAGE),
}


def make_tricks(folder: Path) -> dict[str, Path]:
    """Every trick, in folder/uploads/ (the secret in folder/secrets/)."""
    secret = secret_video(folder)
    return {name: make(folder / "uploads" / name, secret) for name, (make, _) in TRICKS.items()}


def protocol_names(secret: Path) -> list[str]:
    """Names FFmpeg would read as a protocol reaching the secret, not as a file of that name."""
    data = base64.b64encode(secret.read_bytes()[:120]).decode()  # short: a name, not a file's worth
    return [f"subfile,,start,0,end,0,,:{secret}", f"concat:{secret}|{secret}", f"file:{secret}",
            f"data:video/mp4;base64,{data}", "http://127.0.0.1:9/video.mp4"]
