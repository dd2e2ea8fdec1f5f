"""The one entry point the UI and the CLI share: video + question (+ history) -> a stream of text.

video file -> frames + timestamps (video.py) -> prompt (prompts.py) -> visual tokens + embeddings
(model.py) -> token loop (here) -> text chunks. Frames, visual features and the KV cache of the last
conversation are kept, so a follow-up question on the same video only prefills its new text.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch

from . import video as video_stage
from .config import AppConfig, GenerationSettings
from .decoding import CompiledDecoder, IncrementalDecoder, compile_cache_dir, sample
from .kv_cache import ConversationCache, check_holds, drop_last
from .recently_used import RecentlyUsed

# Whose caches a request uses: the visitor it is for (a browser session on the app; "" for the CLI and
# the synthesis recipe). Every cache key starts with it, so a visitor never hits, nor is told about,
# another visitor's cached video or conversation, and Clear drops only the visitor's own entries.
_visitor: contextvars.ContextVar[str] = contextvars.ContextVar("cache_visitor", default="")


@contextmanager
def visiting(visitor: str) -> Iterator[None]:
    """Within the block (this thread, or a generator consumed in it), the caches are `visitor`'s."""
    token = _visitor.set(visitor)
    try:
        yield
    finally:
        _visitor.reset(token)
from .model import LlavaVideoModel
from .prompts import Turn, build_prompt
from .provenance import prompt_hash
from .request import RequestError, check_clip, check_question, prompt_within_budget
from .transformers_support import check_transformers, with_cache
from .video import ClipPlan, VideoClip

# A prefill's length is padded to a multiple of this (the padding is cropped from the KV cache again),
# so follow-up questions of different lengths reuse a few input shapes instead of making new ones:
# per-shape work (kernel plans, autotuning) cost a first follow-up 0.8 s in 4-bit on an H200.
PREFILL_BUCKET = 64


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # whole input sequence, visual tokens included
    visual_tokens: int = 0
    reused_tokens: int = 0  # prefix served from the KV cache (follow-ups)
    new_tokens: int = 0
    token_ids: list[int] = field(default_factory=list, repr=False)  # the answer's tokens, as generated
    prompt_ids: list[int] = field(default_factory=list, repr=False)  # the input's ids (the sentinel for the video)
    video_cached: bool = False  # frames and features came from the cache
    stopped: bool = False
    time_to_first_token_s: float = 0.0  # from the request to the first token: the three parts below, and the rest
    video_s: float = 0.0  # decoding frames (0 when cached)
    vision_s: float = 0.0  # vision tower + projector (0 when cached)
    prefill_s: float = 0.0  # the language model over the new part of the input, up to the first token
    total_s: float = 0.0
    peak_vram_gib: float | None = None
    seed: int | None = None  # the sampler's seed (the settings' own, or the random one drawn)
    prompt_sha256: str = ""  # of the full prompt text (provenance.prompt_hash)

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.time_to_first_token_s
        return (self.new_tokens - 1) / decode_s if self.new_tokens > 1 and decode_s > 0 else 0.0


