"""The "Generate synthetic QA" tab: the recipe (synth/) on the Ask tab's video or one uploaded here,
its progress and the level-1/2/3 descriptions as they are written, the QA pairs in a table to edit or
untick, Save into the output folder, a zip to download; and the /synth endpoint.

On a shared app (AppConfig.per_session) each browser session saves into a folder of its own,
`<output folder>/sessions/<id>/` (the id: a hash of Gradio's session hash, so it names no path the
client chose), and Download zips that folder only; a single-user app uses the output folder itself.

It needs only the model runner (its engine and config) and the Ask tab's video component, which
app.build_ui passes to it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator, Sequence

import gradio as gr

from .. import video as video_stage
from ..dataset import TASKS as RECORD_TASKS
from ..engine import Engine
from ..prompts import QUESTION_TYPES
from ..synth.events import (
    CallStarted,
    DescriptionWritten,
    Done,
    Planned,
    Stopped,
    SynthEvent,
    TextChunk,
)
from ..synth.plan import SynthOptions
from ..synth.qa import QAPair
from ..synth.recipe import synthesize
from ..synth.result import Description, SynthResult
from ..output_folder import SESSIONS_DIR, writing_to
from ..synth.saving import export_run, save_edited_pairs
from ..video import VideoError
from .serving import (
    HEARTBEAT,
    SYNTH_EVENTS,
    EngineHolder,
    ModelRunner,
    Sessions,
    refuse,
    stream_in_thread,
    user_errors,
)
from . import qa_table
from .zerogpu import StopFlag

SYNTH_COLUMNS = qa_table.COLUMNS
# How often a quiet synthesis re-sends its progress (see stream_in_thread's heartbeat): the longest a
# client's disconnect goes unnoticed while the model works.
SYNTH_HEARTBEAT_S = 0.5
_STAGE_LABEL = {"level1": "level-1 window", "level2": "level-2 window", "level3": "level-3 (whole video)"}
_LEVEL = {"level1": 1, "level2": 2, "level3": 3}


def _secs(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _call_label(event: CallStarted) -> str:
    """What a model call is about: "level-1 window 0-10 s", "QA: Temporal"."""
    if event.stage == "qa":
        return f"QA: {event.question_type}" if event.question_type else "QA"
    start, end = event.window
    return f"{_STAGE_LABEL[event.stage]} {_secs(start)}-{_secs(end)} s"


def _level_text(descriptions: Sequence[Description], partial: tuple[float, float, str] | None = None) -> str:
    """The descriptions of one level, each under its time span; `partial` = the one being written."""
    parts = [f"[{_secs(d.start)}-{_secs(d.end)} s] {d.text}" for d in descriptions]
    if partial is not None:
        parts.append(f"[{_secs(partial[0])}-{_secs(partial[1])} s] {partial[2]}")
    return "\n\n".join(parts)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "x", "✓", "checked")
    try:
        return bool(value) and value == value  # NaN (an empty pandas cell) is not ticked
    except Exception:
        return bool(value)


def _table_rows(table: Any) -> list[list[Any]]:
    """The Dataframe's value as rows: a pandas DataFrame, a {"data": ...} dict or a list of lists."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):  # pandas
        return [list(row) for row in table.values.tolist()]
    if isinstance(table, dict):
        return [list(row) for row in table.get("data") or []]
    return [list(row) for row in table]


def video_for_synthesis(own: str | None, shared: str | None) -> str | None:
    """The video Generate works on: one uploaded in the synthesis tab wins, else the Ask tab's."""
    return own or shared or None


def synth_source(own: str | None, shared: str | None = None) -> str:
    """The line that says which video Generate will use, and where it comes from."""
    video = video_for_synthesis(own, shared)
    if video is None:
        return "No video yet: drop one into the Ask tab, or upload one here."
    try:
        name = f"`{Path(video).name}` ({video_stage.probe_video(video).duration:.2f} s)"
    except (VideoError, OSError, ValueError):
        name = f"`{Path(video).name}`"
    if own:
        return f"Video: {name}, uploaded here" + ("; clear it to use the Ask tab's." if shared else ".")
    return f"Video: {name}, the Ask tab's; upload one here to use another."


