"""Serving the model to the tabs: the engine loaded in the background (`EngineHolder`) and the status
line about it, each browser tab's Stop and idle state (`Sessions`), the user's mistakes as messages
(`user_errors`, `refuse`: one line on the console each, no traceback), and `ModelRunner`: the
functions that run the model, wrapped once for the GPU, with an answer produced in a thread of its
own and streamed back to Gradio."""

from __future__ import annotations

import contextvars
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from ..config import AppConfig, GenerationSettings
from ..engine import Engine, GenerationStats, visiting
from ..gpu_queue import GpuQueue, TakingTurns
from ..prompts import Turn
from ..video import VideoClip, VideoError
from .zerogpu import EngineOnGpu, Gpu, StopFlag, gpu_duration, synth_call_duration

# Concurrency id of the events that answer (the Ask tab's and the endpoints), with a limit of
# MODEL_EVENT_WORKERS: that many requests at once check and read their video (a read that stalls holds
# only its own request); the model itself runs one call at a time, in turns (gpu_queue.GpuQueue).
MODEL_EVENTS = "model"
MODEL_EVENT_WORKERS = 8
# Concurrency id of the synthesis events, with a limit of 1: one synthesis at a time in a queue of its
# own; each of its model calls takes a turn in the same GPU line as the answers.
SYNTH_EVENTS = "synth"
# How often an answer that waits for the GPU re-sends where it stands in the line.
WAITING_HEARTBEAT_S = 0.5


class EngineHolder:
    """The engine, loaded once. `start()` loads it in a thread, so the page serves (and shows the
    loading progress) at once; handlers wait in `get()` until it is there."""

    def __init__(self, config: AppConfig | None = None, engine: Engine | None = None):
        self.config = config or (engine.config if engine is not None else AppConfig())
        self.engine = engine
        self.error: str | None = None
        self.messages: list[str] = []
        self.gpu_queue = GpuQueue()  # every model call of every tab takes its turn here
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

    def wait(self) -> None:
        """Until the load has succeeded or failed (in short waits, so that Ctrl+C still interrupts)."""
        while not self._done.wait(0.5):
            pass

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
            raise refuse("The model is still loading; try again in a moment.")
        if self.engine is None:
            raise refuse(f"The model could not be loaded: {self.error}")
        return self.engine


def vram_in_use_gib(device: str) -> float | None:
    """GiB of CUDA memory allocated on the engine's device now; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.memory_allocated(device) / 2**30


def status_line(holder: EngineHolder, stats: GenerationStats | None = None) -> str:
    """The line at the top of the page: loading progress or error, else the model, its quantisation
    and device, VRAM, and the last answer's speed."""
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


# --- per browser tab ---------------------------------------------------------------------------------

def _idle_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class Session:
    stop: StopFlag = field(default_factory=StopFlag)
    idle: threading.Event = field(default_factory=_idle_event)  # no generation running
    stats: GenerationStats | None = None  # of the last answer


class Sessions:
    """One Session per browser tab (Gradio's session hash; "local" when called without a request), at
    most `capacity` (AppConfig.max_sessions): API clients never send the page's unload, so the least
    recently used idle sessions make room (one mid-answer is kept)."""

    def __init__(self, capacity: int = 500) -> None:
        self.capacity = max(1, capacity)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "local"

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, request: gr.Request | None) -> Session:
        key = self.key(request)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session()
                self._evict()
            self._sessions.move_to_end(key)
            return session

    def _evict(self) -> None:
        for key in [k for k, s in self._sessions.items() if s.idle.is_set()]:
            if len(self._sessions) <= self.capacity:
                break
            del self._sessions[key]

    def pop(self, request: gr.Request | None) -> Session | None:
        with self._lock:
            return self._sessions.pop(self.key(request), None)

    def stop(self, request: gr.Request | None, timeout: float = 10) -> Session:
        """Stop this tab's generation and wait (up to `timeout` s) until it has really ended."""
        session = self.get(request)
        session.stop.set()
        session.idle.wait(timeout=timeout)
        return session


