"""The one entry point the UI and the CLI share: video + question (+ history) -> a stream of text.

video file -> frames + timestamps (video.py) -> prompt (prompts.py) -> visual tokens + embeddings
(model.py) -> token loop (here) -> text chunks. Frames, visual features and the KV cache of the last
conversation are kept, so a follow-up question on the same video only prefills its new text.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch

from . import video as video_stage
from .config import AppConfig, GenerationSettings
from .model import IMAGE_TOKEN_INDEX, LlavaVideoModel
from .prompts import Turn, build_prompt
from .video import VideoClip

PREFILL_CHUNK = 2048  # tokens per prefill forward pass
STATIC_CACHE_MIN = 4096  # static KV caches come in power-of-two sizes from here: one compile per size


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # whole input sequence, visual tokens included
    visual_tokens: int = 0
    reused_tokens: int = 0  # prefix served from the KV cache (follow-ups)
    new_tokens: int = 0
    video_cached: bool = False  # frames and features came from the cache
    stopped: bool = False
    time_to_first_token_s: float = 0.0
    total_s: float = 0.0
    peak_vram_gib: float | None = None

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.time_to_first_token_s
        return (self.new_tokens - 1) / decode_s if self.new_tokens > 1 and decode_s > 0 else 0.0


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = max(0, size)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> tuple[Any, bool]:
        if key in self:
            self.move_to_end(key)
            return self[key], True
        value = make()
        if self.size:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value, False


@dataclass
class _KVState:
    """The KV cache of the last conversation and exactly which inputs it holds."""

    visual_key: Hashable | None
    ids: list[int]  # prompt ids (sentinel for the video) + the generated tokens fed back
    cache: Any = field(repr=False)


class Engine:
    def __init__(self, model: LlavaVideoModel, config: AppConfig | None = None):
        self.model = model
        self.config = config or AppConfig()
        self._clips = _LRU(self.config.cache_videos)
        self._features = _LRU(self.config.cache_videos)
        self._kv: _KVState | None = None
        self._lock = threading.RLock()  # one forward pass on the GPU at a time
        self._decoder = CompiledDecoder(model) if self.config.compile else None
        self._static_cache = self.config.compile  # compiled steps need fixed-size KV tensors
        self._static: Any = None  # the one static KV cache, reused (see _new_cache)
        self.last_stats: GenerationStats | None = None

    @classmethod
    def from_config(cls, config: AppConfig, progress: Callable[[str], None] | None = None) -> "Engine":
        resolved = config.resolved()
        if config.fell_back_to_cpu and progress:
            progress(f"No CUDA GPU found: using the small {resolved.model} on CPU ({resolved.quant}); "
                     "pass --model/--device to choose another")
        model = LlavaVideoModel.load(resolved.model, quant=resolved.quant, device=resolved.device,
                                     pool_mode=resolved.pool_mode, attn_implementation=resolved.attn_implementation,
                                     progress=progress)
        engine = cls(model, resolved)
        if engine._decoder is not None:
            if progress:
                progress("Compiling the decode step (once per start, about a minute on a GPU) ...")
            engine.warm_up()
        return engine

    def warm_up(self, frames: int | None = None) -> None:
        """Compile the decode step for the static cache size a request with `frames` frames uses, so
        that the first question does not pay for it (a no-op without --compile)."""
        if self._decoder is None:
            return
        frames = frames or self.config.frames
        visual = self.model.layout.visual_tokens(frames)
        ids = self.model.tokenize(build_prompt("Warm-up.", with_video=False))
        with self._lock, torch.inference_mode():
            # Created under inference_mode as in _generate: the compiled graph's guards tell the two apart.
            cache = self._new_cache(visual + 256 + self.config.max_new_tokens)  # 256: room for the prompt text
            self.model.lm(inputs_embeds=self.model.embed(ids, None), cache=cache, use_cache=True, logits_to_keep=1)
        for _ in range(3):  # compile, then record and replay the CUDA graph
            with self._lock:
                self._decoder(torch.tensor([[ids[-1]]], device=self.model.device), cache)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def quant(self) -> str:
        return self.model.quant

    @property
    def device(self) -> str:
        return str(self.model.device)

    # --- video ------------------------------------------------------------------------------------
    def load_clip(self, path: str | os.PathLike, *, frames: int | None = None, start: float | None = None,
                  end: float | None = None, sample_fps: float | None = None, max_frames: int | None = None) -> VideoClip:
        """Frames + timestamps of a video file, decoded once per file and sampling (cached)."""
        return self._load_clip(path, frames=frames, start=start, end=end, sample_fps=sample_fps,
                               max_frames=max_frames)[0]

    def _load_clip(self, path: str | os.PathLike, *, frames: int | None = None, start: float | None = None,
                   end: float | None = None, sample_fps: float | None = None,
                   max_frames: int | None = None) -> tuple[VideoClip, bool]:
        path = Path(path)
        frames = frames or self.config.frames
        size = (self.model.vision.image_size,) * 2 if self.config.decode_at_model_size else None
        key = (*_file_identity(path), frames, start, end, sample_fps, max_frames, size)
        return self._clips.get_or_make(key, lambda: video_stage.load_video(
            path, num_frames=frames, start=start, end=end, sample_fps=sample_fps, max_frames=max_frames, size=size))

    def visual_features(self, clip: VideoClip) -> tuple[torch.Tensor, bool]:
        """(visual tokens, hidden) for a clip, and whether they came from the cache."""
        key = _clip_key(clip)

        def encode() -> torch.Tensor:
            with self._lock:
                return self.model.encode_video(clip.frames)

        return self._features.get_or_make(key, encode)

    # --- generation -------------------------------------------------------------------------------
    def stream(self, video: str | os.PathLike | VideoClip, question: str, history: Sequence[Turn] = (), *,
               settings: GenerationSettings | None = None, stop: threading.Event | None = None) -> Iterator[str]:
        """Answer a question about a video, yielding text chunks as they are decoded."""
        started = time.perf_counter()
        if not question or not question.strip():
            raise ValueError("the question is empty")
        clip, clip_was_cached = (video, False) if isinstance(video, VideoClip) else self._load_clip(video)
        visual, features_cached = self.visual_features(clip)
        prompt = build_prompt(question, history, duration=clip.duration, timestamps=clip.timestamps)
        ids = self.model.tokenize(prompt)
        stats = GenerationStats(visual_tokens=visual.shape[0], video_cached=features_cached or clip_was_cached)
        yield from self._generate(ids, visual, _clip_key(clip), settings, stop, stats, started)

    def ask(self, video: str | os.PathLike | VideoClip, question: str, history: Sequence[Turn] = (), *,
            settings: GenerationSettings | None = None, stop: threading.Event | None = None) -> str:
        return "".join(self.stream(video, question, history, settings=settings, stop=stop))

    def stream_text(self, question: str, history: Sequence[Turn] = (), *, settings: GenerationSettings | None = None,
                    stop: threading.Event | None = None) -> Iterator[str]:
        """A text-only conversation (no video tokens), e.g. QA generation from a description."""
        started = time.perf_counter()
        if not question or not question.strip():
            raise ValueError("the question is empty")
        ids = self.model.tokenize(build_prompt(question, history, with_video=False))
        yield from self._generate(ids, None, None, settings, stop, GenerationStats(), started)

    def ask_text(self, question: str, history: Sequence[Turn] = (), *, settings: GenerationSettings | None = None,
                 stop: threading.Event | None = None) -> str:
        return "".join(self.stream_text(question, history, settings=settings, stop=stop))

    def _generate(self, ids: list[int], visual: torch.Tensor | None, visual_key: Hashable | None,
                  settings: GenerationSettings | None, stop: threading.Event | None, stats: GenerationStats,
                  started: float) -> Iterator[str]:
        settings = settings or GenerationSettings.from_config(self.config)
        model = self.model
        total = model.expanded_length(ids, 0) + (visual.shape[0] if visual is not None else 0)
        limit = int(model.config.get("max_position_embeddings", 32768))
        if total + settings.max_new_tokens > limit:
            raise ValueError(f"the input is {total} tokens; with {settings.max_new_tokens} new tokens it exceeds the "
                             f"model's {limit}: use fewer frames or fewer new tokens")
        stats.prompt_tokens = total
        cuda = model.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(model.device)
        generator = torch.Generator(device="cpu")
        generator.seed()
        detok = _IncrementalDecoder(model.tokenizer)
        kv, fed = self._take_kv(), list(ids)
        cache = None
        try:
            with self._lock, torch.inference_mode():
                needed = total + settings.max_new_tokens
                if kv is not None and _capacity(kv.cache) < needed:
                    kv = None  # a static cache too small for this request: start afresh
                reused = _prefix_length(kv, visual_key, ids, visual)
                stats.reused_tokens = reused
                embeds = model.embed(ids, visual)[:, reused:]
                if kv is not None and reused:
                    cache = kv.cache
                    cache.crop(reused - int(cache.get_seq_length()))
                else:
                    kv = None  # let the old cache go before the new one is allocated
                    cache = self._new_cache(needed)
                # Prefill in chunks: activation memory is bounded by the chunk, not by 13K visual tokens.
                for chunk_start in range(0, embeds.shape[1], PREFILL_CHUNK):
                    out = model.lm(inputs_embeds=embeds[:, chunk_start:chunk_start + PREFILL_CHUNK],
                                   cache=cache, use_cache=True, logits_to_keep=1)
                token = _sample(out.logits[0, -1], settings, generator)
            stats.time_to_first_token_s = time.perf_counter() - started
            for _ in range(settings.max_new_tokens):
                if token in model.eos_token_ids and not settings.ignore_eos:
                    break
                stats.new_tokens += 1
                chunk = detok.push(token)
                if chunk:
                    yield chunk
                if stop is not None and stop.is_set():
                    stats.stopped = True
                    break
                if stats.new_tokens >= settings.max_new_tokens:
                    break
                with self._lock:
                    logits = self._decode_step(torch.tensor([[token]], device=model.device), cache)
                    fed.append(token)
                    token = _sample(logits, settings, generator)
            tail = detok.flush()
            if tail:
                yield tail
        except GeneratorExit:  # the consumer went away (e.g. a cancelled UI event): that is a stop too
            stats.stopped = True
            raise
        finally:
            stats.total_s = time.perf_counter() - started
            if cuda:
                stats.peak_vram_gib = torch.cuda.max_memory_allocated(model.device) / 2**30
            if cache is not None:
                self._kv = _KVState(visual_key, fed, cache)
            self.last_stats = stats

    def _decode_step(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Next-token logits for one fed-back token."""
        if self._decoder is not None:
            return self._decoder(input_ids, cache)
        with torch.inference_mode():
            return self.model.lm(input_ids=input_ids, cache=cache, use_cache=True).logits[0, -1]

    def _new_cache(self, needed: int):
        """An empty KV cache for `needed` positions: dynamic (grows as needed), or, for the compiled
        decoder, the engine's one static cache. That one is emptied and reused while it is large
        enough, because the compiled graph (and its recorded CUDA graph) is bound to the size and
        the memory addresses of the cache; it is replaced by the next power of two above `needed`
        only when too small, so few sizes, each one compile, ever occur."""
        if not self._static_cache:
            from transformers import DynamicCache

            return DynamicCache()
        if self._static is not None and _capacity(self._static) >= needed:
            self._static.reset()
            return self._static
        from transformers import StaticCache

        self._static = None  # free the small one before allocating
        limit = int(self.model.config.get("max_position_embeddings", 32768))
        size = min(max(STATIC_CACHE_MIN, 1 << (needed - 1).bit_length()), max(limit, needed))
        self._static = StaticCache(config=self.model.lm.config, max_cache_len=size)
        return self._static

    def _take_kv(self) -> _KVState | None:
        """Hand the stored KV cache to this generation (it owns it until it stores its own back)."""
        with self._lock:
            kv, self._kv = self._kv, None
        return kv

    def clear(self) -> None:
        """Forget cached videos, features and conversation state (a "new video" reset)."""
        with self._lock:
            self._clips.clear()
            self._features.clear()
            self._kv = None  # the static cache stays: the compiled decoder is bound to its addresses
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()


