"""The "Batch" tab: one question, or a set of question types, over several uploaded videos; a row per
(video, question) as each is answered, with the answer's key provenance; Stop; a download of the
records as JSON Lines (the records of `llava-video ask --jsonl`, batch_ask.py) and as CSV; and the
/batch endpoint.

A thin layer over batch_ask.answer_video (the per-video step the CLI runs): `BatchPanel.rows` runs the
jobs and makes the rows and records, `write_downloads` the two files; the handlers only pass them
on. A video that cannot be answered (not a video, a bad range, too long a prompt) gets a row with
the message and the batch goes on. Each answer's model call takes its turn in the GPU's line (gpu_queue),
its video read before.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator, Sequence

import gradio as gr

from ..batch_ask import answer_video, asked_settings, one_line, record_id
from ..engine import Engine, visiting
from ..output_folder import writing_to
from ..prompts import QUESTION_TYPES, question_type
from ..request import RequestSettings, check_question, check_request
from ..synth.sources import VideoSource
from .ask_tab import FRAMES_MIN
from .serving import MODEL_EVENT_WORKERS, MODEL_EVENTS, EngineHolder, ModelRunner, Sessions, refuse, user_errors
from .zerogpu import StopFlag

COLUMNS = ["video", "question", "answer", "note", "frames", "seed", "tokens", "first token (s)", "sha256"]
JSONL_NAME, CSV_NAME = "batch.jsonl", "batch.csv"


def table_row(record: dict[str, Any], short_hash: bool = True) -> list[Any]:
    """A record (or a failed job's {"video", "question", "error"}) as a row of COLUMNS."""
    if "error" in record:
        return [record["video"], record["question"], "", f"not answered: {record['error']}", "", "", "", "", ""]
    p = record["provenance"]
    sha = str((p.get("video") or {}).get("sha256", ""))
    return [record["video"], record["question"], record["answer"], "stopped" if p.get("stopped") else "",
            p["settings"].get("frames"), p.get("seed"), p.get("new_tokens"),
            round(float(p.get("timings", {}).get("time_to_first_token", 0.0)), 3), sha[:12] if short_hash else sha]


def write_downloads(records: Sequence[dict[str, Any]], folder: Path) -> list[str]:
    """The records as JSON Lines and as CSV (COLUMNS, the full content hash) in `folder`, replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    jsonl, table = folder / JSONL_NAME, folder / CSV_NAME
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(table_row(r, short_hash=False) for r in records)
    return [str(jsonl), str(table)]


@dataclass
class BatchProgress:
    """What the page shows after each job: the line, every record so far, whether it ended."""
    line: str
    records: list[dict[str, Any]]
    done: bool = False


class BatchPanel:
    """Handlers of the Batch tab over the model runner's engine."""

    def __init__(self, model: ModelRunner | EngineHolder | Engine):
        self.model = model if isinstance(model, ModelRunner) else ModelRunner(model)
        self.config = self.model.config
        self.sessions = Sessions(self.config.max_sessions)

    def questions(self, question: str | None, types: Sequence[str] | None) -> list[str]:
        """The typed question (if any), then the ticked types' preset questions; refused when none."""
        asked = []
        if question and question.strip():
            with user_errors():
                asked.append(check_question(question, self.config.max_question_chars))
        for name in types or ():
            with user_errors():
                asked.append(question_type(name).preset)
        if not asked:
            raise refuse("Type a question, or tick at least one question type.")
        return asked

    def request(self, frames: float | None, max_new_tokens: float | None, seed: float | None) -> RequestSettings:
        with user_errors():  # the API's and the CLI's checks, with their words
            return check_request(self.config, frames=frames, max_new_tokens=max_new_tokens, seed=seed)

    def _turn(self, stop: threading.Event | None) -> ContextManager[bool]:
        """An answer's model call takes its turn in the GPU's line, as the Ask tab's and synthesis's do."""
        return self.model.gpu_queue.turn("a batch answer", stop)

    def rows(self, videos: Sequence[str], questions: Sequence[str], request: RequestSettings,
             stop: threading.Event, visitor: str = "") -> Iterator[BatchProgress]:
        """Answer every question about every video, one job at a time, from and into the `visitor`'s
        caches: a BatchProgress after each. A job that fails adds a row with its message; `stop` ends
        the batch with the rows so far (an answer cut short is not kept)."""
        engine = self.model.holder.get()
        asked = asked_settings(request, getattr(engine, "model_id", None), getattr(engine, "quant", None))
        records: list[dict[str, Any]] = []
        total = len(videos) * len(questions)
        n = 0
        for path in videos:
            source = VideoSource(str(path), Path(path).name)
            for question in questions:
                if stop.is_set():
                    yield BatchProgress(f"Stopped after {n} of {total}.", records, done=True)
                    return
                n += 1
                try:
                    with visiting(visitor):  # this visitor's caches, as the Ask tab's
                        record = answer_video(engine, source, question, request, stop, turn=self._turn)
                except (ValueError, OSError) as err:  # VideoError and RequestError are ValueErrors
                    message = one_line(err).replace(str(path), source.relative)
                    records.append({"video": source.relative, "question": question, "error": message})
                    yield BatchProgress(f"{n}/{total}: {source.relative}: not answered: {message}", records)
                    continue
                if record["provenance"].get("stopped"):
                    yield BatchProgress(f"Stopped after {n - 1} of {total}.", records, done=True)
                    return
                records.append({"id": record_id(source.relative, question, asked), **record})
                yield BatchProgress(f"{n}/{total}: {source.relative} answered.", records)
        failed = sum("error" in r for r in records)
        yield BatchProgress(f"Done: {total - failed} answered" + (f", {failed} not (see the note)." if failed else "."),
                            records, done=True)

    def exports_folder(self, request: gr.Request | None) -> Path:
        """The session's own folder for its downloads (a hash of Gradio's session hash, as synth's)."""
        key = hashlib.sha256(Sessions.key(request).encode()).hexdigest()[:32]
        return Path(tempfile.gettempdir()) / "llava-video-exports" / key / "batch"

    def run(self, videos: Sequence[Any] | None, question: str | None, types: Sequence[str] | None,
            frames: float | None, max_new_tokens: float | None, seed: float | None,
            request: gr.Request | None = None) -> Iterator[tuple]:
        """Run button: yields (progress line, table, download files) after each job; the files are
        rewritten each time, so a Stop leaves what was answered downloadable. Bad input: a warning
        and the message in the progress line (no error marks over the table)."""
        skip = gr.skip()
        paths = [str(getattr(v, "name", v)) for v in videos or ()]
        try:
            if not paths:
                raise refuse("Upload one or more videos first.")
            questions = self.questions(question, types)
            settings = self.request(frames, max_new_tokens, seed)
        except gr.Error as err:
            gr.Warning(str(err.message))
            yield str(err.message), skip, skip
            return
        session = self.sessions.get(request)
        session.stop.clear()
        session.idle.clear()
        folder = self.exports_folder(request)
        try:
            yield f"0/{len(paths) * len(questions)}: answering…", [], None
            for step in self.rows(paths, questions, settings, session.stop, Sessions.key(request)):
                with user_errors(), writing_to(folder, "the server's temporary folder"):
                    files = write_downloads(step.records, folder)
                yield step.line, [table_row(r) for r in step.records], files
        except gr.Error as err:  # the model not loaded, a full disk: one message
            gr.Warning(str(err.message))
            yield str(err.message), skip, skip
        finally:
            session.idle.set()
            session.stop.clear()

    def stop(self, request: gr.Request | None = None) -> str:
        self.sessions.stop(request)
        return "Stopped."

    def api_batch(self, videos: Sequence[Any], question: str = "", types: Sequence[str] | None = None,
                  frames: float | None = None, max_new_tokens: float | None = None,
                  seed: float | None = None) -> Iterator[str]:
        """One question, or the preset questions of some question types, about several videos. Streams
        the records so far as JSON Lines (one per video and question, each with its provenance; a
        video that could not be answered: {"video", "question", "error"}), after each answer.

        Args:
            videos: the video files.
            question: the question (may be empty when types are given).
            types: question types whose preset questions are asked too.
            frames: frames sampled per video (default: the app's).
            max_new_tokens: longest answer, in tokens (default: the app's).
            seed: the sampler's seed (empty: a random one per answer).
        """
        paths = [str(getattr(v, "name", v)) for v in videos or ()]
        if not paths:
            raise refuse("Give one or more videos.")
        questions = self.questions(question, types)
        settings = self.request(frames, max_new_tokens, seed)
        for step in self.rows(paths, questions, settings, StopFlag()):  # stopped by closing: the client left
            yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in step.records)


