"""The Gradio app: a video, a task, an answer streamed token by token, follow-ups, Stop, a named API.

Every model call goes through `engine.Engine` (which caches frames, visual features and the KV cache,
so a follow-up on the same clip decodes and encodes nothing again); this module only turns UI events
into engine calls. The handlers are small methods of `VideoChat` that tests call directly; `build_ui`
wires them to components, `main` is `python app.py`.

Model events share one concurrency group (`MODEL_EVENTS`, limit 1): one generation at a time, the
others wait in the queue and see their place. Stop sets the session's `StopFlag` (the engine checks
it after every token) and cancels the event; it also reaches a forked ZeroGPU worker (see StopFlag).
"""

from __future__ import annotations

import argparse
import contextvars
import importlib.util
import os
import queue
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from . import video as video_stage
from .config import DEFAULT_MODEL, QUANTIZATIONS, AppConfig
from .engine import Engine, GenerationSettings, GenerationStats
from .dataset import TASKS as RECORD_TASKS
from .prompts import CAPTION_QUESTION, QUESTION_TYPES, Turn, question_type
from .synth.events import CallStarted, DescriptionWritten, Done, Planned, Stopped, SynthEvent, TextChunk
from .synth.plan import SynthOptions
from .synth.qa import QAPair
from .synth.recipe import synthesize
from .synth.result import Description
from .synth.saving import export_run, save_edited_pairs
from .video import VideoClip, VideoError

TASK_CAPTION = "Detailed caption"
TASK_OWN = "Your own question"
TASKS: tuple[str, ...] = (TASK_CAPTION, *(t.name for t in QUESTION_TYPES), TASK_OWN)

FRAMES_MIN, FRAMES_MAX = 8, 128
MODEL_EVENTS = "model"  # concurrency id of every event that runs the model: one generation at a time
ASSETS = Path(__file__).resolve().parent.parent / "assets"
# (file in assets/, task): short synthetic videos made by assets/make_examples.py
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("square.mp4", "Attribute Change"),
    ("pan.mp4", "Camera Direction"),
    ("square.mp4", TASK_CAPTION),
)

# gpu(task, duration) -> task run on a GPU (spaces.GPU on ZeroGPU); duration(*args) = seconds to ask for
Gpu = Callable[[Callable[..., Any], Callable[..., int]], Callable[..., Any]]


def question_for_task(task: str | None) -> str:
    """The question a task starts with: the caption prompt, a type's example question, or nothing."""
    if not task or task == TASK_OWN:
        return ""
    if task == TASK_CAPTION:
        return CAPTION_QUESTION
    return question_type(task).example


# --- the engine, loaded in the background ------------------------------------------------------------

class EngineHolder:
    """The engine, loaded once. `start()` loads it in a thread, so the page serves (and shows the
    loading progress) at once; handlers wait in `get()` until it is there."""

    def __init__(self, config: AppConfig | None = None, engine: Engine | None = None):
        self.config = config or (engine.config if engine is not None else AppConfig())
        self.engine = engine
        self.error: str | None = None
        self.messages: list[str] = []
        self._done = threading.Event()
        if engine is not None:
            self._done.set()

    def start(self) -> "EngineHolder":
        threading.Thread(target=self.load, name="load-model", daemon=True).start()
        return self

    def load(self) -> "EngineHolder":
        self.progress(f"Loading {self.config.resolved().model}")
        try:
            self.engine = Engine.from_config(self.config, progress=self.progress)
        except Exception as err:  # shown in the status line; the app keeps serving
            self.error = str(err) or type(err).__name__
            print(f"error: the model could not be loaded: {self.error}", file=sys.stderr, flush=True)
        finally:
            self._done.set()
        return self

    def progress(self, message: str) -> None:
        self.messages.append(message)
        print(message, file=sys.stderr, flush=True)

    @property
    def ready(self) -> bool:
        return self.engine is not None

    @property
    def loading(self) -> bool:
        return not self._done.is_set()

    def get(self, timeout: float | None = None) -> Engine:
        if not self._done.wait(timeout):
            raise gr.Error("The model is still loading; try again in a moment.")
        if self.engine is None:
            raise gr.Error(f"The model could not be loaded: {self.error}")
        return self.engine


