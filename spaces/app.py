"""The Hugging Face Space's entry point (`app_file: app.py`).

The Space repository holds this file, README.md (the Space's YAML header) and requirements.txt from
this folder, plus copies of `llava_video_app/` and `assets/` (see "Deploy as a Space" in the main
README). On ZeroGPU hardware `spaces.GPU` wraps the functions that run the model, with a duration
computed per request (`web.zerogpu.gpu_duration`: 97 s for 64 frames and 1024 new tokens; each call
of the synthesis recipe gets its own, `web.zerogpu.synth_call_duration`); where the `spaces` package is absent
(locally, in tests, on CPU) the same code runs without it.

Settings come from the Space's variables (LLAVA_VIDEO_MODEL, LLAVA_VIDEO_QUANT, LLAVA_VIDEO_FRAMES,
...). Defaults: LLaVA-Video-7B-Qwen2 in 4-bit on a GPU Space; in bf16 on ZeroGPU (70 GB slice). A
Space is a shared app: each browser session's saved data is its own (AppConfig.per_session).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

HERE = Path(__file__).resolve().parent
for _root in (HERE, HERE.parent):  # the Space repository's root, or this repository's (spaces/ is in it)
    if (_root / "llava_video_app").is_dir():
        sys.path.insert(0, str(_root))
        break

# Torch-free, so it may come before spaces; it must come before gradio and huggingface_hub (which
# spaces imports): no analytics or telemetry unless LLAVA_VIDEO_ANALYTICS=1.
from llava_video_app.config import DEFAULT_MODEL, AppConfig, keep_start_up_offline  # noqa: E402

keep_start_up_offline()

try:
    import spaces  # noqa: E402  before anything touches CUDA: on ZeroGPU it patches torch
except ImportError:
    spaces = None
from llava_video_app.web.app import build_ui, launch  # noqa: E402
from llava_video_app.web.ask_tab import VideoChat  # noqa: E402
from llava_video_app.web.serving import EngineHolder  # noqa: E402
from llava_video_app.web.synth_tab import synth_tab  # noqa: E402


def on_zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    return spaces is not None and bool(environ.get("SPACES_ZERO_GPU"))


def space_config(environ: Mapping[str, str] = os.environ) -> AppConfig:
    """The Space's variables; on ZeroGPU, where this process sees no GPU until a spaces.GPU function
    runs, the 7B model on "cuda" in bf16, decoded eagerly, unless the variables say otherwise.

    Eager on ZeroGPU: every request runs in a freshly forked worker that keeps nothing, so a compiled
    step would be compiled (about a minute) and its CUDA graphs recorded again on every request,
    while answers are a few hundred tokens (eager: about 10 s at the measured 30 tokens/s in bf16).
    """
    config = AppConfig.from_env(environ)
    if on_zero_gpu(environ):
        config = config.with_overrides(model=config.model or DEFAULT_MODEL, device=config.device or "cuda",
                                       quant=config.quant or "bf16",
                                       compile=False if config.compile is None else config.compile)
    return config


def gpu_wrapper():
    """gpu(task, duration): spaces.GPU with a per-call duration (the answer's, or each synthesis
    call's), or None (run as is) without the spaces package."""
    if spaces is None:
        return None
    return lambda task, duration: spaces.GPU(duration=duration)(task)


config = space_config()
# Loaded at start-up, before any ZeroGPU worker is forked from this process (they inherit it).
holder = EngineHolder(config).load()
demo = build_ui(VideoChat(holder, gpu=gpu_wrapper()), extra_tabs=[synth_tab])

if __name__ == "__main__":
    launch(demo, config, server_name=None, server_port=None)  # the Space sets GRADIO_SERVER_NAME/PORT