def refuse(message: str) -> gr.Error:
    """A request refused for the user's input: the message for the page or the API client, and one
    line on the server's console; Gradio prints no traceback for it (tracebacks are for real faults)."""
    print(f"refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


@contextmanager
def user_errors(video: str | None = None) -> Iterator[None]:
    """The user's mistakes (a bad file, a bad range, too many tokens) as a message in the UI (see
    `refuse`); the upload's path in Gradio's temporary folder is shortened to its file name."""
    try:
        yield
    except gr.Error:
        raise
    except (VideoError, ValueError, FileNotFoundError) as err:
        message = str(err)
        if video:
            message = message.replace(str(video), Path(video).name)
        raise refuse(message) from None


# --- running the model -------------------------------------------------------------------------------

_DONE = object()  # end of a stream's items


@dataclass
class _Failed:
    error: BaseException


# Yielded by stream_in_thread(heartbeat=...) when the producer has made nothing for that long.
HEARTBEAT = object()


@dataclass
class Waiting:
    """Yielded by ModelRunner.answer while the answer waits for its turn on the GPU: what to tell the visitor."""
    message: str


def stream_in_thread(make_stream: Callable[[], Iterator[Any]], stop: threading.Event,
                     heartbeat: float | None = None) -> Iterator[Any]:
    """The items of `make_stream()`, produced in a thread of its own, so that the time Gradio takes per
    update never slows the model: the text chunks made meanwhile come out joined, other items as they
    are. The producer's errors are raised here; when the consumer goes away (a cancelled event), the
    producer is stopped through `stop` and waited for.

    `heartbeat` (s): HEARTBEAT is yielded at least that often, items or none (a batch of QA answers
    makes none for long; a description's chunks are items the handler may not send on). Gradio notices
    a client that left only between two updates of a generator, so a handler re-sends its progress on
    each heartbeat, and is closed within about one of a disconnect."""
    items: queue.Queue = queue.Queue()

    def produce() -> None:
        stream = make_stream()
        try:
            for item in stream:
                items.put(item)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(_Failed(err))
        finally:
            stream.close()
            items.put(_DONE)

    # copy_context: spaces.GPU finds the Gradio request in a context variable
    worker = threading.Thread(target=contextvars.copy_context().run, args=(produce,), name="generate", daemon=True)
    worker.start()
    finished = False
    beat = time.monotonic()
    try:
        while not finished:
            if heartbeat is not None and time.monotonic() - beat >= heartbeat:
                beat = time.monotonic()
                yield HEARTBEAT
            try:
                batch = [items.get(timeout=heartbeat)]
            except queue.Empty:
                continue
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
                    yield item
            if text:
                yield text
    finally:
        if not finished:
            stop.set()  # the engine checks it after every token (a forked ZeroGPU worker too)
        worker.join()
        stop.clear()  # its work is done (and a ZeroGPU marker file is removed)


class ModelRunner:
    """The functions that run the model, for every tab: an answer, and one model call of the synthesis
    recipe. `gpu` wraps them (spaces.GPU on a ZeroGPU Space; nothing elsewhere), here, once, not per
    request: spaces.GPU keeps a forked GPU worker per wrapped function (and every wrapper for good),
    so a wrapper per run would fork a new worker each time."""

    def __init__(self, holder: EngineHolder | Engine, *, gpu: Gpu | None = None):
        self.holder = holder if isinstance(holder, EngineHolder) else EngineHolder(engine=holder)
        self.gpu = gpu  # for other model calls wrapped once at start-up too (compare_panel.Comparer)
        self._answer_on_gpu = gpu(self._answer, gpu_duration) if gpu is not None else self._answer
        self._synth_call_on_gpu = gpu(self._synth_call, synth_call_duration) if gpu is not None else None

    @property
    def config(self) -> AppConfig:
        return self.holder.config

    def _answer(self, video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
                end: float | None, settings: GenerationSettings, stop: StopFlag,
                visitor: str = "", clip: VideoClip | None = None) -> Iterator[str | GenerationStats]:
        """Text chunks of the answer, then the answer's GenerationStats (runs on the GPU), from and into
        the `visitor`'s caches. `clip`: the video already decoded (answer() does it before its turn, so
        no read of the file happens in the turn); None: decoded here."""
        engine = self.holder.get()
        with visiting(visitor):
            if clip is None:
                engine.check_request(video, question, history, frames=frames, start=start, end=end,
                                     max_new_tokens=settings.max_new_tokens)  # before any decoding
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

    @property
    def gpu_queue(self) -> GpuQueue:
        return self.holder.gpu_queue

    def answer(self, video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
               end: float | None, settings: GenerationSettings, stop: StopFlag, visitor: str = "",
               cut_short: Callable[[GenerationStats], None] | None = None) -> Iterator[str | GenerationStats | Waiting]:
        """The answer's text as it grows (chunks made while Gradio was busy come joined), then its
        GenerationStats; the user's mistakes as gr.Error. `visitor`: whose caches (Sessions.key).

        The request is checked and its video read and decoded first, outside the GPU's line (a read
        that stalls, up to its deadline, holds this request only); then the answer waits for its turn,
        yielding Waiting every WAITING_HEARTBEAT_S (the visitor sees where it stands, and Gradio
        notices a client that left), and holds the GPU for its model call alone.

        `cut_short(stats)`: called with the answer's stats when it is closed before yielding them (a
        Stop, a cancelled event), from within its turn: the engine's last stats are then this
        answer's, not another visitor's made since."""
        with user_errors(video):
            engine = self.holder.get()
            with visiting(visitor):
                engine.check_request(video, question, history, frames=frames, start=start, end=end,
                                     max_new_tokens=settings.max_new_tokens)  # before any decoding
                started = time.perf_counter()
                clip, clip_cached = engine._load_clip(video, frames=frames, start=start, end=end)
                decode_s = time.perf_counter() - started
            with self.gpu_queue.join("an answer") as ticket:
                while not ticket.wait(WAITING_HEARTBEAT_S):
                    if stop.is_set():  # Stop while waiting: nothing ran
                        return
                    yield Waiting(self.gpu_queue.waiting_line(ticket))
                stats, before = None, engine.last_stats
                try:
                    for item in stream_in_thread(
                            lambda: self._answer_on_gpu(video, question, tuple(history), frames, start, end, settings,
                                                        stop, visitor, clip), stop):
                        if isinstance(item, GenerationStats):  # the decoding was done before the turn: count it in
                            stats = item
                            item.video_s = 0.0 if clip_cached else decode_s
                            item.time_to_first_token_s += item.video_s
                            item.total_s += item.video_s
                        yield item
                finally:
                    if stats is None and cut_short is not None and engine.last_stats is not before:  # this call's
                        cut_short(engine.last_stats)

    def synth_engine(self) -> TakingTurns:
        """The engine for the synthesis recipe: itself (on ZeroGPU each model call in a GPU slot), each
        model call taking its turn in the GPU's line, so that answers go between a synthesis's calls."""
        engine = self.holder.get()
        inner = engine if self._synth_call_on_gpu is None else EngineOnGpu(engine, self._synth_call_on_gpu)
        return TakingTurns(inner, self.gpu_queue)