class SynthPanel:
    """Handlers of the "Generate synthetic QA" tab, over the recipe (synth.recipe.synthesize) with the
    model runner's engine. Results are saved under `out_dir` (default: the config's output_dir): in it,
    or with `per_session` (default: the config's per_session()) in the browser session's own folder."""

    def __init__(self, model: ModelRunner | EngineHolder | Engine, out_dir: str | os.PathLike | None = None,
                 per_session: bool | None = None):
        self.model = model if isinstance(model, ModelRunner) else ModelRunner(model)
        self.out_dir = Path(out_dir) if out_dir is not None else Path(self.model.config.output_dir)
        self.per_session = self.model.config.per_session() if per_session is None else per_session
        self.sessions = Sessions(self.model.config.max_sessions)
        self.api_description_tokens: int | None = None  # /synth's limits; None = SynthOptions' defaults
        self.api_qa_tokens: int | None = None

    def session_id(self, request: gr.Request | None) -> str:
        """The browser session's id: a hash of Gradio's session hash (which the client picks)."""
        return hashlib.sha256(Sessions.key(request).encode()).hexdigest()[:32]

    def folder_for(self, request: gr.Request | None) -> Path:
        """Where this browser session's data is saved: its own folder on a shared app, else the
        output folder."""
        return self.out_dir / SESSIONS_DIR / self.session_id(request) if self.per_session else self.out_dir

    @staticmethod
    def _check_video(video: str | None) -> str | None:
        """None when the video is usable, else the message to show."""
        if not video:
            return "Upload a video first."
        try:
            video_stage.probe_video(video)
        except VideoError as err:
            return f"Not a usable video: {str(err).replace(str(video), Path(video).name)}"
        except (OSError, ValueError) as err:
            return f"Not a usable video: {Path(video).name}: {err}"
        return None

    def _options(self, types: Sequence[str] | None, description_tokens: float | None,
                 qa_tokens: float | None) -> SynthOptions:
        """The run's options: the ticked types, and the sliders' token limits (0 or None: the default)."""
        return SynthOptions.with_limits(description_tokens=int(description_tokens) if description_tokens else None,
                                        qa_tokens=int(qa_tokens) if qa_tokens else None,
                                        **({"types": tuple(types)} if types is not None else {}))

    def events(self, video: str, types: Sequence[str] | None, description_tokens: float | None,
               qa_tokens: float | None, stop: threading.Event | None) -> Iterator[SynthEvent | object]:
        """synthesize() over the engine, after checking the input (gr.Error on bad input), run in a
        thread: its events, and HEARTBEAT whenever none came for SYNTH_HEARTBEAT_S."""
        message = self._check_video(video)
        if message:
            raise refuse(message)
        with user_errors(video):
            options = self._options(types, description_tokens, qa_tokens)
        engine = self.model.synth_engine()
        stop = stop if stop is not None else StopFlag()
        # In a thread of its own, with heartbeats: a client that leaves is noticed by Gradio within one
        # heartbeat even in a long model call, and closing this stops the recipe through `stop` (the
        # engine checks it after every token), so the GPU is free in seconds, not after the run.
        with user_errors(video), closing(stream_in_thread(
                lambda: synthesize(engine, video, options, video_root=Path(video).parent, stop=stop), stop,
                heartbeat=SYNTH_HEARTBEAT_S)) as events:
            yield from events

    def generate(self, video: str | None, types: Sequence[str] | None, description_tokens: float | None = None,
                 qa_tokens: float | None = None, ask_video: str | None = None,
                 request: gr.Request | None = None) -> Iterator[tuple]:
        """Generate button, on `video` (uploaded in this tab) or else `ask_video` (the Ask tab's).
        Yields (progress, level 1, level 2, level 3, table, result): the progress line per model call,
        the descriptions as they are written, at the end the QA table and the SynthResult (for Save).
        Bad input: a warning and a message in the progress line."""
        skip = gr.skip()
        video = video_for_synthesis(video, ask_video)
        if types is not None and len(types) == 0:
            gr.Warning("Tick at least one question type.")
            yield "Tick at least one question type.", skip, skip, skip, skip, skip
            return
        message = self._check_video(video)
        if message:
            gr.Warning(message)
            yield message, skip, skip, skip, skip, skip
            return
        session = self.sessions.get(request)
        session.stop.clear()
        session.idle.clear()
        levels: dict[int, list[Description]] = {1: [], 2: [], 3: []}
        progress, partial = "Loading the video…", ""
        try:
            yield progress, "", "", "", [], None
            try:
                with closing(self.events(video, types, description_tokens, qa_tokens, session.stop)) as events:
                    for event in events:
                        if event is HEARTBEAT:  # nothing new: an update all the same (a client that left is seen)
                            yield self.waiting(progress), skip, skip, skip, skip, skip
                        elif isinstance(event, Planned):
                            calls = event.plan.calls
                            progress = (f"{event.total_steps} model calls: {calls['level1']} level-1, "
                                        f"{calls['level2']} level-2, 1 level-3, {calls['qa']} QA")
                            yield progress, skip, skip, skip, skip, skip
                        elif isinstance(event, CallStarted):
                            partial = ""
                            progress = f"step {event.step}/{event.total_steps}: {_call_label(event)}"
                            yield progress, skip, skip, skip, skip, skip
                        elif isinstance(event, TextChunk) and event.window is not None:  # a description
                            partial += event.text
                            n = _LEVEL[event.stage]
                            out = [skip, skip, skip]
                            out[n - 1] = _level_text(levels[n], (*event.window, partial))
                            yield progress, *out, skip, skip
                        elif isinstance(event, DescriptionWritten):
                            n = event.description.level
                            levels[n].append(event.description)
                            out = [skip, skip, skip]
                            out[n - 1] = _level_text(levels[n]) if n < 3 else event.description.text
                            yield progress, *out, skip, skip
                        elif isinstance(event, Stopped):
                            yield f"Stopped at {progress}.", skip, skip, skip, skip, skip
                            return
                        elif isinstance(event, Done):
                            result = event.result
                            rejects = ", ".join(f"{k} {v}" for k, v in sorted(result.rejects.items())) or "none"
                            done = (f"Done: {len(result.pairs)} QA pairs ({result.mc_skipped} open-ended only), "
                                    f"rejected: {rejects}. Edit the table, untick rows to drop, then Save.")
                            yield done, skip, skip, skip, self.table(result), result
            except gr.Error as err:
                gr.Warning(err.message)
                yield str(err.message), skip, skip, skip, skip, skip
        finally:
            session.idle.set()
            session.stop.clear()

    def waiting(self, progress: str) -> str:
        """The progress line, and while an answer has the GPU (the synthesis's next call waits for its
        turn: gpu_queue), that it waits."""
        running = self.model.gpu_queue.running
        if running is None or running == "a synthesis call":
            return progress
        return f"{progress} (waiting for the GPU: {running} is running)"

    @staticmethod
    def table(result: SynthResult) -> list[list[Any]]:
        """The QA table (qa_table.COLUMNS), multiple-choice options included."""
        return qa_table.rows(result)

    def table_edit(self, result: SynthResult, table: Any) -> qa_table.TableEdit:
        """The edited pairs and a note for each row not saved as shown (see qa_table.pairs_from_rows)."""
        return qa_table.pairs_from_rows(result, _table_rows(table), _truthy)

    def pairs_from_table(self, result: SynthResult, table: Any) -> list[QAPair]:
        """The edited pairs: row i is result.pairs[i] as edited; rows added at the end become new pairs."""
        return self.table_edit(result, table).pairs

    def save(self, result: SynthResult | None, table: Any, request: gr.Request | None = None) -> str:
        """Save button: this video's records with the table's edits (unticked rows removed) into the
        session's folder (folder_for). Returns where and how many."""
        if result is None:
            gr.Warning("Nothing to save yet: generate first.")
            return "Nothing to save yet: generate first."
        edit = self.table_edit(result, table)
        pairs = edit.pairs
        folder = self.folder_for(request)
        # A shared app does not tell its visitors where on the server their data lies.
        where = "this browser session's folder" if self.per_session else str(folder.resolve())
        with user_errors(), writing_to(folder, where):  # a full or read-only disk: one line, nothing torn
            written = save_edited_pairs(folder, result, pairs)
        counts = {task: len(result.records(pairs)[task]) for task in RECORD_TASKS}
        kept = sum(1 for p in pairs if p.keep)
        files = ", ".join(sorted(written)) or "no split files"
        notes = "".join(f"\n- {note}" for note in edit.notes)
        return (f"Saved to {where}: {counts.get('cap', 0)} caption, {counts.get('oe', 0)} "
                f"open-ended, {counts.get('mc', 0)} multiple-choice records ({kept} of {len(pairs)} pairs kept) "
                f"in {files}; manifest videos/{result.video_id}.json"
                + (f"\n\n**Not saved as shown:**{notes}" if notes else ""))

    def download(self, request: gr.Request | None = None) -> str | None:
        """Download button: the session's folder (folder_for) as a zip (JSON arrays + manifests),
        written outside it, in a temporary folder of the session's own (one zip each, replaced)."""
        folder = self.folder_for(request)
        if not folder.is_dir():
            gr.Warning("Nothing saved yet: generate, then Save.")
            return None
        exports = Path(tempfile.gettempdir()) / "llava-video-exports" / self.session_id(request)
        where = "the server's temporary folder" if self.per_session else str(exports)
        with user_errors(), writing_to(exports, where):
            return str(export_run(folder, exports / "synthetic-data.zip"))

    def stop(self, request: gr.Request | None = None) -> str:
        self.sessions.stop(request)
        return "Stopped."

    def api_synth(self, video: str) -> Iterator[str]:
        """Synthetic instruction data for a video (the LLaVA-Video-178K recipe): level-1/2/3
        descriptions, then QA pairs of the 16 question types. Streams progress lines (the current one
        again every half second while a model call runs), then the final JSON: {"caption", "pairs",
        "records": {"cap", "oe", "mc"}, "summary"}.

        Args:
            video: the video file (mp4, webm, mov, ...).
        """
        progress = ""
        events = self.events(video, None, self.api_description_tokens, self.api_qa_tokens, StopFlag())
        with closing(events):  # closed with this generator: the recipe stops when the client leaves
            for event in events:
                if event is HEARTBEAT:
                    if progress:  # the same line again: see SYNTH_HEARTBEAT_S
                        yield progress
                elif isinstance(event, CallStarted):
                    progress = f"step {event.step}/{event.total_steps}: {event.stage}"
                    yield progress
                elif isinstance(event, Done):
                    result = event.result
                    yield json.dumps({"caption": result.caption, "pairs": [p.to_dict() for p in result.pairs],
                                      "records": result.records(), "summary": result.summary()}, ensure_ascii=False)