def vram_in_use_gib(device: str) -> float | None:
    """GiB of CUDA memory allocated on the engine's device now; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.memory_allocated(device) / 2**30


# --- per-session state -----------------------------------------------------------------------------

class StopFlag(threading.Event):
    """A session's Stop: a threading.Event the engine checks after every token.

    On a ZeroGPU Space the model runs in a forked worker that receives its arguments pickled, where
    an Event would be a disconnected copy; pickled, this flag becomes a marker file that both
    processes see, so Stop reaches the worker too."""

    def __init__(self, path: str | None = None):
        super().__init__()
        self._path = path

    def set(self) -> None:
        super().set()
        if self._path:
            Path(self._path).touch()

    def clear(self) -> None:
        super().clear()
        if self._path:
            Path(self._path).unlink(missing_ok=True)

    def is_set(self) -> bool:
        return super().is_set() or (self._path is not None and os.path.exists(self._path))

    def __reduce__(self):
        if self._path is None:
            self._path = os.path.join(tempfile.gettempdir(), f"llava-video-stop-{os.getpid()}-{id(self):x}")
            if super().is_set():
                Path(self._path).touch()
        return (StopFlag, (self._path,))


def _idle_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


_DONE = object()  # end of a generation's items


@dataclass
class _Failed:
    error: BaseException


@dataclass
class _Session:
    stop: StopFlag = field(default_factory=StopFlag)
    idle: threading.Event = field(default_factory=_idle_event)  # no generation running
    stats: GenerationStats | None = None  # of the last answer


@dataclass
class ChatState:
    """One conversation about one clip (file, frames, trim), kept in a gr.State per browser tab.

    `turns` always matches the chat on screen, the answer being streamed included, so that a
    cancelled event still leaves a consistent history for the next follow-up."""

    video: str | None = None
    duration: float | None = None  # of the whole video, when known
    frames: int = 0
    start: float | None = None
    end: float | None = None
    turns: list[Turn] = field(default_factory=list)

    def for_clip(self, video: str, frames: int, start: float | None, end: float | None) -> "ChatState":
        """This conversation if it is about the same clip, else a new one about that clip."""
        if (self.video, self.frames, self.start, self.end) == (video, frames, start, end):
            return self
        return ChatState(video, self.duration if self.video == video else None, frames, start, end)

    def trim(self, start: float | None, end: float | None) -> tuple[float | None, float | None]:
        """The trim range the engine gets: None for "from the beginning" / "to the end", so an
        untrimmed video is sampled exactly as the authors do."""
        start = None if start is None or start <= 0 else float(start)
        if end is not None and (end <= 0 or (self.duration is not None and end >= _floor2(self.duration))):
            end = None
        return start, (None if end is None else float(end))


def _floor2(seconds: float) -> float:
    return int(seconds * 100) / 100


def chat_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.question})
        if turn.answer:
            messages.append({"role": "assistant", "content": turn.answer})
    return messages


def frame_gallery(clip: VideoClip) -> list[tuple[Any, str]]:
    """The frames the model sees, each captioned with its timestamp in the video."""
    return [(frame, f"{t:.2f} s") for frame, t in zip(clip.frames, clip.timestamps)]


@contextmanager
def _user_errors(video: str | None = None):
    """The user's mistakes (a bad file, a bad range, too many tokens) as a message in the UI; the
    upload's path in Gradio's temporary folder is shortened to its file name."""
    try:
        yield
    except gr.Error:
        raise
    except (VideoError, ValueError, FileNotFoundError) as err:
        message = str(err)
        if video:
            message = message.replace(str(video), Path(video).name)
        raise gr.Error(message) from None


def _settings(max_new_tokens: float, temperature: float, top_p: float) -> GenerationSettings:
    with _user_errors():
        return GenerationSettings(max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                                  top_p=float(top_p))


def gpu_duration(video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
                 end: float | None, settings: GenerationSettings, stop: StopFlag) -> int:
    """Seconds of ZeroGPU time to ask for one answer (spaces.GPU's dynamic duration): room for
    decoding and encoding the frames, the prefill, and max_new_tokens at a slow 20 tokens/s.
    64 frames and 1024 tokens: 98 s."""
    return int(min(300, 30 + 0.25 * frames + settings.max_new_tokens / 20))


def synth_call_duration(clip: VideoClip | None, question: str, history: Sequence[Turn],
                        settings: GenerationSettings | None, stop: StopFlag | None) -> int:
    """Seconds of ZeroGPU time for one model call of the synthesis recipe (a 10-frame level-1
    description with 512 tokens: 48 s; a 256-token QA call: 32 s), on the same terms as gpu_duration."""
    frames = len(clip.frame_indices) if clip is not None else 0
    tokens = (settings or GenerationSettings()).max_new_tokens
    return int(min(300, 20 + 0.25 * frames + tokens / 20))


class EngineOnGpu:
    """The engine as synth.synthesize uses it, with each model call in a GPU slot of its own and the
    video decoding outside. `call(clip | None, question, history, settings, stop)` is the GPU-wrapped
    model call (VideoChat's, wrapped once at start-up).

    One slot per call, not per video: ZeroGPU grants at most 300 s per slot, and even a 6 s video's
    recipe (a level-1, a level-2, the caption, 16 QA calls) asks for about 650 s (synth_call_duration);
    a minute of video adds about 6 x 48 s of level-1 and 2 x 45 s of level-2 calls. Between calls the
    GPU goes back to the queue."""

    def __init__(self, engine: Engine, call: Callable[..., Iterator[str]]):
        self._engine = engine
        self.model_id, self.quant = engine.model_id, engine.quant
        self.load_clip = engine.load_clip
        self._call = call

    def stream(self, video: VideoClip, question: str, history: Sequence[Turn] = (), *,
               settings: GenerationSettings | None = None, stop: StopFlag | None = None) -> Iterator[str]:
        if not isinstance(video, VideoClip):  # a file: decode here, not in the GPU slot
            video = self._engine.load_clip(video)
        return self._call(video, question, tuple(history), settings, stop)

    def stream_text(self, question: str, history: Sequence[Turn] = (), *, settings: GenerationSettings | None = None,
                    stop: StopFlag | None = None) -> Iterator[str]:
        return self._call(None, question, tuple(history), settings, stop)


# --- the handlers ----------------------------------------------------------------------------------

class VideoChat:
    """Event handlers over one engine. `gpu` wraps the functions that run the model, an answer and
    a synthesis call (spaces.GPU on a ZeroGPU Space; nothing elsewhere)."""

    def __init__(self, holder: EngineHolder | Engine, *, gpu: Gpu | None = None):
        self.holder = holder if isinstance(holder, EngineHolder) else EngineHolder(engine=holder)
        self.config = self.holder.config
        self._sessions: dict[str, _Session] = {}
        self._sessions_lock = threading.Lock()
        self.video_input: gr.Video | None = None  # the Ask tab's video component, once build_ui made it
        self._run_model_gpu = gpu(self._run_model, gpu_duration) if gpu is not None else self._run_model
        # Wrapped here, once, not per Generate: spaces.GPU keeps a forked GPU worker per wrapped
        # function (and every wrapper for good), so a wrapper per run would fork a new worker each time.
        self._synth_call_gpu = gpu(self._synth_call, synth_call_duration) if gpu is not None else None

    # sessions
    def _session(self, request: gr.Request | None) -> _Session:
        key = getattr(request, "session_hash", None) or "local"
        with self._sessions_lock:
            return self._sessions.setdefault(key, _Session())

    def forget_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed: stop its generation and drop its state."""
        key = getattr(request, "session_hash", None) or "local"
        with self._sessions_lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.stop.set()

    # the model (the functions that need a GPU)
    def _run_model(self, video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
                   end: float | None, settings: GenerationSettings, stop: StopFlag) -> Iterator[str | GenerationStats]:
        """Text chunks of the answer, then the answer's GenerationStats."""
        engine = self.holder.get()
        clip = engine.load_clip(video, frames=frames, start=start, end=end)
        yield from engine.stream(clip, question, history, settings=settings, stop=stop)
        yield engine.last_stats

    def _synth_call(self, clip: VideoClip | None, question: str, history: Sequence[Turn],
                    settings: GenerationSettings | None, stop: StopFlag | None) -> Iterator[str]:
        """One model call of the synthesis recipe: about a clip, or text only (clip None)."""
        engine = self.holder.get()
        if clip is None:
            yield from engine.stream_text(question, history, settings=settings, stop=stop)
        else:
            yield from engine.stream(clip, question, history, settings=settings, stop=stop)

    def synth_engine(self) -> Engine | EngineOnGpu:
        """The engine for synth.synthesize: itself, or on ZeroGPU each model call in a GPU slot."""
        engine = self.holder.get()
        return engine if self._synth_call_gpu is None else EngineOnGpu(engine, self._synth_call_gpu)

    def _answer(self, video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
                end: float | None, settings: GenerationSettings, stop: StopFlag) -> Iterator[str | GenerationStats]:
        """`_run_model` in a thread of its own, so that the time Gradio takes per update never slows
        the model: the chunks made meanwhile come out joined. User errors become gr.Error; when the
        consumer goes away (a cancelled event), the model is stopped and waited for."""
        items: queue.Queue = queue.Queue()

        def produce() -> None:
            stream = self._run_model_gpu(video, question, tuple(history), frames, start, end, settings, stop)
            try:
                for item in stream:
                    items.put(item)
            except BaseException as err:  # handed to the consumer, raised there
                items.put(_Failed(err))
            finally:
                stream.close()
                items.put(_DONE)

        # copy_context: spaces.GPU finds the Gradio request in a context variable
        worker = threading.Thread(target=contextvars.copy_context().run, args=(produce,), name="generate",
                                  daemon=True)
        worker.start()
        finished = False
        try:
            with _user_errors(video):
                while not finished:
                    batch = [items.get()]
                    while not items.empty():
                        batch.append(items.get_nowait())
                    text = ""
                    for item in batch:
                        if item is _DONE:
                            finished = True
                        elif isinstance(item, _Failed):
                            raise item.error
                        elif isinstance(item, str):
                            text += item
                        else:
                            yield item  # the GenerationStats
                    if text:
                        yield text
        finally:
            if not finished:
                stop.set()  # the engine checks it after every token (a forked ZeroGPU worker too)
            worker.join()
            stop.clear()  # its work is done (and a ZeroGPU marker file is removed)

    # status line
    def status(self, stats: GenerationStats | None = None) -> str:
        holder = self.holder
        if not holder.ready:
            if holder.loading:
                step = holder.messages[-1] if holder.messages else "starting"
                return f"**Loading the model…** {step}"
            return f"**The model could not be loaded:** {holder.error}"
        engine = holder.engine
        parts = [f"**{Path(engine.model_id).name if os.path.isdir(engine.model_id) else engine.model_id}**",
                 engine.quant, engine.device]
        vram = vram_in_use_gib(engine.device)
        if vram is not None:
            parts.append(f"VRAM in use {vram:.1f} GiB")
        if stats is not None:
            if stats.peak_vram_gib is not None:
                parts.append(f"peak {stats.peak_vram_gib:.1f} GiB")
            parts += [f"first token {stats.time_to_first_token_s:.2f} s", f"{stats.tokens_per_s:.1f} tok/s",
                      f"{stats.new_tokens} tokens"]
            if stats.video_cached:
                parts.append("video from cache")
            if stats.reused_tokens:
                parts.append(f"{stats.reused_tokens} prompt tokens reused")
            if stats.stopped:
                parts.append("**stopped**")
        return " · ".join(parts)

    def loading_status(self) -> tuple[str, gr.Timer]:
        """Timer tick while loading: the progress, and the timer stops once loading is over."""
        return self.status(), gr.Timer(active=self.holder.loading)

    # UI events
    def on_task(self, task: str) -> str:
        return question_for_task(task)

    def on_video(self, video: str | None) -> tuple[float, float | None, str, ChatState, list, list]:
        """A new video (or none): its length fills the trim range; the conversation starts over.
        Returns (start, end, info, state, chat, gallery)."""
        if not video:
            return 0, None, "", ChatState(), [], []
        try:
            info = video_stage.probe_video(video)
        except VideoError as err:
            message = str(err).replace(str(video), Path(video).name)
            gr.Warning(message)
            return 0, None, f"**Not a usable video:** {message}", ChatState(), [], []
        text = (f"{info.duration:.2f} s · {info.fps:.3g} fps · {info.width}×{info.height} · "
                f"{info.total_frames} frames")
        return 0, _floor2(info.duration), text, ChatState(video=video, duration=info.duration), [], []

    def ask(self, video: str | None, question: str, start: float | None, end: float | None, frames: float,
            max_new_tokens: float, temperature: float, top_p: float, state: ChatState | None,
            request: gr.Request | None = None) -> Iterator[tuple]:
        """Ask about the video, or follow up on the same clip. Yields (chat, state, gallery, status,
        question box); the answer grows one chunk per yield."""
        state = state or ChatState()
        if not video:
            raise gr.Error("Upload a video first (or click an example).")
        question = (question or "").strip()
        if not question:
            raise gr.Error("Type a question, or pick a task.")
        frames = int(frames)
        if frames < 1:
            raise gr.Error("The number of frames must be at least 1.")
        start, end = state.trim(start, end)
        settings = _settings(max_new_tokens, temperature, top_p)
        engine = self.holder.get()
        with _user_errors(video):
            clip = engine.load_clip(video, frames=frames, start=start, end=end)
        conversation = state.for_clip(video, frames, start, end)
        new = conversation is not state
        history = tuple(conversation.turns)
        session = self._session(request)
        session.stop.clear()
        session.idle.clear()
        answers = self._answer(video, question, history, frames, start, end, settings, session.stop)
        stats = None
        try:
            yield (chat_messages([*history, Turn(question, "")]), conversation,
                   frame_gallery(clip) if new else gr.skip(), "Answering…", "")
            answer = ""
            for item in answers:
                if isinstance(item, GenerationStats):
                    stats = item
                    continue
                answer += item
                conversation.turns[len(history):] = [Turn(question, answer)]
                yield chat_messages(conversation.turns), conversation, gr.skip(), gr.skip(), gr.skip()
        except gr.Error:
            yield chat_messages(conversation.turns), conversation, gr.skip(), self.status(), question
            raise
        finally:
            answers.close()  # now, not when garbage-collected: the engine records its stats on closing
            session.stats = stats or engine.last_stats
            session.idle.set()
        if len(conversation.turns) == len(history):  # the model ended at once: keep the turn anyway
            conversation.turns.append(Turn(question, answer))
        yield chat_messages(conversation.turns), conversation, gr.skip(), self.status(session.stats), gr.skip()

    def new_conversation(self, state: ChatState | None) -> ChatState:
        """The chat's own clear button: same video, no history."""
        state = state or ChatState()
        return ChatState(video=state.video, duration=state.duration)

    def stop(self, request: gr.Request | None = None) -> str:
        """Stop this tab's generation; returns the status line once it has stopped."""
        session = self._session(request)
        session.stop.set()
        session.idle.wait(timeout=10)
        return self.status(session.stats)

    def clear(self, request: gr.Request | None = None) -> tuple:
        """New video: stop, forget the conversation and the cached videos.
        Returns (video, start, end, info, state, chat, gallery, status)."""
        session = self._session(request)
        session.stop.set()
        session.idle.wait(timeout=10)
        if self.holder.ready:
            self.holder.engine.clear()
        return None, 0, None, "", ChatState(), [], [], self.status()

    # API endpoints (gradio_client, MCP): the growing answer text
    def api_ask(self, video: str, question: str, frames: float | None = None, start: float | None = None,
                end: float | None = None, max_new_tokens: float | None = None, temperature: float | None = None,
                top_p: float | None = None) -> Iterator[str]:
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
        """
        if not video:
            raise gr.Error("No video given.")
        question = (question or "").strip()
        if not question:
            raise gr.Error("The question is empty.")
        config = self.config
        settings = _settings(config.max_new_tokens if max_new_tokens is None else max_new_tokens,
                             config.temperature if temperature is None else temperature,
                             config.top_p if top_p is None else top_p)
        frames = int(frames or config.frames)
        start = None if start is None or start <= 0 else float(start)
        end = None if end is None or end <= 0 else float(end)
        text = ""
        for item in self._answer(video, question, (), frames, start, end, settings, StopFlag()):
            if isinstance(item, str) and item:
                text += item
                yield text
        if not text:
            yield text

    def api_caption(self, video: str, frames: float | None = None, start: float | None = None,
                    end: float | None = None, max_new_tokens: float | None = None,
                    temperature: float | None = None, top_p: float | None = None) -> Iterator[str]:
        """A detailed caption of a video. Streams the caption as it grows.

        Args:
            video: the video file (mp4, webm, mov, ...).
            frames: frames sampled uniformly from the video (default: the app's, 64).
            start: start of the part of the video to use, in seconds (default: the beginning).
            end: end of the part of the video to use, in seconds (default: the end).
            max_new_tokens: longest caption, in tokens.
            temperature: 0 = greedy (default).
            top_p: nucleus sampling threshold.
        """
        yield from self.api_ask(video, CAPTION_QUESTION, frames, start, end, max_new_tokens, temperature, top_p)

    def api_ask_type(self, video: str, task: str, frames: float | None = None, start: float | None = None,
                     end: float | None = None, max_new_tokens: float | None = None,
                     temperature: float | None = None, top_p: float | None = None) -> Iterator[str]:
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
        """
        with _user_errors():
            question = question_for_task(task) if task != TASK_OWN else ""
        if not question:
            raise gr.Error(f"task must be one of: {', '.join(TASKS[:-1])}")
        yield from self.api_ask(video, question, frames, start, end, max_new_tokens, temperature, top_p)


# --- "Generate synthetic QA": the panel over synth.py ----------------------------------------------------

SYNTH_COLUMNS = ["keep", "type", "question", "answer"]
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


def _level_text(descriptions: Sequence[Any], partial: tuple[float, float, str] | None = None) -> str:
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


@dataclass
class _SynthSession:
    stop: StopFlag = field(default_factory=StopFlag)
    idle: threading.Event = field(default_factory=_idle_event)


class SynthPanel:
    """Handlers of the "Generate synthetic QA" tab, over `synth.synthesize` with the chat's engine.
    Results are saved under `out_dir` (default: the config's output_dir)."""

    def __init__(self, chat: VideoChat | EngineHolder | Engine, out_dir: str | os.PathLike | None = None):
        self.chat = chat if isinstance(chat, VideoChat) else VideoChat(chat)
        self.out_dir = Path(out_dir) if out_dir is not None else Path(self.chat.config.output_dir)
        self._sessions: dict[str, _SynthSession] = {}
        self._lock = threading.Lock()
        self.api_description_tokens: int | None = None  # /synth's limits; None = SynthOptions' defaults
        self.api_qa_tokens: int | None = None

    def _session(self, request: gr.Request | None) -> _SynthSession:
        key = getattr(request, "session_hash", None) or "local"
        with self._lock:
            return self._sessions.setdefault(key, _SynthSession())

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
               qa_tokens: float | None, stop: threading.Event | None) -> Iterator[SynthEvent]:
        """synthesize() over the engine, after checking the input (gr.Error on bad input)."""
        message = self._check_video(video)
        if message:
            raise gr.Error(message)
        with _user_errors(video):
            options = self._options(types, description_tokens, qa_tokens)
        engine = self.chat.synth_engine()
        with _user_errors(video):
            yield from synthesize(engine, video, options, video_root=Path(video).parent, stop=stop)

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
        session = self._session(request)
        session.stop.clear()
        session.idle.clear()
        levels: dict[int, list[Description]] = {1: [], 2: [], 3: []}
        progress, partial = "Loading the video…", ""
        try:
            yield progress, "", "", "", [], None
            try:
                events = self.events(video, types, description_tokens, qa_tokens, session.stop)
                for event in events:
                    if isinstance(event, Planned):
                        calls = event.plan.calls
                        progress = (f"{event.total_steps} model calls: {calls['level1']} level-1, "
                                    f"{calls['level2']} level-2, 1 level-3, {calls['qa']} QA")
                        yield progress, skip, skip, skip, skip, skip
                    elif isinstance(event, CallStarted):
                        partial = ""
                        progress = f"step {event.step}/{event.total_steps}: {_call_label(event)}"
                        yield progress, skip, skip, skip, skip, skip
                    elif isinstance(event, TextChunk) and event.window is not None:  # a description being written
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

    @staticmethod
    def table(result: Any) -> list[list[Any]]:
        return [[p.keep, p.question_type, p.question, p.answer] for p in result.pairs]

    def pairs_from_table(self, result: Any, table: Any) -> list[Any]:
        """The edited pairs: row i is result.pairs[i] with the table's keep/type/question/answer; an
        answer that was changed drops the multiple-choice options (they were made for the old one);
        rows added at the end become new open-ended pairs."""
        from .prompts import question_type as find_type

        pairs = []
        for i, row in enumerate(_table_rows(table)):
            row = (row + [None] * 4)[:4]
            keep, qtype, question, answer = row
            question = "" if question is None else str(question)
            answer = "" if answer is None else str(answer)
            base = result.pairs[i] if i < len(result.pairs) else None
            try:
                qtype = find_type(str(qtype)).name
            except (KeyError, ValueError):
                if base is None:
                    continue
                qtype = base.question_type
            if base is not None and answer.strip() == base.answer.strip():
                correct, wrong = base.correct_option, list(base.wrong_options)
            else:
                correct, wrong = None, []
            pairs.append(QAPair(qtype, question, answer, correct, wrong, keep=_truthy(keep)))
        return pairs

    def save(self, result: Any, table: Any) -> str:
        """Save button: this video's records with the table's edits (unticked rows removed) into the
        output folder. Returns where and how many."""
        if result is None:
            gr.Warning("Nothing to save yet: generate first.")
            return "Nothing to save yet: generate first."
        pairs = self.pairs_from_table(result, table)
        written = save_edited_pairs(self.out_dir, result, pairs)
        counts = {task: len(result.records(pairs)[task]) for task in RECORD_TASKS}
        kept = sum(1 for p in pairs if p.keep)
        files = ", ".join(sorted(written)) or "no split files"
        return (f"Saved to {self.out_dir.resolve()}: {counts.get('cap', 0)} caption, {counts.get('oe', 0)} "
                f"open-ended, {counts.get('mc', 0)} multiple-choice records ({kept} of {len(pairs)} pairs kept) "
                f"in {files}; manifest videos/{result.video_id}.json")

    def download(self) -> str | None:
        """Download button: the whole output folder as a zip (JSON arrays + manifests)."""
        if not self.out_dir.is_dir():
            gr.Warning("Nothing saved yet in the output folder.")
            return None
        return str(export_run(self.out_dir))

    def stop(self, request: gr.Request | None = None) -> str:
        session = self._session(request)
        session.stop.set()
        session.idle.wait(timeout=10)
        return "Stopped."

    def api_synth(self, video: str) -> Iterator[str]:
        """Synthetic instruction data for a video (the LLaVA-Video-178K recipe): level-1/2/3
        descriptions, then QA pairs of the 16 question types. Streams progress lines, then the final
        JSON: {"caption", "pairs", "records": {"cap", "oe", "mc"}, "summary"}.

        Args:
            video: the video file (mp4, webm, mov, ...).
        """
        import json

        progress = ""
        for event in self.events(video, None, self.api_description_tokens, self.api_qa_tokens, StopFlag()):
            if isinstance(event, CallStarted):
                progress = f"step {event.step}/{event.total_steps}: {event.stage}"
                yield progress
            elif isinstance(event, Done):
                result = event.result
                yield json.dumps({"caption": result.caption, "pairs": [p.to_dict() for p in result.pairs],
                                  "records": result.records(), "summary": result.summary()}, ensure_ascii=False)


def synth_tab(chat: VideoChat, out_dir: str | os.PathLike | None = None) -> SynthPanel:
    """The "Generate synthetic QA" tab (an `extra_tabs` entry of build_ui) and the /synth endpoint."""
    panel = SynthPanel(chat, out_dir)
    model_event = dict(concurrency_limit=1, concurrency_id=MODEL_EVENTS)
    private = dict(api_visibility="private")
    with gr.Tab("Generate synthetic QA", id="synth"):
        gr.Markdown("Make training data for the video (the Ask tab's, or upload another here): 10 s level-1 "
                    "descriptions, 30 s level-2, the level-3 caption, then QA pairs of the ticked types. Review "
                    "the table, then Save.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                video = gr.Video(label="Another video (optional)", sources=["upload"], height=220,
                                 elem_id="synth-video")
                source = gr.Markdown(synth_source(None, None), elem_id="synth-source")
                types = gr.CheckboxGroup([t.name for t in QUESTION_TYPES], value=[t.name for t in QUESTION_TYPES],
                                         label="Question types", elem_id="synth-types")
                with gr.Accordion("Settings", open=False, elem_id="synth-settings"):
                    desc_tokens = gr.Slider(16, 2048, value=SynthOptions.DESCRIPTION_TOKENS, step=1, label="Max new tokens per description",
                                            elem_id="synth-desc-tokens")
                    qa_tokens = gr.Slider(16, 1024, value=SynthOptions.QA_TOKENS_PER_TYPE, step=1, label="Max new tokens per QA call",
                                          elem_id="synth-qa-tokens")
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
        table = gr.Dataframe(headers=SYNTH_COLUMNS, datatype=["bool", "str", "str", "str"], column_count=(4, "fixed"),
                             interactive=True, wrap=True, label="QA pairs (edit; untick to drop)",
                             elem_id="synth-table")
        result = gr.State(None)
        with gr.Row():
            save_btn = gr.Button("Save", elem_id="synth-save")
            download_btn = gr.Button("Download (zip)", elem_id="synth-download")
        saved = gr.Markdown(elem_id="synth-saved")
        zip_file = gr.File(label="Download", interactive=False, elem_id="synth-zip")
        # The Ask tab's video is the one to use unless another is uploaded here (None: a tab on its own).
        shared = [chat.video_input] if chat.video_input is not None else []
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


# --- layout ------------------------------------------------------------------------------------------

def build_ui(chat: VideoChat | EngineHolder | Engine,
             extra_tabs: Sequence[Callable[[VideoChat], None]] = ()) -> gr.Blocks:
    """The Blocks app. `extra_tabs`: functions called inside the tab bar to add a tab each (the place
    for the "Generate synthetic QA" panel), given the VideoChat (its engine: `chat.holder.get()`)."""
    chat = chat if isinstance(chat, VideoChat) else VideoChat(chat)
    config = chat.config
    model_event = dict(concurrency_limit=1, concurrency_id=MODEL_EVENTS)
    with gr.Blocks(title="LLaVA-Video") as demo:
        gr.Markdown("## LLaVA-Video: ask about a video\nDrop in a video, pick a task or type a question, "
                    "and watch the answer stream in. Follow-up questions continue the conversation on the "
                    "same clip.")
        status = gr.Markdown(chat.status(), elem_id="status")
        state = gr.State(ChatState())
        with gr.Tabs():
            with gr.Tab("Ask about a video", id="ask"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        video = gr.Video(label="Video", sources=["upload"], height=240, elem_id="video")
                        info = gr.Markdown(elem_id="video-info")
                        with gr.Row():
                            start = gr.Number(0, label="Start (s)", minimum=0, elem_id="start")
                            end = gr.Number(None, label="End (s)", minimum=0, elem_id="end",
                                            info="empty = to the end")
                        task = gr.Dropdown(list(TASKS), value=TASK_CAPTION, label="Task", elem_id="task")
                        with gr.Accordion("Settings", open=False):
                            frames = gr.Slider(min(FRAMES_MIN, config.frames), max(FRAMES_MAX, config.frames),
                                               value=config.frames, step=1, label="Frames",
                                               info="sampled uniformly; 64 is the authors' setting")
                            max_new_tokens = gr.Slider(1, max(4096, config.max_new_tokens),
                                                       value=config.max_new_tokens, step=1, label="Max new tokens")
                            temperature = gr.Slider(0, 2, value=config.temperature, step=0.05,
                                                    label="Temperature", info="0 = greedy")
                            top_p = gr.Slider(0.05, 1, value=config.top_p, step=0.05, label="Top p")
                    with gr.Column(scale=3, min_width=420):
                        chatbot = gr.Chatbot(label="Conversation", height=320, elem_id="chat",
                                             placeholder="The answer streams here.")
                        question = gr.Textbox(CAPTION_QUESTION, label="Question", lines=2, elem_id="question",
                                              placeholder="Ask about the video; follow-ups continue the chat")
                        with gr.Row():
                            ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                            clear_btn = gr.Button("Clear / new video", elem_id="clear")
                        gallery = gr.Gallery(label="Frames the model saw", columns=8, height=190,
                                             object_fit="contain", elem_id="frames", allow_preview=True)
                examples = [[str(ASSETS / name), name_task, question_for_task(name_task)]
                            for name, name_task in EXAMPLES if (ASSETS / name).is_file()]
                if examples:
                    gr.Examples(examples, inputs=[video, task, question], label="Examples")
            chat.video_input = video  # other tabs work on the same video (see synth_tab)
            for add_tab in extra_tabs:  # e.g. "Generate synthetic QA"
                add_tab(chat)

        # The named API (gradio_client / MCP): hidden inputs, the growing answer as output.
        with gr.Column(visible=False):
            api_video = gr.File(label="video", type="filepath")
            api_question = gr.Textbox(label="question")
            api_task = gr.Textbox(label="task")
            api_frames = gr.Number(config.frames, label="frames", precision=0)
            api_start = gr.Number(None, label="start")
            api_end = gr.Number(None, label="end")
            api_tokens = gr.Number(config.max_new_tokens, label="max_new_tokens", precision=0)
            api_temperature = gr.Number(config.temperature, label="temperature")
            api_top_p = gr.Number(config.top_p, label="top_p")
            api_answer = gr.Textbox(label="answer")
            api_trigger = gr.Button()
        options = [api_frames, api_start, api_end, api_tokens, api_temperature, api_top_p]
        api_trigger.click(chat.api_caption, [api_video, *options], api_answer, api_name="caption", **model_event)
        api_trigger.click(chat.api_ask, [api_video, api_question, *options], api_answer, api_name="ask",
                          **model_event)
        api_trigger.click(chat.api_ask_type, [api_video, api_task, *options], api_answer, api_name="ask_type",
                          **model_event)
        # The place for /synth (the "Generate synthetic QA" panel's endpoint).

        private = dict(api_visibility="private")
        task.change(chat.on_task, task, question, queue=False, **private)
        video.change(chat.on_video, video, [start, end, info, state, chatbot, gallery], **private)
        asking = gr.on([ask_btn.click, question.submit], chat.ask,
                       [video, question, start, end, frames, max_new_tokens, temperature, top_p, state],
                       [chatbot, state, gallery, status, question], show_progress="minimal",
                       **model_event, **private)
        stop_btn.click(chat.stop, None, status, cancels=[asking], concurrency_limit=None, **private)
        clear_btn.click(chat.clear, None, [video, start, end, info, state, chatbot, gallery, status],
                        cancels=[asking], concurrency_limit=None, **private)
        chatbot.clear(chat.new_conversation, state, state, **private)
        timer = gr.Timer(1.0, active=chat.holder.loading)
        timer.tick(chat.loading_status, None, [status, timer], **private)
        demo.load(chat.status, None, status, **private)
        demo.unload(chat.forget_session)
    demo.queue(default_concurrency_limit=1)
    return demo


# --- running it ----------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> AppConfig:
    parser = argparse.ArgumentParser(
        prog="app.py", description="LLaVA-Video in the browser: ask about videos, stream the answers. "
        "Settings also come from LLAVA_VIDEO_* environment variables; flags win.")
    parser.add_argument("--model", help=f"Hub id or local folder (default: {DEFAULT_MODEL} on CUDA, "
                                        "the small OneVision model on CPU)")
    parser.add_argument("--quant", choices=QUANTIZATIONS, help="default: 4bit on CUDA, fp32 on CPU")
    parser.add_argument("--device", help="cuda, cuda:N or cpu")
    parser.add_argument("--frames", type=int, help="default frames per video (64)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="decode through torch.compile over a static KV cache: faster tokens on a GPU "
                             "after a one-off compile (about a minute) at start-up")
    parser.add_argument("--host", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="default 7860")
    parser.add_argument("--share", action="store_true", default=None, help="also serve on a public gradio.live link")
    parser.add_argument("--output-dir", type=Path, help="where generated data is written (default outputs/)")
    parser.add_argument("--mcp-server", action="store_true", default=None,
                        help="also serve the API as an MCP server (needs: pip install 'gradio[mcp]')")
    args = parser.parse_args(argv)
    try:
        return AppConfig.from_env().with_overrides(**vars(args))
    except (ValueError, TypeError) as err:
        parser.error(str(err))


def launch(demo: gr.Blocks, config: AppConfig, **overrides: Any):
    """demo.launch with the app's settings: local address unless --host/--share, upload size limit,
    MCP server only when asked for."""
    if config.mcp_server and importlib.util.find_spec("mcp") is None:
        raise SystemExit("error: --mcp-server needs the MCP extra: pip install 'gradio[mcp]'")
    options: dict[str, Any] = dict(server_name=config.host, server_port=config.port, share=config.share,
                                   max_file_size=f"{config.max_upload_mb}mb", mcp_server=config.mcp_server,
                                   show_error=True)
    options.update(overrides)
    return demo.launch(**options)


def run_app(config: AppConfig) -> None:
    """Serve at once, load the model in the background (its progress shows in the status line)."""
    holder = EngineHolder(config).start()
    launch(build_ui(VideoChat(holder), extra_tabs=[synth_tab]), config)


def main(argv: Sequence[str] | None = None) -> None:
    run_app(parse_args(argv))