def inspect_request(video: str | os.PathLike, question: str, *, model: str, frames: int = 64,
                    start: float | None = None, end: float | None = None, pool_mode: str | None = None) -> dict[str, Any]:
    """What the model would see for this request, without loading it or decoding a frame:
    frame indices and timestamps, the full prompt text and the number of visual tokens."""
    from .checkpoint import read_config, vision_config_of
    from .model import VisualLayout

    config = read_config(model)
    layout = VisualLayout.from_config(config, vision_config_of(config), pool_mode)
    info = video_stage.probe_video(video)
    indices = video_stage.sample_indices(info.total_frames, info.fps, num_frames=frames, start=start, end=end)
    timestamps = [i / info.fps for i in indices]
    return {
        "video": str(video), "model": model, "frame_indices": indices, "timestamps": timestamps,
        "duration": info.duration, "fps": info.fps, "prompt": build_prompt(question, duration=info.duration, timestamps=timestamps),
        "visual_tokens": layout.visual_tokens(len(indices)), "tokens_per_frame": layout.tokens_per_frame,
        "newline_position": layout.newline_position, "pool_mode": layout.pool_mode,
    }


def _file_identity(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path),)  # let the video stage report the missing file
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _clip_key(clip: VideoClip) -> Hashable:
    return (*_file_identity(Path(clip.path)), tuple(clip.frame_indices), clip.frames.shape)


