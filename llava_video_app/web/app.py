"""The page and serving it: the header and status line, the Ask tab, any extra tabs (the synthesis
tab), the named API; `launch` with the app's settings; `run_app` for `python app.py` and
`llava-video app` (whose flags cli.py defines, once, for both).

Stop sets the session's StopFlag (the engine checks it after every token) and cancels the event; it
also reaches a forked ZeroGPU worker (see zerogpu.StopFlag).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from ..config import AppConfig
from ..engine import Engine
from .ask_tab import VideoChat, ask_api, ask_tab
from .batch_tab import batch_tab
from .compare_panel import COMPARE_CSS, compare_api, comparer_of
from .frame_inspector import INSPECTOR_CSS
from .serving import EngineHolder, ModelRunner
from .synth_tab import synth_tab

log = logging.getLogger(__name__)

# One trim control, Start/End: Gradio's own video editor (the scissors: trim to a selection, reset) would
# cut a second copy of the upload that Start/End know nothing of (and it hung for 40 s offline).
PAGE_CSS = """
#video button[aria-label="Trim video to selection"], #video button[title="Trim video to selection"],
#video button[aria-label="Reset video to initial value"], #video button[title="Reset video to initial value"],
#synth-video button[aria-label="Trim video to selection"], #synth-video button[title="Trim video to selection"]
{ display: none !important; }
""" + INSPECTOR_CSS + COMPARE_CSS

# An extra tab: called inside the tab bar with the model runner and the Ask tab's video component.
ExtraTab = Callable[[ModelRunner, gr.Video], Any]


def build_ui(chat: VideoChat | EngineHolder | Engine, extra_tabs: Sequence[ExtraTab] = ()) -> gr.Blocks:
    """The Blocks app: the Ask tab and its endpoints, then `extra_tabs` (e.g. synth_tab.synth_tab),
    each given the model runner and the Ask tab's video."""
    chat = chat if isinstance(chat, VideoChat) else VideoChat(chat)
    private = dict(api_visibility="private")
    # analytics: off unless the config says so (keep_start_up_offline has set the environment alike)
    # Uploads and other temporary files go upload_ttl_s after they were made (checked every few minutes).
    ttl = chat.config.upload_ttl_s
    with gr.Blocks(title="LLaVA-Video", analytics_enabled=chat.config.analytics,
                   delete_cache=(max(1, min(ttl, 300)), ttl)) as demo:
        gr.Markdown("## LLaVA-Video: ask about a video\nDrop in a video, pick a task or type a question, "
                    "and watch the answer stream in. Follow-up questions continue the conversation on the "
                    "same clip.")
        status = gr.Markdown(chat.status(), elem_id="status")
        # The endpoints first: gradio names every event after its function, first come first served, so
        # the UI's own handlers (chat.ask, ...) must not take "ask" from /ask.
        ask_api(chat)
        compare_api(comparer_of(chat))
        with gr.Tabs():
            with gr.Tab("Ask about a video", id="ask"):
                video = ask_tab(chat, status)
            for add_tab in extra_tabs:
                add_tab(chat.model, video)
        timer = gr.Timer(1.0, active=chat.holder.loading)
        timer.tick(chat.loading_status, None, [status, timer], **private)
        demo.load(chat.status, None, status, **private)
        demo.unload(chat.forget_session)
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(demo: gr.Blocks, config: AppConfig, **overrides: Any):
    """demo.launch with the app's settings: local address unless --host/--share, upload size limit,
    MCP server only when asked for."""
    if config.mcp_server and importlib.util.find_spec("mcp") is None:
        raise SystemExit("error: --mcp-server needs the MCP extra: pip install 'gradio[mcp]'")
    options: dict[str, Any] = dict(server_name=config.host, server_port=config.port, share=config.share,
                                   max_file_size=f"{config.max_upload_mb}mb", mcp_server=config.mcp_server,
                                   show_error=True, state_session_capacity=config.max_sessions, css=PAGE_CSS)
    options.update(overrides)
    sweep_uploads(config.upload_ttl_s, keep=lambda: _examples(demo))
    return demo.launch(**options)


def _examples(demo: gr.Blocks) -> set[str]:
    """The cached files Gradio keeps for good (components' defaults and examples)."""
    return {str(Path(str(p)).resolve()) for block in list(demo.blocks.values())
            for p in list(getattr(block, "keep_in_cache", ()))}


def sweep_uploads(ttl_s: int, folder: Path | None = None, every_s: float | None = None,
                  keep: Callable[[], set[str]] = set) -> threading.Thread:
    """Delete the files in Gradio's cache folder (uploads, their copies, the upload route's empty
    leftovers) once `ttl_s` old, but those `keep()` names (the examples); checked every `every_s`
    (default min(ttl_s, 300)) seconds. Gradio's own delete_cache is kept too, but its sweep dies when
    an upload arrives while it runs (it iterates the set of uploads as they are added), and it does not
    know the leftovers: measured, with a 30 s TTL nothing was deleted under a steady stream of uploads."""
    folder = folder or Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    every_s = every_s or max(1, min(ttl_s, 300))

    def sweep() -> None:
        while True:
            time.sleep(every_s)
            try:
                cutoff, kept = time.time() - ttl_s, keep()
                paths = sorted(folder.rglob("*"), reverse=True)  # files before their folders
            except Exception as err:  # a folder went away while listing (Gradio deletes too): next time
                log.debug("upload sweep skipped: %s", err)
                continue
            for path in paths:
                try:
                    if path.is_dir():
                        path.rmdir()  # only if emptied
                    elif path.lstat().st_ctime < cutoff and str(path.resolve()) not in kept:
                        path.unlink()
                except OSError:
                    continue  # in use, not empty, gone meanwhile: the next sweep looks again

    thread = threading.Thread(target=sweep, name="sweep-uploads", daemon=True)
    thread.start()
    return thread


def run_app(config: AppConfig) -> None:
    """Serve at once, load the model in the background (its progress shows in the status line).

    A model that cannot be loaded (no GPU for it, no network for the Hub, a wrong path) ends the app
    with exit code 1 after the holder's one-line message: a page that can never answer is no use to
    whoever started it from a terminal. The Space (spaces/app.py) keeps serving its error page."""
    holder = EngineHolder(config).start()
    demo = build_ui(VideoChat(holder), extra_tabs=[synth_tab, batch_tab])
    if not holder.loading and holder.error is not None:  # failed before the page was up: nothing to serve
        raise SystemExit(1)
    launch(demo, config, prevent_thread_lock=True)
    holder.wait()
    if holder.error is not None:
        demo.close()
        raise SystemExit(1)
    demo.block_thread()  # until Ctrl+C
