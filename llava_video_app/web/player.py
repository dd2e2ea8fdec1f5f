"""The Ask tab's video player as a time axis: times in answers become links that seek it, the page's
script that seeks it (a frame in the inspector, a link in the chat), and the bar under it that marks
the trimmed range (Start/End) of the whole video.

A seek link is a Markdown link to "#t=SECONDS": the Chatbot's sanitiser keeps such a link, and the
page's click handler (SEEK_JS, installed on load) sets the player's currentTime instead of following it.
"""

from __future__ import annotations

import html

from ..timestamps import find_times

SEEK_HREF = "#t="

# Installed once on page load: window.llavaSeek(seconds) seeks the Ask tab's player (after its
# metadata, if it has not loaded yet) and a click on a "#t=" link anywhere calls it. Capture phase:
# the Chatbot opens its links in a new tab otherwise.
SEEK_JS = """
() => {
  if (window.llavaSeek) return;
  window.llavaSeek = (seconds) => {
    const player = document.querySelector('#video video');
    const t = Number(seconds);
    if (!player || !Number.isFinite(t) || t < 0) return false;
    const go = () => { player.currentTime = Number.isFinite(player.duration) ? Math.min(t, player.duration) : t; };
    if (player.readyState >= 1) go(); else player.addEventListener('loadedmetadata', go, {once: true});
    return true;
  };
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a[href^="#t="]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    window.llavaSeek(link.getAttribute('href').slice(3));
  }, true);
}
"""

# The seconds of a hidden Number (the inspector's frame), passed to llavaSeek after its handler ran.
SEEK_TO_JS = "(seconds) => { if (window.llavaSeek && seconds !== null) window.llavaSeek(seconds); }"


def seek_link(text: str, seconds: float) -> str:
    return f"[{text}]({SEEK_HREF}{seconds:g})"


def with_seek_links(answer: str, duration: float | None = None) -> str:
    """The answer's Markdown with each time it mentions (timestamps.find_times) made a seek link; a
    range seeks to its start. With `duration`, times past the video's end stay plain text. Times
    inside code (between backticks) stay as they are."""
    if "`" in answer:
        parts = answer.split("`")  # odd parts are inside code spans or fences
        return "`".join(p if i % 2 else with_seek_links(p, duration) for i, p in enumerate(parts))
    out, at = [], 0
    for mention in find_times(answer, duration):
        out.append(answer[at:mention.begin])
        out.append(seek_link(answer[mention.begin:mention.end], mention.seconds))
        at = mention.end
    out.append(answer[at:])
    return "".join(out)


def html_with_seek_links(answer: str, duration: float | None = None) -> str:
    """The answer as escaped HTML with each time it mentions a seek link (<a href="#t=...">), for answers shown
    outside the Chatbot (the Compare panel); the page's click handler seeks on any such link."""
    out, at = [], 0
    for mention in find_times(answer, duration):
        out.append(html.escape(answer[at:mention.begin]))
        out.append(f'<a href="{SEEK_HREF}{mention.seconds:g}">{html.escape(answer[mention.begin:mention.end])}</a>')
        at = mention.end
    out.append(html.escape(answer[at:]))
    return "".join(out)


def trim_bar(start: float | None, end: float | None, duration: float | None) -> str:
    """HTML: the whole video as a bar, the part the model reads (Start/End) marked on it, and in words."""
    if not duration or duration <= 0:
        return ""
    lo = 0.0 if start is None else start
    hi = duration if end is None else end
    if not 0 <= lo < hi <= duration + 0.01:
        return (f'<div id="trim-range" data-valid="false">Start/End ({lo:g}–{hi:g} s) is not a range '
                f'inside this {duration:.2f} s video.</div>')
    hi = min(hi, duration)
    left, width = 100 * lo / duration, 100 * (hi - lo) / duration
    whole = lo == 0 and hi >= duration - 0.01
    words = (f"the whole video, 0–{duration:.2f} s" if whole
             else f"{lo:.2f}–{hi:.2f} s of the {duration:.2f} s video (Start/End)")
    return (f'<div id="trim-range" data-start="{lo:g}" data-end="{hi:g}" data-valid="true">'
            '<div style="position:relative;height:8px;border-radius:4px;background:var(--neutral-300,#ccc)">'
            f'<div class="trim-kept" style="position:absolute;left:{left:.3f}%;width:{width:.3f}%;top:0;bottom:0;'
            'border-radius:4px;background:var(--color-accent,#f97316)"></div></div>'
            f'<small>The model reads {html.escape(words)}.</small></div>')