class CompiledDecoder:
    """One decode step (one token in, next-token logits out) through torch.compile over a static
    KV cache; on a GPU in "reduce-overhead" mode, so each step is one CUDA graph replay instead of
    hundreds of kernel launches from Python (what makes eager 4-bit decoding slow at batch size 1).

    Prefill stays eager: its shapes change with every prompt. All steps run on one thread of their
    own because CUDA graph trees are per thread, and the app calls the engine from many threads.
    """

    def __init__(self, model: LlavaVideoModel):
        self.cuda = model.device.type == "cuda"
        self._step = torch.compile(model.lm.__call__, fullgraph=True, dynamic=False,
                                   mode="reduce-overhead" if self.cuda else None)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="decode-step")

    def __call__(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        return self._thread.submit(self._run, input_ids, cache).result()

    def _run(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            if self.cuda:
                torch.compiler.cudagraph_mark_step_begin()
            out = self._step(input_ids=input_ids, cache=cache, use_cache=True)
            # A CUDA graph's outputs are overwritten by its next replay: keep a copy.
            return out.logits[0, -1].clone()


def _capacity(cache: Any) -> int:
    """Positions a KV cache can hold (unbounded for a dynamic cache)."""
    sizes = [getattr(layer, "max_cache_len", None) for layer in getattr(cache, "layers", [])]
    return min(sizes) if sizes and None not in sizes else 1 << 62


def _prefix_length(kv: _KVState | None, visual_key: Hashable | None, ids: list[int], visual: torch.Tensor | None) -> int:
    """How many leading input positions the stored KV cache already holds for this input.

    At least one position is always left to prefill, so the model produces fresh logits.
    """
    if kv is None:
        return 0
    visual_len = visual.shape[0] if visual is not None else 0
    positions = 0
    for old, new in zip(kv.ids, ids):
        if old != new:
            break
        if new == IMAGE_TOKEN_INDEX:
            if kv.visual_key != visual_key:
                break
            positions += visual_len
        else:
            positions += 1
    total = sum(visual_len if t == IMAGE_TOKEN_INDEX else 1 for t in ids)
    positions = min(positions, total - 1, int(kv.cache.get_seq_length()))
    # Never cut through the visual block: it is all or nothing.
    if IMAGE_TOKEN_INDEX in ids:
        at = ids.index(IMAGE_TOKEN_INDEX)
        if at < positions < at + visual_len:
            positions = at
    return max(positions, 0)


def _sample(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator) -> int:
    if settings.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1).cpu()
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < settings.top_p
        sorted_probs[~keep] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class _IncrementalDecoder:
    """Detokenise a growing token list into text deltas without re-decoding everything each step
    and without emitting half a UTF-8 character (the usual prefix/read offset scheme)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        self.ids.append(token)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""

    def flush(self) -> str:
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return text[len(prefix):] if len(text) > len(prefix) else ""
