""""What the model sees", the Ask tab's panel for `llava-video inspect`: for the video and settings on
screen, the exact prompt of a new conversation (with its time instruction), the frames' times, the
visual tokens and their layout and the pool mode. It calls request.inspect_request, as the CLI does,
with the trim and checks that Ask applies (ChatState.trim, check_request), and runs no model.
"""

from __future__ import annotations

from pathlib import Path

from ..config import AppConfig
from ..prompts import CAPTION_QUESTION
from ..request import check_request, inspect_request
from ..video import VideoError
from .conversation import ChatState

NO_VIDEO = "Upload a video to see the prompt, frames and visual tokens the model gets."

# How each newline_position lays the visual tokens out (model.VisualLayout).
NEWLINES = {
    "grid": "each frame's pooled grid, a newline token closing each row",
    "frame": "each frame's pooled grid, then one newline token",
    "one_token": "the frames' pooled grids, then one newline token after the last",
    "no_token": "the frames' pooled grids, no newline tokens",
}


def what_the_model_sees(config: AppConfig, video: str | None, question: str | None, frames: float | None,
                        start: float | None, end: float | None, state: ChatState | None,
                        temperature: float | None = None, top_p: float | None = None,
                        seed: float | None = None) -> tuple[str, str]:
    """(summary Markdown, the prompt text) for the video and settings on screen: the next question's
    prompt, after the conversation's turns when Ask would continue it (same clip and sampling, as
    ChatState.for_clip decides), else a new conversation's. With no video or a setting the model
    would refuse, the summary says why and the prompt is empty."""
    if not video:
        return NO_VIDEO, ""
    state = state or ChatState()
    start, end = state.trim(start, end)  # as Ask sends them
    question = (question or "").strip() or CAPTION_QUESTION
    try:
        checked = check_request(config, frames=frames, start=start, end=end, temperature=temperature, top_p=top_p,
                                seed=seed)
        sampling = (checked.generation.temperature, checked.generation.top_p, checked.generation.seed)
        follow_up = bool(state.turns) and state.for_clip(video, checked.frames, checked.start, checked.end,
                                                         sampling) is state
        resolved = config.resolved()
        plan = inspect_request(video, question, model=resolved.model, frames=checked.frames, start=checked.start,
                               end=checked.end, pool_mode=config.pool_mode, quant=resolved.quant,
                               device=resolved.device, history=state.turns if follow_up else (),
                               time_instruction=config.time_instruction)
    except (VideoError, ValueError, FileNotFoundError, OSError) as err:
        message = str(err).replace(str(video), Path(video).name)
        return f"**Nothing to show:** {message}", ""
    n = len(plan["frame_indices"])
    times = ", ".join(f"{t:.2f} s" for t in plan["timestamps"])
    layout = NEWLINES.get(plan["newline_position"], plan["newline_position"])
    summary = (f"**Visual tokens:** {plan['visual_tokens']} = {n} frames × {plan['tokens_per_frame']} tokens "
               f"· **pool mode:** {plan['pool_mode']} · **layout:** {layout}\n\n"
               f"**Frames at:** {times} (of {plan['duration']:.2f} s at {plan['fps']:.3g} fps)\n\n"
               + (f"The prompt below is the next question's in this conversation (after its {len(state.turns)} "
                  "turn(s)). " if follow_up else "The prompt below starts a new conversation. ")
               + "The `<image>` placeholder stands for the visual tokens"
               + (", and the time instruction after it is what tells the model the frames' times."
                  if config.time_instruction else "; this app sends no time instruction (time_instruction off)."))
    return summary, plan["prompt"]
