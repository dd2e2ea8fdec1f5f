"""Whether the browser can preview an upload: the model reads every allowed container (AVI, MPEG-TS,
FLV, ...), but a browser's <video> plays only a few container/codec pairs. For the rest the page says so
plainly, instead of a blank player under Gradio's red "Error" mark (PREVIEW_CSS and the page script in
player.py hide that mark and grey the player when the browser reports it cannot play the file).
"""

from __future__ import annotations

from pathlib import Path

from ..video import VideoError
from ..video.admission import ALLOWED
from ..video.probe import probe_file

# What Chromium, Firefox and Safari all play without extra codecs (HEVC needs hardware, MPEG-4 part 2 none).
PLAYABLE = {"mov": {"h264", "av1", "vp9"}, "matroska": {"vp8", "vp9", "av1", "h264"}, "ogg": {"theora", "vp8"}}


def preview_note(video: str) -> str:
    """"" when browsers play this file, else one sentence: no preview, the model reads it all the same.
    A file the probe refuses gets "" (the caller already says it is not a usable video)."""
    try:
        probe = probe_file(video)
    except (VideoError, OSError):
        return ""
    container, codec = probe.admitted.demuxer, probe.codec
    if codec in PLAYABLE.get(container, ()):
        return ""
    what = ("a raw H.264 stream with no container" if container == "h264"
            else f"{ALLOWED.get(container, container).upper()} with {codec} video")
    return (f"**No preview:** browsers cannot play {Path(video).name} ({what}), but the model "
            "reads it all the same: ask away, and the frames it saw show below.")


# Installed once on page load. When the browser reports it cannot play the Ask tab's video, #video gets
# the class "no-preview": the blank player says "No preview" (the info line under it says whether the model can
# read the file: preview_note, or "Not a usable video"), and Gradio's own red "Error"
# mark (the player's media error, which it shows as the component's error) is hidden; a video that plays
# takes the class away. Capture phase: media errors do not bubble.
PREVIEW_JS = """
() => {
  if (window.llavaPreviewWatch) return;
  window.llavaPreviewWatch = true;
  const style = document.createElement('style');
  style.textContent = `
    #video.no-preview video { visibility: hidden; }
    #video.no-preview .wrap .error, #video.no-preview .wrap span.error { display: none !important; }
    #video.no-preview:has(video)::after { content: "No preview in this browser";
      position: absolute; left: 0; right: 0; top: 45%; text-align: center; color: var(--body-text-color-subdued); }`;
  document.head.appendChild(style);
  const box = (event) => event.target instanceof HTMLVideoElement && event.target.closest('#video');
  document.addEventListener('error', (event) => { const b = box(event); if (b) b.classList.add('no-preview'); }, true);
  document.addEventListener('loadeddata', (event) => { const b = box(event); if (b) b.classList.remove('no-preview'); },
                            true);
}
"""
