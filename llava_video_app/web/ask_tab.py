"""The Ask tab: a video, a task, the answer streamed token by token, follow-ups on the same clip,
Stop, Clear; and the named API endpoints /ask, /caption and /ask_type (gradio_client, MCP).

`VideoChat` holds the handlers (small methods that tests call directly), over a `ModelRunner`
(serving.py): every answer goes through the engine, which caches frames, visual features and the
KV cache, so a follow-up on the same clip decodes and encodes nothing again. Every answer gets its
provenance (provenance.py, the record the CLI and eval share); the tab's conversations are kept
(ChatState.past) and download as JSON or Markdown (transcript.py). `ask_tab` lays the tab out and
wires it; `ask_api` adds the endpoints (/ask_record: an answer with its provenance, as one export).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from .. import video as video_stage
from .. import transcript
from ..config import TEMPERATURE_MAX, GenerationSettings
from ..engine import Engine, GenerationStats, visiting
from ..provenance import Provenance, settings_for, summary_of
from ..prompts import CAPTION_QUESTION, Turn
from ..request import check_question, check_request
from ..video import VideoError
from . import frame_inspector
from .compare_panel import comparer_of, compare_panel, wire_compare
from .conversation import (
    TASK_CAPTION,
    TASK_OWN,
    TASKS,
    ChatState,
    chat_messages,
    definition_for_task,
    floor2,
    frame_gallery,
    question_for_task,
)
from .serving import (
    MODEL_EVENT_WORKERS,
    MODEL_EVENTS,
    EngineHolder,
    ModelRunner,
    Sessions,
    Waiting,
    refuse,
    status_line,
    user_errors,
)
from .model_view import what_the_model_sees
from .player import SEEK_JS, SEEK_TO_JS, trim_bar
from .preview import PREVIEW_JS, preview_note
from .zerogpu import Gpu, StopFlag

FRAMES_MIN = 8  # the slider's low end; its high end is the app's max_frames
ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
# (file in assets/, task): short synthetic videos made by assets/make_examples.py
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("square.mp4", "Attribute Change"),
    ("pan.mp4", "Camera Direction"),
    ("square.mp4", TASK_CAPTION),
)


class VideoChat:
    """The Ask tab's handlers over one engine. `gpu` wraps the functions that run the model
    (spaces.GPU on a ZeroGPU Space; nothing elsewhere): see serving.ModelRunner."""

    def __init__(self, holder: EngineHolder | Engine, *, gpu: Gpu | None = None):
        self.model = ModelRunner(holder, gpu=gpu)
        self.holder = self.model.holder
        self.config = self.holder.config
        self.sessions = Sessions(self.config.max_sessions)

    def forget_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed: stop its generation and drop its state."""
        session = self.sessions.pop(request)
        if session is not None:
            session.stop.set()

    # status line
    def status(self, stats: GenerationStats | None = None) -> str:
        return status_line(self.holder, stats)

    def loading_status(self) -> tuple[str, gr.Timer]:
        """Timer tick while loading: the progress, and the timer stops once loading is over."""
        return self.status(), gr.Timer(active=self.holder.loading)

    # UI events
    def on_task(self, task: str) -> str:
        return question_for_task(task)

    def on_video(self, video: str | None,
                 state: ChatState | None = None) -> tuple[float, float | None, str, ChatState, list, list]:
        """A new video (or none): its length fills the trim range; a new conversation starts (the old
        one stays in the history). Returns (start, end, info, state, chat, gallery)."""
        state = state or ChatState()
        if not video:
            return 0, None, "", state.fresh(), [], []
        try:
            info = video_stage.probe_video(video)
        except VideoError as err:
            message = str(err).replace(str(video), Path(video).name)
            gr.Warning(message)
            return 0, None, f"**Not a usable video:** {message}", state.fresh(), [], []
        text = (f"{info.duration:.2f} s · {info.fps:.3g} fps · {info.width}×{info.height} · "
                f"{info.total_frames} frames" + (f" · {info.timing}" if info.timing else ""))
        note = preview_note(video)  # an AVI, MPEG-TS, ...: the model reads what the browser cannot play
        text = f"{text}\n\n{note}" if note else text
        return 0, floor2(info.duration), text, state.fresh(video, info.duration), [], []

    def ask(self, video: str | None, question: str, start: float | None, end: float | None, frames: float,
            max_new_tokens: float, temperature: float, top_p: float, state: ChatState | None,
            request: gr.Request | None = None, seed: float | None = None) -> Iterator[tuple]:
        """Ask about the video, or follow up on the same clip (same frames, trim and sampling; else a
        new conversation starts). Yields (chat, state, gallery, status, question box); the answer
        grows one chunk per yield; its provenance goes into state.records. `seed` None: random."""
        state = state or ChatState()
        if not video:
            raise refuse("Upload a video first (or click an example).")
        question = (question or "").strip()
        if not question:
            raise refuse("Type a question, or pick a task.")
        start, end = state.trim(start, end)
        with user_errors(video):  # the checks of the API and the CLI, with their words
            question = check_question(question, self.config.max_question_chars)
            checked = check_request(self.config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed)
        frames, settings = checked.frames, checked.generation
        conversation = state.for_clip(video, frames, start, end, (settings.temperature, settings.top_p, settings.seed))
        new = conversation is not state
        history = tuple(conversation.turns)
        engine = self.holder.get()
        visitor = Sessions.key(request)  # the caches are this browser session's own
        with user_errors(video), visiting(visitor):
            engine.check_request(video, question, history, frames=frames, start=start, end=end,
                                 max_new_tokens=settings.max_new_tokens)  # before any decoding
            clip = engine.load_clip(video, frames=frames, start=start, end=end)
        session = self.sessions.get(request)
        session.stop.clear()
        session.idle.clear()
        cut_short: list[GenerationStats] = []  # the stats of an answer closed early (never another visitor's)
        answers = self.model.answer(video, question, history, frames, start, end, settings, session.stop, visitor,
                                    cut_short.append)
        stats = None
        try:
            yield (chat_messages([*history, Turn(question, "")], conversation.duration), conversation,
                   frame_gallery(clip) if new else gr.skip(), "Answering…", "")
            answer, waited = "", False
            for item in answers:
                if isinstance(item, GenerationStats):
                    stats = item
                    continue
                if isinstance(item, Waiting):  # another call has the GPU: say so, and where this one stands
                    waited = True
                    yield gr.skip(), gr.skip(), gr.skip(), item.message, gr.skip()
                    continue
                if waited:
                    waited = False
                    yield gr.skip(), gr.skip(), gr.skip(), "Answering…", gr.skip()
                answer += item
                conversation.turns[len(history):] = [Turn(question, answer)]
                yield conversation.messages(), conversation, gr.skip(), gr.skip(), gr.skip()
        except gr.Error:
            yield conversation.messages(), conversation, gr.skip(), self.status(), question
            raise
        finally:
            answers.close()  # now, not when garbage-collected: the engine records its stats on closing
            session.stats = stats or (cut_short[-1] if cut_short else None)
            session.idle.set()
            if len(conversation.turns) > len(history):  # an answer, maybe cut short by Stop: how it was made
                conversation.record(len(history), self.provenance(engine, video, clip, settings, session.stats,
                                                                  start, end))
        if len(conversation.turns) == len(history):  # the model ended at once: keep the turn anyway
            conversation.turns.append(Turn(question, answer))
            conversation.record(len(history), self.provenance(engine, video, clip, settings, session.stats, start, end))
        yield conversation.messages(), conversation, gr.skip(), self.status(session.stats), gr.skip()

    @staticmethod
    def provenance(engine: Any, video: str, clip: Any, settings: GenerationSettings,
                   stats: GenerationStats | None, start: float | None, end: float | None) -> dict[str, Any]:
        """How an answer was made (provenance.Provenance), for the history and the exports."""
        return Provenance.of_answer(settings_for(engine, settings, len(clip.frame_indices)), None, clip, stats,
                                    video=video, start=start, end=end).to_dict()

    def ask_in_page(self, video: str | None, question: str, start: float | None, end: float | None, frames: float,
                    max_new_tokens: float, temperature: float, top_p: float, state: ChatState | None,
                    request: gr.Request | None = None, seed: float | None = None) -> Iterator[tuple]:
        """`ask` for the page: a refusal is one warning toast, and every output keeps what it shows
        (a raised gr.Error would paint Gradio's red error marks over the chat, gallery and status).
        Yields ask's outputs and the Stop button, live with every chunk while the answer runs."""
        try:
            for outputs in self.ask(video, question, start, end, frames, max_new_tokens, temperature, top_p, state,
                                    request, seed):
                yield (*outputs, gr.update(interactive=True))
        except gr.Error as err:
            gr.Warning(str(err.message))
            yield gr.skip(), gr.skip(), gr.skip(), self.status(), gr.skip(), gr.update(interactive=False)

    # the chat's own buttons: regenerate (retry), undo, edit a question
    def regenerate(self, video: str | None, start: float | None, end: float | None, frames: float,
                   max_new_tokens: float, temperature: float, top_p: float, state: ChatState | None,
                   retry: gr.RetryData, request: gr.Request | None = None,
                   seed: float | None = None) -> Iterator[tuple]:
        """Ask a question again from where it was asked (a new answer; with the same seed and settings,
        the same one); the conversation as it was stays in the history."""
        state = state or ChatState()
        if not state.turns:
            return
        turn = state.turn_of_message(retry.index)
        yield from self.ask_in_page(video, state.turns[turn].question, start, end, frames, max_new_tokens,
                                    temperature, top_p, state.rewound(turn), request, seed)

    def edit(self, video: str | None, start: float | None, end: float | None, frames: float, max_new_tokens: float,
             temperature: float, top_p: float, state: ChatState | None, edited: gr.EditData,
             request: gr.Request | None = None, seed: float | None = None) -> Iterator[tuple]:
        """An edited question is asked from where it stood (the later turns go, and stay in the history)."""
        state = state or ChatState()
        if not state.turns:
            return
        turn = state.turn_of_message(edited.index)
        value = edited.value if isinstance(edited.value, str) else (edited.value or {}).get("text", "")
        yield from self.ask_in_page(video, value, start, end, frames, max_new_tokens, temperature, top_p,
                                    state.rewound(turn), request, seed)

    @staticmethod
    def undo(state: ChatState | None, undone: gr.UndoData) -> tuple[list, ChatState, str]:
        """The chat's undo: the question and everything after it go; the question returns to the box."""
        state = state or ChatState()
        if not state.turns:
            return [], state, ""
        turn = state.turn_of_message(undone.index)
        kept = state.rewound(turn, keep_old=False)
        return kept.messages(), kept, state.turns[turn].question

    @staticmethod
    def buttons(state: ChatState | None, question: str | None, running: bool = False) -> tuple:
        """(Ask, Stop): Ask only with a usable video (on_video put it in the state) and a question and
        nothing running; Stop only while something runs."""
        ready = bool(state and state.video) and bool((question or "").strip()) and not running
        return gr.update(interactive=ready), gr.update(interactive=running)

    def ask_ready(self, state: ChatState | None, question: str | None) -> dict:
        return self.buttons(state, question)[0]

    def running_buttons(self) -> tuple:
        return self.buttons(None, None, running=True)

    def new_conversation(self, state: ChatState | None) -> ChatState:
        """The chat's own clear button: same video, a new conversation (the old one stays in the history)."""
        state = state or ChatState()
        return state.fresh(state.video, state.duration)

    @staticmethod
    def show_history(state: ChatState | None) -> tuple[str, str]:
        """(the last answer's provenance line, the tab's conversations as a list) for the page."""
        state = state or ChatState()
        last = next((r for r in reversed(state.records) if r), None)
        line = f"**Last answer:** {summary_of(last)}" if last else ""
        items = []
        for n, c in enumerate(state.history(), 1):
            record = c.to_record()
            name = (record["video"] or {}).get("name", "no video")
            trim = transcript.trim_text(record["trim"])
            temperature, top_p, seed = (c.sampling + (None, None, None))[:3]
            sampling = "greedy" if not temperature else f"temperature {temperature:g}, top-p {top_p:g}, seed {seed}"
            current = " (current)" if c.turns and c.turns == state.turns and n == len(state.history()) else ""
            items.append(f"{n}. {name} · {c.frames} frames of {trim} · {sampling} · {len(c.turns)} turn(s){current}")
        return line, "\n".join(items) or "No conversations yet."

    def trim_range(self, start: float | None, end: float | None, state: ChatState | None) -> str:
        """The bar under the player: the part of the video the model reads (Start/End as Ask sends them)."""
        state = state or ChatState()
        return trim_bar(*state.trim(start, end), state.duration) if state.video else ""

    def model_view(self, video: str | None, question: str | None, frames: float, start: float | None,
                   end: float | None, state: ChatState | None, temperature: float | None = None,
                   top_p: float | None = None, seed: float | None = None) -> tuple[str, str]:
        """"What the model sees" (model_view.py) for the video and settings on screen."""
        return what_the_model_sees(self.config, video, question, frames, start, end, state, temperature, top_p, seed)

    def export(self, state: ChatState | None, scope: str, fmt: str, request: gr.Request | None = None) -> str | None:
        """Download buttons: this conversation (scope "conversation") or the whole history, as "json"
        or "md"; one file per session and kind in the server's temporary folder, replaced each time."""
        state = state or ChatState()
        conversations = state.history() if scope == "history" else ([state] if state.turns else [])
        if not conversations:
            gr.Info("Nothing to download yet: ask a question first.")
            return None
        exported = transcript.export([c.to_record() for c in conversations])
        text = transcript.to_json(exported) if fmt == "json" else transcript.to_markdown(exported)
        session = hashlib.sha256(Sessions.key(request).encode()).hexdigest()[:32]  # the client picks the key
        folder = Path(tempfile.gettempdir()) / "llava-video-exports" / session / "conversations"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{'history' if scope == 'history' else 'conversation'}.{fmt}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def export_json(self, state: ChatState | None, scope: str, request: gr.Request | None = None) -> str | None:
        return self.export(state, scope, "json", request)

    def export_markdown(self, state: ChatState | None, scope: str, request: gr.Request | None = None) -> str | None:
        return self.export(state, scope, "md", request)

    def stop(self, request: gr.Request | None = None) -> str:
        """Stop this tab's generation; returns the status line once it has stopped."""
        return self.status(self.sessions.stop(request).stats)

    def clear(self, request: gr.Request | None = None, state: ChatState | None = None) -> tuple:
        """New video: stop, forget the cached videos, start a new conversation (the old one stays in
        the history). Returns (video, start, end, info, state, chat, gallery, status)."""
        self.sessions.stop(request)
        if self.holder.ready:
            self.holder.engine.clear(visitor=Sessions.key(request))  # this visitor's entries only
        return None, 0, None, "", (state or ChatState()).fresh(), [], [], self.status()

    # API endpoints (gradio_client, MCP): the growing answer text
    def api_ask(self, video: str, question: str, frames: float | None = None, start: float | None = None,
                end: float | None = None, max_new_tokens: float | None = None, temperature: float | None = None,
                top_p: float | None = None, seed: float | None = None,
                request: gr.Request | None = None) -> Iterator[str]:
        """Ask a question about a video. Streams the answer as it grows.

        Args:
            video: the video file (mp4, webm, mov, ...).
            question: the question about the video.
            frames: frames sampled uniformly from the video (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest answer, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
            seed: the sampler's seed; the same seed and settings give the same answer (default: random).
        """
        for text, _ in self._api_answer(video, question, frames, start, end, max_new_tokens, temperature, top_p, seed,
                                        request):
            yield text

    def _api_answer(self, video: str, question: str, frames: float | None, start: float | None, end: float | None,
                    max_new_tokens: float | None, temperature: float | None, top_p: float | None,
                    seed: float | None, request: gr.Request | None) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(the growing answer, None) while it grows, then (the answer, the export of its one-turn
        conversation with provenance) once."""
        if not video:
            raise refuse("No video given.")
        with user_errors(video):  # the CLI's checks and words (request.py); None = the app's setting
            question = check_question(question, self.config.max_question_chars)
            checked = check_request(self.config, frames=frames, start=start, end=end, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed)
        text, stats = "", None
        for item in self.model.answer(video, question, (), checked.frames, checked.start, checked.end,
                                      checked.generation, StopFlag(), Sessions.key(request)):
            if isinstance(item, GenerationStats):
                stats = item
            elif isinstance(item, Waiting):  # the answer's text only: no word of the line
                continue
            elif item:
                text += item
                yield text, None
        engine = self.holder.get()
        with visiting(Sessions.key(request)):  # the clip is in this visitor's cache
            clip = engine.load_clip(video, frames=checked.frames, start=checked.start, end=checked.end)
        conversation = ChatState(video, None, checked.frames, checked.start, checked.end, [Turn(question, text)])
        conversation.record(0, self.provenance(engine, video, clip, checked.generation, stats,
                                               checked.start, checked.end))
        yield text, transcript.export([conversation.to_record()])

    def api_ask_record(self, video: str, question: str, frames: float | None = None, start: float | None = None,
                       end: float | None = None, max_new_tokens: float | None = None,
                       temperature: float | None = None, top_p: float | None = None,
                       seed: float | None = None, request: gr.Request | None = None) -> str:
        """Ask a question about a video; returns the answer with its provenance as JSON: the app's
        conversation export (schema "llava-video/conversations/1") holding one conversation of one turn.

        Args:
            video: the video file (mp4, webm, mov, ...).
            question: the question about the video.
            frames: frames sampled uniformly from the video (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest answer, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
            seed: the sampler's seed; the same seed and settings give the same answer (default: random).
        """
        exported = None
        for _, exported in self._api_answer(video, question, frames, start, end, max_new_tokens, temperature,
                                            top_p, seed, request):
            pass
        return json.dumps(exported, ensure_ascii=False)

    def api_caption(self, video: str, frames: float | None = None, start: float | None = None,
                    end: float | None = None, max_new_tokens: float | None = None,
                    temperature: float | None = None, top_p: float | None = None,
                    seed: float | None = None, request: gr.Request | None = None) -> Iterator[str]:
        """A detailed caption of a video. Streams the caption as it grows.

        Args:
            video: the video file (mp4, webm, mov, ...).
            frames: frames sampled uniformly from the video (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest caption, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
            seed: the sampler's seed; the same seed and settings give the same answer (default: random).
        """
        yield from self.api_ask(video, CAPTION_QUESTION, frames, start, end, max_new_tokens, temperature, top_p, seed,
                                request)

    def api_ask_type(self, video: str, task: str, frames: float | None = None, start: float | None = None,
                     end: float | None = None, max_new_tokens: float | None = None,
                     temperature: float | None = None, top_p: float | None = None,
                     seed: float | None = None, request: gr.Request | None = None) -> Iterator[str]:
        """Ask one of the 16 LLaVA-Video question types' example questions (or "Detailed caption").
        Streams the answer as it grows.

        Args:
            video: the video file (mp4, webm, mov, ...).
            task: a question type, e.g. "Camera Direction", "Temporal", "Count", or "Detailed caption".
            frames: frames sampled uniformly from the video (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest answer, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
            seed: the sampler's seed; the same seed and settings give the same answer (default: random).
        """
        with user_errors():
            question = question_for_task(task) if task != TASK_OWN else ""
        if not question:
            raise refuse(f"task must be one of: {', '.join(TASKS[:-1])}")
        yield from self.api_ask(video, question, frames, start, end, max_new_tokens, temperature, top_p, seed,
                                request)


# --- layout ------------------------------------------------------------------------------------------

def ask_tab(chat: VideoChat, status: gr.Markdown) -> gr.Video:
    """The tab's components and events (inside a gr.Tab; `status` is the page's status line). Returns
    the video component, which other tabs work on too."""
    config = chat.config
    model_event = dict(concurrency_limit=MODEL_EVENT_WORKERS, concurrency_id=MODEL_EVENTS)  # GPU: gpu_queue
    private = dict(api_visibility="private")
    state = gr.State(ChatState())
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            video = gr.Video(label="Video", sources=["upload"], height=240, elem_id="video")
            info = gr.Markdown(elem_id="video-info")
            trimmed = gr.HTML(elem_id="trim-bar")
            with gr.Row():
                start = gr.Number(0, label="Start (s)", minimum=0, elem_id="start")
                end = gr.Number(None, label="End (s)", minimum=0, elem_id="end", info="empty = to the end",
                                placeholder="to the end")
            task = gr.Dropdown(list(TASKS), value=TASK_CAPTION, label="Task", elem_id="task")
            definition = gr.Markdown(definition_for_task(TASK_CAPTION), elem_id="task-definition")
            with gr.Accordion("Settings", open=False):
                frames = gr.Slider(min(FRAMES_MIN, config.frames), config.max_frames,
                                   value=config.frames, step=1, label="Frames", elem_id="frame-count",
                                   info="sampled uniformly; 64 is the authors' setting")
                max_new_tokens = gr.Slider(1, config.max_new_tokens_limit, value=config.max_new_tokens,
                                           step=1, label="Max new tokens")
                temperature = gr.Slider(0, TEMPERATURE_MAX, value=config.temperature, step=0.05,
                                        label="Temperature", info="0 = greedy")
                top_p = gr.Slider(0.05, 1, value=config.top_p, step=0.05, label="Top p")
                # No precision=0: Gradio would round 2.7 before check_request could refuse it.
                seed = gr.Number(config.seed, label="Seed", minimum=0, elem_id="seed", placeholder="random",
                                 info="empty = random; each answer's seed is in its provenance")
            with gr.Accordion("What the model sees", open=False, elem_id="model-view-panel") as seen_panel:
                seen = gr.Markdown(elem_id="model-view")
                prompt = gr.Textbox(label="Prompt (exact)", lines=6, max_lines=16, interactive=False,
                                    elem_id="model-prompt", buttons=["copy"])
        with gr.Column(scale=3, min_width=420):
            chatbot = gr.Chatbot(label="Conversation", height=320, elem_id="chat", editable="user",
                                 placeholder="The answer streams here.")
            # lines=1 (growing to max_lines): Gradio sends on Enter and adds a line on Shift+Enter.
            question = gr.Textbox(CAPTION_QUESTION, label="Question", lines=1, max_lines=8, elem_id="question",
                                  placeholder="Ask about the video; follow-ups continue the chat",
                                  info="Enter sends · Shift+Enter adds a line")
            with gr.Row():
                ask_btn = gr.Button("Ask", variant="primary", elem_id="ask", interactive=False)
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False)
                clear_btn = gr.Button("Clear / new video", elem_id="clear")
            compare_ui = compare_panel(config)  # "Ask again with…": the last question under variants
            provenance = gr.Markdown(elem_id="provenance")
            gallery = gr.Gallery(label="Frames the model saw", columns=8, height=190, object_fit="contain",
                                 elem_id="frames", allow_preview=False)
            with gr.Group(elem_id="inspector"):
                frame_image = gr.Image(label="Frame", height=300, interactive=False, elem_id="inspector-image",
                                       show_label=False)
                frame_text = gr.Markdown(frame_inspector.EMPTY, elem_id="inspector-time")
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous", size="sm", elem_id="inspector-prev", interactive=False)
                    next_btn = gr.Button("Next ▶", size="sm", elem_id="inspector-next", interactive=False)
                frame_index = gr.State(-1)  # on the server: each step reads the one before it
                seek_to = gr.Number(None, visible=False, elem_id="seek-to")
            with gr.Accordion("Session history and downloads", open=False, elem_id="history-panel"):
                history = gr.Markdown("No conversations yet.", elem_id="history")
                with gr.Row():
                    scope = gr.Radio([("This conversation", "conversation"), ("Whole history", "history")],
                                     value="conversation", label="Download", elem_id="export-scope")
                    json_btn = gr.Button("JSON", elem_id="export-json", size="sm")
                    md_btn = gr.Button("Markdown", elem_id="export-md", size="sm")
                export_file = gr.File(label="Download", interactive=False, elem_id="export-file")
    examples = [[str(ASSETS / name), name_task, question_for_task(name_task)]
                for name, name_task in EXAMPLES if (ASSETS / name).is_file()]
    if examples:
        gr.Examples(examples, inputs=[video, task, question], label="Examples")

    # Gradio 6 draws a Number whose first value is None as 0, whatever its placeholder; None set on
    # load (in the browser, no request) shows it empty, as its hint says.
    gr.on(None, None, None, end, js="() => null")
    task.change(chat.on_task, task, question, queue=False, **private)
    task.change(definition_for_task, task, definition, queue=False, **private)
    shown = dict(fn=chat.show_history, inputs=state, outputs=[provenance, history], queue=False, **private)
    idle = dict(fn=chat.buttons, inputs=[state, question], outputs=[ask_btn, stop_btn], queue=False, **private)
    # the player as a time axis (player.py): seek links in answers, the inspector's frame, the trim bar
    gr.on(None, None, None, None, js=SEEK_JS)
    gr.on(None, None, None, None, js=PREVIEW_JS)  # an upload the browser cannot play: said plainly
    # queued, in order: unqueued, a Start change's older bar could land after the End change's newer one
    marked = dict(fn=chat.trim_range, inputs=[start, end, state], outputs=trimmed, **private)
    seen_args = dict(fn=chat.model_view, inputs=[video, question, frames, start, end, state, temperature, top_p, seed],
                     outputs=[seen, prompt], trigger_mode="always_last", **private)
    video.change(chat.on_video, [video, state], [start, end, info, state, chatbot, gallery],
                 **private).then(**shown).then(**idle).then(**marked).then(**seen_args)
    gr.on([start.change, end.change], **marked)
    gr.on([seen_panel.expand, frames.release, start.change, end.change, question.change, temperature.release,
           top_p.release, seed.change, provenance.change, history.change],
          **seen_args)  # an answer, undo, Clear (provenance, history): the next question's prompt has the turns
    inspected = [frame_image, frame_text, frame_index, seek_to, prev_btn, next_btn]
    seek = dict(fn=None, inputs=seek_to, outputs=None, js=SEEK_TO_JS)
    # one at a time, in order: two quick clicks on Previous step back twice
    # "multiple": a click while the last step is still pending is queued, not dropped (Gradio's default, "once",
    # dropped the second of two quick clicks on a busy server); one at a time keeps them in order.
    stepping = dict(outputs=inspected, concurrency_limit=1, concurrency_id="frame-inspector", show_progress="hidden",
                    trigger_mode="multiple", **private)
    gallery.select(frame_inspector.pick, gallery, **stepping).then(**seek)
    prev_btn.click(frame_inspector.previous, [gallery, frame_index], **stepping).then(**seek)
    next_btn.click(frame_inspector.following, [gallery, frame_index], **stepping).then(**seek)
    gallery.change(frame_inspector.reset, gallery, **stepping)
    # typed, a task's question, an example, emptied by Ask: Ask only (Stop stays as the running answer has it)
    question.change(chat.ask_ready, [state, question], ask_btn, queue=False, **private)
    gr.on(None, **idle)  # on load
    # Enter in the question box sends even while Ask is greyed out: the handler refuses with a toast.
    asking = gr.on([ask_btn.click, question.submit], chat.running_buttons, None, [ask_btn, stop_btn], queue=False,
                   **private).then(chat.ask_in_page,
                                   [video, question, start, end, frames, max_new_tokens, temperature, top_p, state,
                                    seed], [chatbot, state, gallery, status, question, stop_btn],
                                   show_progress="minimal",
                                   **model_event, **private)
    asking.then(**shown).then(**idle)
    settings = [video, start, end, frames, max_new_tokens, temperature, top_p, state, seed]
    answering = [asking]
    for event, handler in ((chatbot.retry, chat.regenerate), (chatbot.edit, chat.edit)):
        run = event(chat.running_buttons, None, [ask_btn, stop_btn], queue=False, **private).then(
            handler, settings, [chatbot, state, gallery, status, question, stop_btn], show_progress="minimal",
            **model_event, **private)
        run.then(**shown).then(**idle)
        answering.append(run)
    compared = wire_compare(comparer_of(chat), compare_ui, video=video, question=question, start=start, end=end,
                            frames=frames, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                            seed=seed, state=state, status=status, ask_btn=ask_btn, stop_btn=stop_btn)
    compared.then(**shown).then(**idle)
    answering.append(compared)
    chatbot.undo(chat.undo, state, [chatbot, state, question], queue=False, **private).then(**shown).then(**idle)
    stop_btn.click(chat.stop, None, status, cancels=answering, concurrency_limit=None,
                   **private).then(**shown).then(**idle)
    clear_btn.click(chat.clear, state, [video, start, end, info, state, chatbot, gallery, status],
                    cancels=answering, concurrency_limit=None, **private).then(**shown).then(**idle)
    chatbot.clear(chat.new_conversation, state, state, **private).then(**shown)
    json_btn.click(chat.export_json, [state, scope], export_file, **private)
    md_btn.click(chat.export_markdown, [state, scope], export_file, **private)
    return video


def ask_api(chat: VideoChat) -> None:
    """/caption, /ask and /ask_type (gradio_client / MCP): hidden inputs, the growing answer as output."""
    config = chat.config
    model_event = dict(concurrency_limit=MODEL_EVENT_WORKERS, concurrency_id=MODEL_EVENTS)  # GPU: gpu_queue
    with gr.Column(visible=False):
        api_video = gr.File(label="video", type="filepath")
        api_question = gr.Textbox(label="question")
        api_task = gr.Textbox(label="task")
        # No precision=0: Gradio would round 2.7 to 3 before check_request could refuse it, as the CLI does.
        api_frames = gr.Number(config.frames, label="frames")
        api_start = gr.Number(None, label="start")
        api_end = gr.Number(None, label="end")
        api_tokens = gr.Number(config.max_new_tokens, label="max_new_tokens")
        api_temperature = gr.Number(config.temperature, label="temperature")
        api_top_p = gr.Number(config.top_p, label="top_p")
        api_seed = gr.Number(config.seed, label="seed")
        api_answer = gr.Textbox(label="answer")
        api_trigger = gr.Button()
    options = [api_frames, api_start, api_end, api_tokens, api_temperature, api_top_p, api_seed]
    api_trigger.click(chat.api_caption, [api_video, *options], api_answer, api_name="caption", **model_event)
    api_trigger.click(chat.api_ask, [api_video, api_question, *options], api_answer, api_name="ask", **model_event)
    api_trigger.click(chat.api_ask_type, [api_video, api_task, *options], api_answer, api_name="ask_type",
                      **model_event)
    api_trigger.click(chat.api_ask_record, [api_video, api_question, *options], api_answer, api_name="ask_record",
                      **model_event)
