"""The Hugging Face Space in spaces/: its YAML header, its requirements, and its app.py importing and
building the UI over the tiny checkpoint, without the `spaces` package and with a stand-in for it
(ZeroGPU)."""

import importlib.util
import pickle
import re
import sys
import types
from pathlib import Path

import gradio as gr
import yaml

from llava_video_app.config import DEFAULT_MODEL, GenerationSettings
from llava_video_app.web.zerogpu import gpu_duration, synth_call_duration

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "spaces"
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large",
            "a10g-largex2", "a10g-largex4", "a100-large"}


def _header() -> dict:
    text = (SPACE / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "the Space README starts with a YAML header between --- lines"
    return yaml.safe_load(match.group(1))


def test_space_header():
    header = _header()
    assert header["sdk"] == "gradio"
    assert header["sdk_version"] == gr.__version__, "pinned to the gradio the tests run with"
    assert re.fullmatch(r"3\.\d+(\.\d+)?", str(header["python_version"]))
    assert (SPACE / header["app_file"]).is_file()
    assert header["suggested_hardware"] in HARDWARE
    assert DEFAULT_MODEL in header["models"] and DEFAULT_MODEL in header["preload_from_hub"]


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.split(r"[=<>!~]", line)[0].lower(): line for line in lines if line}


def test_space_requirements_match_the_project():
    project, space = _pins(ROOT / "requirements.txt"), _pins(SPACE / "requirements.txt")
    assert "gradio" not in space, "the Space installs gradio from sdk_version"
    assert {name: spec for name, spec in project.items() if not name.startswith("gradio")} == space


def _load_space_app(monkeypatch, tiny_checkpoint, **env):
    for name, value in {"LLAVA_VIDEO_MODEL": str(tiny_checkpoint), "LLAVA_VIDEO_QUANT": "fp32",
                        "LLAVA_VIDEO_DEVICE": "cpu", "LLAVA_VIDEO_FRAMES": "8",
                        "LLAVA_VIDEO_MAX_NEW_TOKENS": "4", **env}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("space_app", SPACE / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ask(demo: gr.Blocks, video) -> list[str]:
    fn = next(f for f in demo.fns.values() if f.api_name == "ask").fn
    return list(fn(str(video), "What happens?"))


def _direct_answer(module, video) -> str:
    """The Space's engine asked the same question directly (the tiny model's answer is never empty)."""
    answer = module.holder.engine.ask(str(video), "What happens?", settings=GenerationSettings(max_new_tokens=4))
    assert answer
    return answer


def test_space_app_builds_the_ui_without_the_spaces_package(monkeypatch, tiny_checkpoint, sample_video):
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` fails, as off Hugging Face
    module = _load_space_app(monkeypatch, tiny_checkpoint)
    assert module.spaces is None and module.gpu_wrapper() is None
    assert isinstance(module.demo, gr.Blocks) and module.holder.ready
    api = module.demo.get_api_info()["named_endpoints"]
    assert {"/caption", "/ask", "/ask_type"} <= set(api)
    assert _ask(module.demo, sample_video)[-1] == _direct_answer(module, sample_video)


def _fake_spaces() -> types.SimpleNamespace:
    """A stand-in for the `spaces` package: GPU(duration=...) records each call's duration in `calls`
    and each function it wraps in `wrapped`; like the real one it hands the arguments to the task
    pickled (it runs in a forked worker). `in_slot` is true while a task runs (the GPU is there)."""
    fake = types.SimpleNamespace(calls=[], wrapped=[], in_slot=False)

    def GPU(fn=None, duration=60):  # noqa: N802
        def wrap(task):
            fake.wrapped.append(task.__name__)

            def run(*args, **kwargs):
                fake.calls.append(duration(*args, **kwargs) if callable(duration) else duration)
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
                fake.in_slot = True
                try:
                    yield from task(*args, **kwargs)
                finally:
                    fake.in_slot = False
            return run
        return wrap(fn) if fn is not None else wrap

    fake.GPU = GPU
    return fake


def test_space_app_on_zero_gpu_wraps_the_model_in_spaces_gpu(monkeypatch, tiny_checkpoint, sample_video):
    spaces = _fake_spaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    module = _load_space_app(monkeypatch, tiny_checkpoint, SPACES_ZERO_GPU="true")
    assert module.on_zero_gpu()
    assert _ask(module.demo, sample_video)[-1] == _direct_answer(module, sample_video)
    assert spaces.calls == [gpu_duration("v", "q", (), 8, None, None, GenerationSettings(max_new_tokens=4), None)]
    zero = module.space_config({"SPACES_ZERO_GPU": "true"})
    assert (zero.model, zero.device, zero.quant, zero.compile) == (DEFAULT_MODEL, "cuda", "bf16", False)
    assert zero.resolved().compile is False, "a fresh worker per request: compiling would be paid every time"
    assert module.space_config({"SPACES_ZERO_GPU": "true", "LLAVA_VIDEO_COMPILE": "1"}).compile is True
    assert module.space_config({}).device is None, "off ZeroGPU the hardware decides"


def test_on_zero_gpu_every_synthesis_call_gets_a_gpu_slot_of_its_own(monkeypatch, tiny_checkpoint, sample_video):
    """Synthesis is tens of model calls, longer than one ZeroGPU slot: each call runs in a slot sized
    by its frames and token limit, no model layer runs outside one, and the functions are wrapped
    once at start-up (spaces.GPU forks a worker per wrapped function)."""
    import json

    import torch

    spaces = _fake_spaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    module = _load_space_app(monkeypatch, tiny_checkpoint, SPACES_ZERO_GPU="true")
    wrapped_at_start = list(spaces.wrapped)
    assert len(wrapped_at_start) == 3  # the answer, the synthesis call and the comparison (compare_panel.py)
    panel = next(f for f in module.demo.fns.values() if f.api_name == "synth").fn.__self__
    panel.api_description_tokens, panel.api_qa_tokens = 4, 16
    outside: list[str] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda layer, args: None if spaces.in_slot else outside.append(type(layer).__name__))
    try:
        for _ in range(2):  # a second run reuses the same wrapped function
            spaces.calls.clear()
            *progress, final = list(panel.api_synth(str(sample_video)))
            result = json.loads(final)
            steps = int(progress[-1].split("/")[1].split(":")[0])  # "step 19/19: qa"
            assert len(spaces.calls) == steps == 1 + 1 + 1 + 16  # 6 s: level-1, level-2, caption, 16 QA
            assert spaces.calls[0] == synth_call_duration(types.SimpleNamespace(frame_indices=range(6)), "", (),
                                                          GenerationSettings(max_new_tokens=4), None)
            assert spaces.calls[-1] == synth_call_duration(None, "", (), GenerationSettings(max_new_tokens=16), None)
            assert result["caption"] is not None and set(result["records"]) == {"cap", "oe", "mc"}
    finally:
        hook.remove()
    assert not outside, f"model layers ran outside a GPU slot: {sorted(set(outside))}"
    assert spaces.wrapped == wrapped_at_start, "nothing is wrapped per run"