def batch_tab(model: ModelRunner, ask_video: gr.Video | None = None) -> BatchPanel:
    """The "Batch" tab (an `extra_tabs` entry of app.build_ui) and the /batch endpoint."""
    panel = BatchPanel(model)
    config = panel.config
    model_event = dict(concurrency_limit=MODEL_EVENT_WORKERS, concurrency_id=MODEL_EVENTS)  # GPU: gpu_queue
    private = dict(api_visibility="private")
    all_types = [t.name for t in QUESTION_TYPES]
    with gr.Tab("Batch", id="batch"):
        gr.Markdown("One question, or the preset questions of some question types, about several videos: a row "
                    "per video and question, with how each answer was made. Download the records as JSON Lines "
                    "or CSV.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                videos = gr.File(label="Videos", file_count="multiple", file_types=["video"], type="filepath",
                                 elem_id="batch-videos")
                question = gr.Textbox(label="Question", lines=2, elem_id="batch-question",
                                      placeholder="e.g. What happens in the video?")
                types = gr.CheckboxGroup(all_types, value=[], label="Question types (their preset questions, too)",
                                         elem_id="batch-types")
                with gr.Accordion("Settings", open=False, elem_id="batch-settings"):
                    frames = gr.Slider(min(FRAMES_MIN, config.frames), config.max_frames, value=config.frames, step=1,
                                       label="Frames", elem_id="batch-frames")
                    max_new_tokens = gr.Slider(1, config.max_new_tokens_limit, value=config.max_new_tokens, step=1,
                                               label="Max new tokens", elem_id="batch-max-new-tokens")
                    seed = gr.Number(config.seed, label="Seed", minimum=0, elem_id="batch-seed",
                                     placeholder="random", info="empty = random; each answer's seed is in its row")
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="batch-run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="batch-stop")
                progress = gr.Textbox(label="Progress", interactive=False, elem_id="batch-progress")
                files = gr.File(label="Download (JSON Lines, CSV)", file_count="multiple", interactive=False,
                                elem_id="batch-files")
            with gr.Column(scale=3, min_width=420):
                table = gr.Dataframe(headers=COLUMNS, column_count=(len(COLUMNS), "fixed"), interactive=False,
                                     wrap=True, label="Answers", elem_id="batch-table")
        running = run_btn.click(panel.run, [videos, question, types, frames, max_new_tokens, seed],
                                [progress, table, files], show_progress="minimal", **model_event, **private)
        stop_btn.click(panel.stop, None, progress, cancels=[running], concurrency_limit=None, **private)
        # /batch: hidden inputs and output, the growing JSON Lines.
        with gr.Column(visible=False):
            api_videos = gr.File(label="videos", file_count="multiple", type="filepath")
            api_question = gr.Textbox(label="question")
            api_types = gr.CheckboxGroup(all_types, value=[], label="types")
            api_frames = gr.Number(config.frames, label="frames")
            api_tokens = gr.Number(config.max_new_tokens, label="max_new_tokens")
            api_seed = gr.Number(None, label="seed")
            api_out = gr.Textbox(label="records")
            api_trigger = gr.Button()
        api_trigger.click(panel.api_batch, [api_videos, api_question, api_types, api_frames, api_tokens, api_seed],
                          api_out, api_name="batch", **model_event)
    return panel
