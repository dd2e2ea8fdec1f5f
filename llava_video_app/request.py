"""A request checked and planned before anything runs, the same way for the CLI, the API and the UI.

- `check_request`: one request's settings (frames, trim, new tokens, temperature, top_p) against the
  app's bounds (AppConfig.max_frames, max_new_tokens_limit); `check_question`: the question's text.
  Every interface calls these, so they refuse the same things with the same words.
- `check_clip`: a planned clip's frames against max_frames, and its decoded size against
  max_decoded_mb, from the video's header alone.
- `TokenBudget`: the tokens a request needs (prompt text, history, frames x tokens per frame, new
  tokens) against the model's context, from counts alone; when they do not fit, the message names
  the part to shrink and by how much. `prompt_within_budget` counts them for a planned clip (or
  none) with the model's tokenizer and layout, before any frame is decoded.
- `inspect_request`: which frames, what prompt, how many visual tokens, and the language model's
  effective settings, from the header and the checkpoint's config (`llava-video inspect`).

Torch-free: the engine and the web app call the checks; `inspect_request` imports the model code
when it is called.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from .config import AppConfig, GenerationSettings, as_number, whole_number
from .prompts import IMAGE_PLACEHOLDER, Turn, build_prompt, format_timestamps
from .video import plan_clip


class RequestError(ValueError):
    """A request the app refuses: one sentence that says what to change."""


@dataclass(frozen=True)
class RequestSettings:
    """One request's checked settings: whole numbers where they must be, the trim in seconds (None =
    from the beginning / to the end), the sampling."""

    frames: int
    start: float | None
    end: float | None
    generation: GenerationSettings


def check_request(config: AppConfig, *, frames: Any = None, start: Any = None, end: Any = None,
                  max_new_tokens: Any = None, temperature: Any = None, top_p: Any = None,
                  seed: Any = None) -> RequestSettings:
    """The settings of one request (None: the app's own), checked: frames a whole number from 1 to
    max_frames, start >= 0, end > 0 and after start, max_new_tokens a whole number from 1 to
    max_new_tokens_limit, temperature from 0 to 2, top_p in (0, 1], seed a whole number from 0 to 2**53 - 1
    (None: the app's, else random per answer). RequestError (a ValueError) with
    the setting's name, its range and the value given. Whether the trim lies inside the video is
    the video's to say (plan_clip), once it is opened."""
    try:
        count = whole_number("frames", config.frames if frames is None else frames, 1, config.max_frames,
                             " (the app's max_frames)")
        tokens = whole_number("max_new_tokens", config.max_new_tokens if max_new_tokens is None else max_new_tokens,
                              1, config.max_new_tokens_limit, " (the app's max_new_tokens_limit)")
        generation = GenerationSettings(tokens, config.temperature if temperature is None else temperature,
                                        config.top_p if top_p is None else top_p,
                                        seed=config.seed if seed is None else seed)
        start, end = _check_trim(start, end)
    except RequestError:
        raise
    except ValueError as err:
        raise RequestError(str(err)) from None
    return RequestSettings(count, start, end, generation)


def _check_trim(start: Any, end: Any) -> tuple[float | None, float | None]:
    begin = None if start is None else as_number("start", start)
    stop = None if end is None else as_number("end", end)
    if begin is not None and not (math.isfinite(begin) and begin >= 0):
        raise RequestError(f"start must be a number of seconds, 0 or more, not {begin:g}")
    if stop is not None and not (math.isfinite(stop) and stop > 0):
        raise RequestError(f"end must be a number of seconds above 0, not {stop:g}")
    if begin is not None and stop is not None and stop <= begin:
        raise RequestError(f"end ({stop:g} s) must be after start ({begin:g} s)")
    return begin, stop


def check_question(question: str | None, max_chars: int | None = None) -> str:
    """The question, stripped, if it can be asked, else RequestError: empty or blank, longer than
    `max_chars` (AppConfig.max_question_chars; whether it fits the model's context is the
    TokenBudget's to say), or holding the video's placeholder (the prompt has room for one video,
    put there by the app)."""
    if not question or not question.strip():
        raise RequestError("the question is empty: type a question about the video")
    if max_chars is not None and len(question) > max_chars:
        raise RequestError(f"the question is too long: {len(question):,} characters, {len(question) - max_chars:,} "
                           f"more than the app's max_question_chars ({max_chars:,})")
    if IMAGE_PLACEHOLDER in question:
        raise RequestError(f"the question must not contain {IMAGE_PLACEHOLDER} (the app places the video itself)")
    bad = next((i for i, c in enumerate(question) if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:  # a lone surrogate (a broken JSON escape, or bytes that are not UTF-8 on the command line)
        raise RequestError(f"the question is not valid text: character {bad + 1} is not a Unicode character (invalid "
                           "UTF-8 or a lone surrogate); retype it")
    return question.strip()


def check_clip(frames: int, width: int, height: int, config: AppConfig) -> None:
    """A clip about to be decoded: at most max_frames frames, and at most max_decoded_mb MB once
    decoded at width x height (RGB), from the header's numbers, before any decoding."""
    if frames > config.max_frames:
        raise RequestError(f"the clip has {frames} frames, more than the app's max_frames ({config.max_frames})")
    megabytes = frames * width * height * 3 / 2**20
    if megabytes > config.max_decoded_mb:
        most = max(1, int(config.max_decoded_mb * 2**20 // (width * height * 3)))
        raise RequestError(f"{frames} frames of {width}x{height} would take {megabytes:,.0f} MB decoded, more than "
                           f"the app's max_decoded_mb ({config.max_decoded_mb:,}): use at most {most} frames")


class Layout(Protocol):  # model.VisualLayout: how many tokens frames become
    tokens_per_frame: int

    def visual_tokens(self, num_frames: int) -> int: ...


class ClipLike(Protocol):  # video.ClipPlan or VideoClip: the frames' times, and the video's length
    timestamps: list[float]
    duration: float


TIMESTAMP_SAMPLE = 32  # about this many frames' timestamps are tokenized to estimate the text each frame adds


@dataclass(frozen=True)
class TokenBudget:
    """The tokens one request needs, by part, against the model's context (its positions)."""

    context_length: int
    text_tokens: int  # the prompt's text: system, time instruction, history and question
    question_tokens: int
    question_chars: int
    history_tokens: int
    frames: int
    tokens_per_frame: int
    visual_tokens: int
    timestamp_tokens: int  # of text_tokens: the frames' times in the time instruction (about 6 a frame)
    max_new_tokens: int
    estimated: bool = False  # timestamp_tokens estimated from a sample (prompt_within_budget)

    @classmethod
    def of(cls, tokenize: Callable[[str], Sequence[int]], text_tokens: int, question: str, history: Sequence[Turn],
           *, frames: int, layout: Layout | None, timestamp_tokens: int, max_new_tokens: int,
           context_length: int, estimated: bool = False) -> "TokenBudget":
        """The budget of a prompt of `text_tokens` text tokens, its parts counted with `tokenize`."""
        history_tokens = sum(len(tokenize(turn.question)) + len(tokenize(turn.answer)) for turn in history)
        return cls(context_length=context_length, text_tokens=text_tokens, question_tokens=len(tokenize(question)),
                   question_chars=len(question), history_tokens=history_tokens, frames=frames,
                   tokens_per_frame=layout.tokens_per_frame if layout is not None else 0,
                   visual_tokens=layout.visual_tokens(frames) if layout is not None and frames else 0,
                   timestamp_tokens=timestamp_tokens, max_new_tokens=max_new_tokens, estimated=estimated)

    @property
    def needed(self) -> int:
        return self.text_tokens + self.visual_tokens + self.max_new_tokens

    def check(self) -> int:
        """The input's length in tokens; RequestError naming the biggest part when the request does
        not fit the context, with how much to cut."""
        over = self.needed - self.context_length
        if over <= 0:
            return self.text_tokens + self.visual_tokens
        video = (f"the video ({self.frames} frames, {self.visual_tokens + self.timestamp_tokens:,} tokens)"
                 if self.frames else "no video")
        needs = f"this request needs {self.needed:,} tokens, {over:,} more than the model's {self.context_length:,}"
        parts = {"question": self.question_tokens, "history": self.history_tokens,
                 "video": self.visual_tokens + self.timestamp_tokens, "answer": self.max_new_tokens}
        culprit = max(parts, key=parts.get)
        if culprit == "question":
            chars = math.ceil(over * self.question_chars / max(1, self.question_tokens))
            raise RequestError(f"the question is too long: {self.question_tokens:,} tokens ({self.question_chars:,} "
                               f"characters); with {video} and up to {self.max_new_tokens:,} new tokens {needs}: "
                               f"shorten the question by at least {over:,} tokens (about {chars:,} characters)")
        if culprit == "history":
            raise RequestError(f"the conversation is too long: its earlier turns are {self.history_tokens:,} tokens; "
                               f"{needs}: start a new conversation (Clear)")
        if culprit == "video":
            rest = self.text_tokens - self.timestamp_tokens
            per_frame = self.tokens_per_frame + self.timestamp_tokens / self.frames
            fits = int((self.context_length - rest - self.max_new_tokens - 1) // per_frame) if per_frame else 0
            about = "about " if self.estimated else ""
            advice = (f"use at most {about}{fits:,} frames" if fits >= 1
                      else "ask for fewer new tokens or a shorter question")
            raise RequestError(f"too many frames: {self.frames} frames make {self.visual_tokens:,} visual tokens and "
                               f"{self.timestamp_tokens:,} of timestamps; with the rest of the prompt ({rest:,} "
                               f"tokens) and up to {self.max_new_tokens:,} new tokens {needs}: {advice}")
        most = self.context_length - self.text_tokens - self.visual_tokens
        advice = f"ask for at most {most:,} new tokens" if most >= 1 else "use fewer frames or a shorter question"
        raise RequestError(f"too many new tokens: up to {self.max_new_tokens:,}, with the input's "
                           f"{self.text_tokens + self.visual_tokens:,} tokens ({video}); {needs}: {advice}")


def prompt_within_budget(tokenize: Callable[[str], Sequence[int]], question: str, history: Sequence[Turn],
                         clip: ClipLike | None, *, layout: Layout, max_new_tokens: int,
                         context_length: int) -> list[int]:
    """The prompt's token ids (video placeholder included) if the request fits the model's context,
    else RequestError (TokenBudget.check). Frames that overflow the context on their own are
    refused before the prompt is built: each frame's timestamp is text too (100,000 frames make
    600,000 tokens of it), estimated from TIMESTAMP_SAMPLE frames across the clip."""
    def budget(text_tokens: int, frames: int, timestamp_tokens: int, estimated: bool = False) -> TokenBudget:
        return TokenBudget.of(tokenize, text_tokens, question, history, frames=frames, layout=layout,
                              timestamp_tokens=timestamp_tokens, max_new_tokens=max_new_tokens,
                              context_length=context_length, estimated=estimated)

    if clip is None:
        ids = list(tokenize(build_prompt(question, history, with_video=False)))
        budget(len(ids), 0, 0).check()
        return ids
    frames = len(clip.timestamps)
    sample = clip.timestamps[::max(1, frames // TIMESTAMP_SAMPLE)]  # across the clip: later times are longer
    timestamp_tokens = round(len(tokenize(format_timestamps(sample))) * frames / max(1, len(sample)))
    if layout.visual_tokens(frames) + timestamp_tokens + max_new_tokens > context_length:
        # the prompt as it would be, less its list of timestamps
        rest = _text_tokens(tokenize(build_prompt(question, history, duration=clip.duration, timestamps=[])))
        budget(rest + timestamp_tokens, frames, timestamp_tokens, estimated=True).check()  # refuses: over already
    text = format_timestamps(clip.timestamps)
    ids = list(tokenize(build_prompt(question, history, duration=clip.duration, timestamps=clip.timestamps)))
    budget(_text_tokens(ids), frames, len(tokenize(text))).check()
    return ids


def _text_tokens(ids: Sequence[int]) -> int:
    return sum(1 for t in ids if t >= 0)  # the video placeholder's id is negative


def inspect_request(video: str | os.PathLike, question: str, *, model: str, frames: int = 64,
                    start: float | None = None, end: float | None = None, pool_mode: str | None = None,
                    quant: str = "4bit", device: str = "cuda", history: Sequence[Turn] = (),
                    time_instruction: bool = True) -> dict[str, Any]:
    """What the model would see for this request: frame indices and timestamps, the full prompt
    text (after `history`'s turns; with the time instruction unless the config turns it off), the
    number of visual tokens, and the language model's effective settings (None when only the
    multimodal keys are known offline)."""
    import torch

    from .checkpoint import context_length, read_config, vision_config_of
    from .model import VisualLayout, dtype_name, dtypes_for, language_model_settings, qwen2_config

    config = read_config(model)
    layout = VisualLayout.from_config(config, vision_config_of(config), pool_mode)
    lm_settings = None
    if "hidden_size" in config:  # a full config.json, not only the known multimodal keys
        lm_settings = language_model_settings(qwen2_config(config, "sdpa"), quant=quant, context_length=context_length(config),
                                              dtype=dtype_name(dtypes_for(quant, torch.device(device))[0]))
    clip = plan_clip(video, num_frames=frames, start=start, end=end)
    return {
        "video": str(video), "model": model, "frame_indices": clip.frame_indices, "timestamps": clip.timestamps,
        "duration": clip.duration, "fps": clip.fps, "timing": clip.timing,
        "prompt": build_prompt(question, history, duration=clip.duration, timestamps=clip.timestamps,
                               with_time_instruction=time_instruction),
        "visual_tokens": layout.visual_tokens(clip.num_frames), "tokens_per_frame": layout.tokens_per_frame,
        "newline_position": layout.newline_position, "pool_mode": layout.pool_mode, "language_model": lm_settings,
    }
