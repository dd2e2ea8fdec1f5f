"""What running on a ZeroGPU Space needs: the `gpu` wrapper's type (spaces.GPU there, nothing
elsewhere), the seconds of GPU time each model call asks for, a Stop that reaches a forked GPU
worker, and the engine as the synthesis recipe sees it with every model call in a GPU slot."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..config import GenerationSettings
from ..engine import Engine
from ..prompts import Turn
from ..video import VideoClip

# gpu(task, duration) -> task run on a GPU (spaces.GPU on ZeroGPU); duration(*args) = seconds to ask for
Gpu = Callable[[Callable[..., Any], Callable[..., int]], Callable[..., Any]]


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


def gpu_duration(video: str, question: str, history: Sequence[Turn], frames: int, start: float | None,
                 end: float | None, settings: GenerationSettings, stop: StopFlag, visitor: str = "",
                 clip: VideoClip | None = None) -> int:
    """Seconds of ZeroGPU time to ask for one answer (spaces.GPU's dynamic duration): room for
    decoding (when `clip` is None) and encoding the frames, the prefill, and max_new_tokens at a slow 20 tokens/s.
    64 frames and 1024 tokens: 97 s."""
    return int(min(300, 30 + 0.25 * frames + settings.max_new_tokens / 20))


def synth_call_duration(clip: VideoClip | None, question: str, history: Sequence[Turn],
                        settings: GenerationSettings | None, stop: StopFlag | None) -> int:
    """Seconds of ZeroGPU time for one model call of the synthesis recipe (a 10-frame level-1
    description with 512 tokens: 48 s; a 256-token QA call: 32 s), on the same terms as gpu_duration."""
    frames = len(clip.frame_indices) if clip is not None else 0
    tokens = (settings or GenerationSettings()).max_new_tokens
    return int(min(300, 20 + 0.25 * frames + tokens / 20))


class EngineOnGpu:
    """The engine as synth.recipe.synthesize uses it, with each model call in a GPU slot of its own and
    the video decoding outside. `call(clip | None, question, history, settings, stop)` is the
    GPU-wrapped model call (serving.ModelRunner's, wrapped once at start-up).

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