def synth_tab(model: ModelRunner, ask_video: gr.Video | None = None,
              out_dir: str | os.PathLike | None = None) -> SynthPanel:
    """The "Generate synthetic QA" tab (an `extra_tabs` entry of app.build_ui, which passes the Ask
    tab's video as `ask_video`; None: a tab on its own) and the /synth endpoint."""
    panel = SynthPanel(model, out_dir)
    model_event = dict(concurrency_limit=1, concurrency_id=SYNTH_EVENTS)  # the GPU: a turn per call (gpu_queue)
    private = dict(api_visibility="private")
    all_types = [t.name for t in QUESTION_TYPES]
    with gr.Tab("Generate synthetic QA", id="synth"):
        gr.Markdown("Make training data for the video (the Ask tab's, or upload another here): 10 s level-1 "
                    "descriptions, 30 s level-2, the level-3 caption, then QA pairs of the ticked types. Review "
                    "the table, then Save.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                video = gr.Video(label="Another video (optional)", sources=["upload"], height=220,
                                 elem_id="synth-video")
                source = gr.Markdown(synth_source(None, None), elem_id="synth-source")
                types = gr.CheckboxGroup(all_types, value=all_types, label="Question types", elem_id="synth-types")
                with gr.Accordion("Settings", open=False, elem_id="synth-settings"):
                    desc_tokens = gr.Slider(16, 2048, value=SynthOptions.DESCRIPTION_TOKENS, step=1,
                                            label="Max new tokens per description", elem_id="synth-desc-tokens")
                    qa_tokens = gr.Slider(16, 1024, value=SynthOptions.QA_TOKENS_PER_TYPE, step=1,
                                          label="Max new tokens per QA call", elem_id="synth-qa-tokens")
                with gr.Row():
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="synth-generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="synth-stop")
                progress = gr.Textbox(label="Progress", interactive=False, elem_id="synth-progress")
            with gr.Column(scale=3, min_width=420):
                level1 = gr.Textbox(label="Level-1 descriptions (10 s windows)", lines=5, max_lines=12,
                                    interactive=False, elem_id="synth-level1")
                level2 = gr.Textbox(label="Level-2 descriptions (30 s windows)", lines=4, max_lines=10,
                                    interactive=False, elem_id="synth-level2")
                level3 = gr.Textbox(label="Level-3: the detailed caption", lines=4, max_lines=10,
                                    interactive=False, elem_id="synth-level3")
        table = gr.Dataframe(headers=SYNTH_COLUMNS, datatype=qa_table.DATATYPES,
                             column_count=(len(SYNTH_COLUMNS), "fixed"), interactive=True, wrap=True,
                             column_widths=qa_table.COLUMN_WIDTHS, pinned_columns=1, show_row_numbers=True,
                             label=f"QA pairs (edit; untick to drop; {qa_table.CORRECT_MARK} marks the correct option)",
                             elem_id="synth-table")
        result = gr.State(None)
        with gr.Row():
            save_btn = gr.Button("Save", elem_id="synth-save")
            download_btn = gr.Button("Download (zip)", elem_id="synth-download")
        saved = gr.Markdown(elem_id="synth-saved")
        zip_file = gr.File(label="Download", interactive=False, elem_id="synth-zip")
        # The Ask tab's video is the one to use unless another is uploaded here.
        shared = [ask_video] if ask_video is not None else []
        for changed in (video, *shared):
            changed.change(synth_source, [video, *shared], source, queue=False, **private)
        generating = gen_btn.click(panel.generate, [video, types, desc_tokens, qa_tokens, *shared],
                                   [progress, level1, level2, level3, table, result], show_progress="minimal",
                                   **model_event, **private)
        stop_btn.click(panel.stop, None, progress, cancels=[generating], concurrency_limit=None, **private)
        save_btn.click(panel.save, [result, table], saved, concurrency_limit=None, **private)
        download_btn.click(panel.download, None, zip_file, concurrency_limit=None, **private)
        # /synth: a hidden input and output, the growing progress then the JSON.
        with gr.Column(visible=False):
            api_video = gr.File(label="video", type="filepath")
            api_out = gr.Textbox(label="result")
            api_trigger = gr.Button()
        api_trigger.click(panel.api_synth, api_video, api_out, api_name="synth", **model_event)
    return panel