class Engine:
    def __init__(self, model: LlavaVideoModel, config: AppConfig | None = None):
        check_transformers()
        self.model = model
        self.config = config or AppConfig()
        cache_bytes = self.config.cache_mb * 2**20
        self._clips = RecentlyUsed(self.config.cache_videos, cache_bytes)
        self._features = RecentlyUsed(self.config.cache_videos, cache_bytes)
        if self.config.prefill_chunk < PREFILL_BUCKET or self.config.prefill_chunk % PREFILL_BUCKET:
            raise ValueError(f"prefill_chunk must be a multiple of {PREFILL_BUCKET}, not {self.config.prefill_chunk}")
        self._lock = threading.RLock()  # one forward pass on the GPU at a time
        compiled = bool(self.config.compile)
        self._decoder = CompiledDecoder(model.lm) if compiled else None
        # Compiled steps need fixed-size KV tensors.
        self._kv = ConversationCache(model.lm.config, model.context_length, static=compiled)
        self._kv_visitor = ""  # whose conversation self._kv holds
        if model.device.type == "cuda" and not self.config.cudnn_attention:
            # cuDNN's attention builds an execution plan for every new input shape, and a follow-up
            # question is always a new shape; the flash / memory-efficient kernels build nothing.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.last_stats: GenerationStats | None = None
        # For parity checks: when on, each request keeps the raw next-token logits of every step,
        # {question index (0 unless batched): [logits the 1st token was chosen from, the 2nd's, ...]}.
        self.record_logits = False
        self.recorded_logits: dict[int, list[torch.Tensor]] = {}

    @classmethod
    def from_config(cls, config: AppConfig, progress: Callable[[str], None] | None = None) -> "Engine":
        check_transformers()  # before minutes of loading
        resolved = config.resolved()
        if config.fell_back_to_cpu and progress:
            progress(f"No CUDA GPU found: using the small {resolved.model} on CPU ({resolved.quant}); "
                     "pass --model/--device to choose another")
        model = LlavaVideoModel.load(resolved.model, quant=resolved.quant, device=resolved.device,
                                     pool_mode=resolved.pool_mode, attn_implementation=resolved.attn_implementation,
                                     progress=progress)
        engine = cls(model, resolved)
        if engine._decoder is not None and progress:
            where = f"; cached in {compile_cache_dir()}" if engine._decoder.cuda else ""
            progress(f"Compiling the decode step (about a minute the first time{where}) ...")
        started = time.perf_counter()
        engine.warm_up()
        if engine._decoder is not None and progress:
            progress(f"Decode step compiled in {time.perf_counter() - started:.0f} s")
        return engine

    def warm_up(self, frames: int | None = None) -> None:
        """Run the shapes a first question and its follow-ups use (a padded prefill, decode steps),
        so that one-off per-shape work happens now: with compiled decoding, the compile of the
        step for the static cache size a request with `frames` frames uses."""
        frames = frames or self.config.frames
        ids = self.model.tokenize(build_prompt("Warm-up.", with_video=False))
        needed = self.model.layout.visual_tokens(frames) + 256 + self.config.max_new_tokens  # 256: the prompt text
        with self._lock, torch.inference_mode():
            self._kv.forget()  # the static cache is about to be overwritten
            # Created under inference_mode as in _generate: the compiled graph's guards tell the two apart.
            cache = self._kv.new(needed)
            logits, cache = self._prefill(ids, None, cache)
        token = torch.tensor([[int(logits.argmax())]], device=self.model.device)
        for _ in range(3 if self._decoder is not None else 1):  # compile, then record and replay the CUDA graph
            with self._lock:
                self._decode_step(token, cache)

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
                  end: float | None = None, sample_fps: float | None = None, max_frames: int | None = None,
                  at_model_size: bool | None = None) -> VideoClip:
        """Frames + timestamps of a video file, decoded once per file and sampling (cached).
        `at_model_size` None: config.decode_at_model_size (the decoder scales to the tower's size)."""
        return self._load_clip(path, frames=frames, start=start, end=end, sample_fps=sample_fps,
                               max_frames=max_frames, at_model_size=at_model_size)[0]

    def load_clip_cached(self, path: str | os.PathLike, *, frames: int | None = None, start: float | None = None,
                         end: float | None = None, at_model_size: bool | None = None) -> tuple[VideoClip, bool]:
        """load_clip, and whether the frames came from the cache (a comparison shows what it reused)."""
        return self._load_clip(path, frames=frames, start=start, end=end, at_model_size=at_model_size)

    def _load_clip(self, path: str | os.PathLike, *, frames: int | None = None, start: float | None = None,
                   end: float | None = None, sample_fps: float | None = None,
                   max_frames: int | None = None, at_model_size: bool | None = None) -> tuple[VideoClip, bool]:
        path = Path(path)
        frames = frames or self.config.frames
        at_model_size = self.config.decode_at_model_size if at_model_size is None else at_model_size
        size = (self.model.vision.image_size,) * 2 if at_model_size else None
        key = (_visitor.get(), *_file_identity(path), frames, start, end, sample_fps, max_frames, size)
        return self._clips.get_or_make(key, lambda: video_stage.load_video(
            path, num_frames=frames, start=start, end=end, sample_fps=sample_fps, max_frames=max_frames, size=size))

    def visual_features(self, clip: VideoClip, pool_mode: str | None = None) -> tuple[torch.Tensor, bool]:
        """(visual tokens, hidden) for a clip, and whether they came from the cache; `pool_mode` None:
        the checkpoint's (or config.pool_mode's)."""
        pool_mode = self.model.layout_for(pool_mode).pool_mode
        key = _clip_key(clip, pool_mode)

        def encode() -> torch.Tensor:
            with self._lock:
                features = self.model.encode_video(clip.frames, pool_mode)
                if features.is_cuda:
                    torch.cuda.synchronize(features.device)  # so that the time is the tower's, not the prefill's
                return features

        return self._features.get_or_make(key, encode)

    # --- generation -------------------------------------------------------------------------------
    def stream(self, video: str | os.PathLike | VideoClip, question: str, history: Sequence[Turn] = (), *,
               settings: GenerationSettings | None = None, stop: threading.Event | None = None,
               pool_mode: str | None = None) -> Iterator[str]:
        """Answer a question about a video, yielding text chunks as they are decoded. A request that
        would not fit is refused before any decoding (check_request); running out of GPU memory
        becomes a RequestError too, after freeing what the request took (the model stays loaded).
        `pool_mode` None: the checkpoint's (a comparison asks for another)."""
        started = time.perf_counter()
        settings = settings or GenerationSettings.from_config(self.config)
        self.check_request(video, question, history, max_new_tokens=settings.max_new_tokens, pool_mode=pool_mode)
        frames = len(video.frame_indices) if isinstance(video, VideoClip) else self.config.frames
        yield from self._out_of_memory_as_message(
            self._answer(video, question, history, settings, stop, started, pool_mode), settings.max_new_tokens,
            frames)

    def _answer(self, video: str | os.PathLike | VideoClip, question: str, history: Sequence[Turn],
                settings: GenerationSettings, stop: threading.Event | None, started: float,
                pool_mode: str | None = None) -> Iterator[str]:
        clip, clip_was_cached = (video, False) if isinstance(video, VideoClip) else self._load_clip(video)
        decoded = time.perf_counter()
        pool_mode = self.model.layout_for(pool_mode).pool_mode
        visual, features_cached = self.visual_features(clip, pool_mode)
        encoded = time.perf_counter()
        prompt = build_prompt(question, history, duration=clip.duration, timestamps=clip.timestamps,
                              with_time_instruction=self.config.time_instruction)
        ids = self.model.tokenize(prompt)
        stats = GenerationStats(visual_tokens=visual.shape[0], video_cached=features_cached or clip_was_cached,
                                video_s=0.0 if clip_was_cached else decoded - started,
                                vision_s=0.0 if features_cached else encoded - decoded,  # a lookup is not work
                                prompt_sha256=prompt_hash(prompt))
        yield from self._generate(ids, visual, _clip_key(clip, pool_mode), settings, stop, stats, started)

    def ask(self, video: str | os.PathLike | VideoClip, question: str, history: Sequence[Turn] = (), *,
            settings: GenerationSettings | None = None, stop: threading.Event | None = None) -> str:
        return "".join(self.stream(video, question, history, settings=settings, stop=stop))

    def stream_text(self, question: str, history: Sequence[Turn] = (), *, settings: GenerationSettings | None = None,
                    stop: threading.Event | None = None) -> Iterator[str]:
        """A text-only conversation (no video tokens), e.g. QA generation from a description."""
        started = time.perf_counter()
        settings = settings or GenerationSettings.from_config(self.config)
        ids = self.check_request(None, question, history, max_new_tokens=settings.max_new_tokens)
        yield from self._out_of_memory_as_message(
            self._generate(ids, None, None, settings, stop, GenerationStats(), started), settings.max_new_tokens, 0)

    def ask_text(self, question: str, history: Sequence[Turn] = (), *, settings: GenerationSettings | None = None,
                 stop: threading.Event | None = None) -> str:
        return "".join(self.stream_text(question, history, settings=settings, stop=stop))

    def answer_texts(self, questions: Sequence[str], *, settings: GenerationSettings | None = None,
                     stop: threading.Event | None = None) -> Iterator[tuple[int, str]]:
        """Text-only prompts answered together, as one batch: yields (index, answer) as each finishes.

        For many prompts that share a long beginning (the synthesis recipe's 16 QA calls share the
        description): the shared prefix is prefilled once and its KV cache copied to every row, the
        rest is prefilled right-padded (padding masked, positions counted per row), and all rows
        decode together, so one decode step serves every prompt. Greedy answers equal those of
        `ask_text` prompt by prompt (floating-point order aside). Decode steps are eager.
        """
        settings = settings or GenerationSettings.from_config(self.config)
        if questions:
            yield from self._out_of_memory_as_message(self._answer_texts(questions, settings, stop),
                                                      settings.max_new_tokens, 0)

    def _answer_texts(self, questions: Sequence[str], settings: GenerationSettings,
                      stop: threading.Event | None) -> Iterator[tuple[int, str]]:
        from transformers import DynamicCache

        model = self.model
        self.recorded_logits = {}
        rows = [model.tokenize(build_prompt(q, with_video=False)) for q in questions]
        for ids in rows:
            self._check_length(ids, None, settings.max_new_tokens)
        shared = min(_common_prefix(rows), min(len(ids) for ids in rows) - 1)
        generator = seeded_generator(settings.seed)
        device = model.device
        lengths = torch.tensor([len(ids) - shared for ids in rows], device=device)
        pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.eos_token_ids[0]
        suffixes = torch.full((len(rows), int(lengths.max())), pad, device=device)
        for i, ids in enumerate(rows):
            suffixes[i, :len(ids) - shared] = torch.tensor(ids[shared:], device=device)
        real = torch.arange(suffixes.shape[1], device=device)[None] < lengths[:, None]
        mask = torch.cat([torch.ones(len(rows), shared, dtype=torch.long, device=device), real.long()], dim=1)
        with self._lock, torch.inference_mode():
            cache = DynamicCache()
            if shared:
                self._prefill(rows[0][:shared], None, cache)
                cache.batch_repeat_interleave(len(rows))
            positions = (shared + torch.arange(suffixes.shape[1], device=device))[None].expand(len(rows), -1)
            logits = model.lm(input_ids=suffixes, attention_mask=mask, position_ids=positions, use_cache=True,
                              **with_cache(cache)).logits
            check_holds(cache, shared + suffixes.shape[1])
            logits = logits[torch.arange(len(rows), device=device), lengths - 1, :model.vocab_size]
        active = list(range(len(rows)))  # row of the batch -> index of its question
        answers: list[list[int]] = [[] for _ in rows]
        next_position = shared + lengths
        for _ in range(settings.max_new_tokens):
            tokens = [self._choose(row_logits, answers[index], index, settings, generator)
                      for index, row_logits in zip(active, logits)]
            keep = []
            for row, (index, token) in enumerate(zip(active, tokens)):
                ended = token in model.eos_token_ids and not settings.ignore_eos
                if not ended:
                    answers[index].append(token)
                if ended or len(answers[index]) >= settings.max_new_tokens:
                    yield index, model.tokenizer.decode(answers[index], skip_special_tokens=True)
                else:
                    keep.append(row)
            if not keep:
                return
            if stop is not None and stop.is_set():  # stopped: each unfinished answer as it stands
                for row in keep:
                    yield active[row], model.tokenizer.decode(answers[active[row]], skip_special_tokens=True)
                return
            with self._lock, torch.inference_mode():
                if len(keep) < len(active):  # finished rows leave the batch
                    chosen = torch.tensor(keep, device=device)
                    cache.batch_select_indices(chosen)
                    mask, next_position = mask[chosen], next_position[chosen]
                active, tokens = [active[r] for r in keep], [tokens[r] for r in keep]
                mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=device)], dim=1)
                logits = model.lm(input_ids=torch.tensor(tokens, device=device)[:, None], attention_mask=mask,
                                  position_ids=next_position[:, None], use_cache=True, **with_cache(cache)).logits
                logits = logits[:, -1, :model.vocab_size]
                next_position = next_position + 1

    def prompt_logits(self, video: str | os.PathLike | VideoClip | None, question: str,
                      history: Sequence[Turn] = ()) -> torch.Tensor:
        """Next-token logits after the whole prompt (over the tokenizer's vocabulary), computed by the
        same prefill as an answer's first token, into a cache of its own (the conversation's stays as
        it is): for parity checks and for comparing quantisations on one prompt."""
        from transformers import DynamicCache

        self.check_request(video, question, history, max_new_tokens=1)
        if video is None:
            ids, visual = self.model.tokenize(build_prompt(question, history, with_video=False)), None
        else:
            clip = video if isinstance(video, VideoClip) else self._load_clip(video)[0]
            visual = self.visual_features(clip)[0]
            ids = self.model.tokenize(build_prompt(question, history, duration=clip.duration, timestamps=clip.timestamps,
                                                   with_time_instruction=self.config.time_instruction))
        self._check_length(ids, visual, 1)
        with self._lock, torch.inference_mode():
            logits, _ = self._prefill(ids, visual, DynamicCache())
        return logits.float()

    def check_request(self, video: str | os.PathLike | VideoClip | None, question: str, history: Sequence[Turn] = (), *,
                      frames: int | None = None, start: float | None = None, end: float | None = None,
                      max_new_tokens: int | None = None, at_model_size: bool | None = None,
                      pool_mode: str | None = None) -> list[int]:
        """Refuse a request that would not fit, before any frame is decoded: the question
        (request.check_question); the clip, planned from the file's header when `video` is a path
        (frames and trim as load_clip takes them), against max_frames and max_decoded_mb; and the
        token budget, text + frames x tokens per frame + max_new_tokens, against the model's context.
        `at_model_size` and `pool_mode` (None: the config's, the checkpoint's): a comparison's variant.
        Returns the prompt's token ids. RequestError (a ValueError) when it does not fit."""
        # Characters are bounded where a user's text comes in (the API, the CLI, the Ask tab); the
        # synthesis recipe's own prompts only have to fit the context.
        question = check_question(question)
        max_new_tokens = max_new_tokens or self.config.max_new_tokens
        clip: VideoClip | ClipPlan | None = video if isinstance(video, VideoClip) or video is None else \
            video_stage.plan_clip(video, num_frames=frames or self.config.frames, start=start, end=end)
        if isinstance(clip, ClipPlan):  # still to be decoded: at the tower's size, or the video's own
            side = self.model.vision.image_size
            at_model_size = self.config.decode_at_model_size if at_model_size is None else at_model_size
            width, height = (side, side) if at_model_size else (clip.width, clip.height)
            check_clip(clip.num_frames, width, height, self.config)
        layout = self.model.layout_for(pool_mode)
        return prompt_within_budget(self.model.tokenize, question, history, clip, layout=layout,
                                    max_new_tokens=max_new_tokens, context_length=self.model.context_length)

    def _out_of_memory_as_message(self, chunks: Iterator[Any], max_new_tokens: int, frames: int) -> Iterator[Any]:
        """`chunks` as they come; if the GPU runs out of memory meanwhile, free what the request took
        (cached videos, features, the stored conversation, the allocator's free blocks; the model
        stays loaded) and raise a RequestError that says what to ask for instead."""
        out_of_memory = False
        try:
            yield from chunks
        except torch.OutOfMemoryError:
            out_of_memory = True  # freed below, once the error (and the tensors its frames hold) is gone
        if out_of_memory:
            self.clear()
            fewer = f"fewer frames (e.g. {max(1, frames // 2)} instead of {frames}), " if frames else ""
            raise RequestError(f"the GPU ran out of memory for this request: try {fewer}a shorter question or "
                               f"fewer new tokens (max_new_tokens {max_new_tokens})")

    def _check_length(self, ids: list[int], visual: torch.Tensor | None, max_new_tokens: int) -> int:
        """The input's length in positions; refuses one that would not fit the model's context."""
        total = self.model.expanded_length(ids, 0) + (visual.shape[0] if visual is not None else 0)
        limit = self.model.context_length
        if total + max_new_tokens > limit:
            raise ValueError(f"the input is {total} tokens; with {max_new_tokens} new tokens it exceeds the "
                             f"model's {limit}: use fewer frames or fewer new tokens")
        return total

    def _prefill(self, ids: list[int], visual: torch.Tensor | None, cache: Any, reused: int = 0) -> tuple[torch.Tensor, Any]:
        """Feed the input past its first `reused` positions (already in `cache`); the last position's
        logits, cut to the tokenizer's vocabulary (the authors' resized LM head).

        In chunks of config.prefill_chunk, so activation memory is bounded by the chunk; padded up to a
        multiple of PREFILL_BUCKET. Attention is causal, so the padding after the input changes
        nothing before it; its keys and values are cropped from the cache afterwards.
        """
        embeds = self.model.embed(ids, visual)[:, reused:]
        length = embeds.shape[1]
        pad = -length % PREFILL_BUCKET
        if pad:
            embeds = torch.cat([embeds, embeds[:, -1:].expand(-1, pad, -1)], dim=1)
        step = self.config.prefill_chunk
        for chunk_start in range(0, length + pad, step):
            chunk = embeds[:, chunk_start:chunk_start + step]
            out = self.model.lm(inputs_embeds=chunk, use_cache=True, logits_to_keep=pad + 1, **with_cache(cache))
        drop_last(cache, pad)
        check_holds(cache, reused + length)
        return out.logits[0, 0, :self.model.vocab_size], cache  # logits_to_keep: [last real, padding...]

    def _generate(self, ids: list[int], visual: torch.Tensor | None, visual_key: Hashable | None,
                  settings: GenerationSettings | None, stop: threading.Event | None, stats: GenerationStats,
                  started: float) -> Iterator[str]:
        settings = settings or GenerationSettings.from_config(self.config)
        model = self.model
        self.recorded_logits = {}
        stats.prompt_ids = list(ids)
        stats.prompt_tokens = total = self._check_length(ids, visual, settings.max_new_tokens)
        cuda = model.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(model.device)
        generator = seeded_generator(settings.seed)
        stats.seed = generator.initial_seed()
        detok = IncrementalDecoder(model.tokenizer)
        fed, cache = list(ids), None
        try:
            # Prefill: only what the stored conversation does not already hold.
            with self._lock, torch.inference_mode():
                prefill_started = time.perf_counter()
                if self._kv_visitor != _visitor.get():  # another visitor's conversation: nothing of it is reused
                    self._kv.forget()
                cache, stats.reused_tokens = self._kv.checkout(ids, visual, visual_key, total + settings.max_new_tokens)
                logits, cache = self._prefill(ids, visual, cache, stats.reused_tokens)
                token = self._choose(logits, stats.token_ids, 0, settings, generator)
            stats.prefill_s = time.perf_counter() - prefill_started
            stats.time_to_first_token_s = time.perf_counter() - started
            # Decode loop: one token at a time, streamed; Stop is checked after each.
            for _ in range(settings.max_new_tokens):
                if token in model.eos_token_ids and not settings.ignore_eos:
                    break
                stats.new_tokens += 1
                stats.token_ids.append(token)
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
                    token = self._choose(logits[:model.vocab_size], stats.token_ids, 0, settings, generator)
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
                self._kv.checkin(visual_key, fed, cache)
                self._kv_visitor = _visitor.get()
            self.last_stats = stats

    def _choose(self, logits: torch.Tensor, generated: Sequence[int], index: int, settings: GenerationSettings,
                generator: torch.Generator) -> int:
        """The next token from raw logits: the checkpoint's logits processors over this answer's tokens
        so far (generation_config.json, as the authors' generate), then greedy or sampling."""
        if self.record_logits:
            self.recorded_logits.setdefault(index, []).append(logits.detach().float().cpu().clone())
        return sample(self.model.generation.process(logits, generated), settings.temperature, settings.top_p,
                      generator)

    def _decode_step(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Next-token logits for one fed-back token."""
        if self._decoder is not None:
            return self._decoder(input_ids, cache)
        with torch.inference_mode():
            return self.model.lm(input_ids=input_ids, use_cache=True, **with_cache(cache)).logits[0, -1]

    def clear(self, visitor: str | None = None) -> None:
        """Forget cached videos, features and conversation state (a "new video" reset): `visitor`'s
        only, or everyone's (None)."""
        with self._lock:
            if visitor is None:
                self._clips.clear()
                self._features.clear()
            else:
                self._clips.drop_where(lambda key: key[0] == visitor)
                self._features.drop_where(lambda key: key[0] == visitor)
            if visitor is None or self._kv_visitor == visitor:
                self._kv.forget()  # the static cache stays: the compiled decoder is bound to its addresses
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()

    def close(self) -> None:
        """Let go of everything this engine holds on the GPU but the model (before loading another)."""
        with self._lock:
            self._clips.clear()
            self._features.clear()
            self._kv.release()
            self._decoder = None
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()


def seeded_generator(seed: int | None) -> torch.Generator:
    """The sampler's random source, seeded with `seed` or, if None, a fresh random one (initial_seed()
    tells which): below 2**32, short enough to read off and type into the seed box."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(secrets.randbelow(2**32) if seed is None else seed)
    return generator


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    for n in range(len(first)):
        if any(len(row) <= n or row[n] != first[n] for row in rows[1:]):
            return n
    return len(first)


def _file_identity(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path),)  # let the video stage report the missing file
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _clip_key(clip: VideoClip, pool_mode: str) -> Hashable:
    """Whose, which file, frames and size, and the pool mode: features and KV prefixes differ with each."""
    return (_visitor.get(), *_file_identity(Path(clip.path)), tuple(clip.frame_indices), clip.frames.shape, pool_mode)
