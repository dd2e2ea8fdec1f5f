"""The GPU suite's preflight: in about half a minute, before a 15 GB checkpoint is written, whether this
machine can run the suite at all.

    python bench/gpu_preflight.py [--device cpu]

1. imports and versions: everything the suite needs, transformers inside the supported range, the
   versions in use (the carried wheels or the image's own), the GPU;
2. one int4 matmul (torchao, the project's int4 config: tinygemm on CUDA) and one NF4 matmul
   (bitsandbytes) at the 7B's shapes, one row (a decode step) and 64 rows (a prefill), each against
   the same product in bf16;
3. one short answer from the tiny checkpoint through the app's engine (transformers' cache, PyAV).

The first failure ends it with one line naming the step and the cause (exit 1).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NEEDED = ("torch", "transformers", "bitsandbytes", "torchao", "av", "accelerate", "tokenizers", "huggingface_hub",
          "safetensors", "numpy", "json_repair")
# A quantised product further than this from bf16's (relative Frobenius error) is a broken kernel, not
# quantisation noise: 4-bit groups of 64-128 on Gaussian weights give about 0.1.
MAX_RELATIVE_ERROR = 0.25


class PreflightError(RuntimeError):
    """One step failed; the message is the line to show."""


def versions() -> dict[str, Any]:
    """Every package the suite needs, imported, with its version and where it comes from."""
    import platform

    found: dict[str, Any] = {"python": platform.python_version()}
    for name in NEEDED:
        try:
            module = importlib.import_module(name)
        except Exception as err:  # a broken wheel raises more than ImportError (OSError for a missing .so)
            raise PreflightError(f"cannot import {name}: {type(err).__name__}: {err} "
                                 "(carry it: bash bench/gpu_wheels.sh, then carry .whl)") from err
        found[name] = f"{getattr(module, '__version__', '?')} ({Path(module.__file__ or '?').parent})"
    import torch

    from llava_video_app.transformers_support import UnsupportedTransformersError, cache_argument, check_transformers

    try:
        check_transformers()
    except UnsupportedTransformersError as err:
        raise PreflightError(str(err)) from err
    found["kv_cache_argument"] = cache_argument()  # cache (5.24) or past_key_values (5.17-5.23)
    found["cuda"] = torch.version.cuda
    found["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return found


def _relative_error(got, want) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def _check_product(route: str, quantised: Callable, weight, device: str) -> dict[str, Any]:
    import torch

    errors = {}
    for rows in (1, 64):  # one row: the decode kernel (gemv); 64: the prefill path
        x = torch.randn(rows, weight.shape[1], device=device, dtype=torch.bfloat16)
        want = x @ weight.t()
        got = quantised(x)
        if tuple(got.shape) != tuple(want.shape):
            raise PreflightError(f"{route} matmul on {device}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        errors[f"rows_{rows}"] = round(_relative_error(got, want), 4)
        if not errors[f"rows_{rows}"] <= MAX_RELATIVE_ERROR:  # also catches NaN
            raise PreflightError(f"{route} matmul on {device} ({rows} rows) is {errors[f'rows_{rows}']} from bf16 "
                                 f"(relative error; quantisation noise is about 0.1): a broken kernel")
    return {"relative_error_vs_bf16": errors}


def int4_matmul(device: str, shape: tuple[int, int]) -> dict[str, Any]:
    """A bf16 linear layer quantised the way the app quantises the 7B (model.int4_weight_only)."""
    import torch
    from torchao.quantization import quantize_

    from llava_video_app.model import int4_weight_only

    out_features, in_features = shape
    layer = torch.nn.Linear(in_features, out_features, bias=False, dtype=torch.bfloat16, device=device)
    torch.nn.init.normal_(layer.weight, std=0.02)
    weight = layer.weight.detach().clone()
    quantize_(layer, int4_weight_only(torch.device(device), 128))
    if type(layer.weight) is torch.nn.Parameter and layer.weight.dtype == torch.bfloat16:
        raise PreflightError(f"int4 on {device}: torchao left the layer in bf16 (not quantised)")
    with torch.no_grad():
        return {"weight": type(layer.weight).__name__, **_check_product("int4", layer, weight, device)}


def nf4_matmul(device: str, shape: tuple[int, int]) -> dict[str, Any]:
    """NF4 with double quantisation (the app's BitsAndBytesConfig), through bitsandbytes' own matmul."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch

    weight = (torch.randn(shape, device=device) * 0.02).to(torch.bfloat16)
    packed, state = F.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    return _check_product("NF4", lambda x: bnb.matmul_4bit(x, packed.t(), quant_state=state), weight, device)


def tiny_answer(device: str) -> dict[str, Any]:
    """Four tokens from the tiny checkpoint on a 2 s video through the engine (eager, bf16 on CUDA)."""
    from llava_video_app.config import AppConfig, GenerationSettings
    from llava_video_app.engine import Engine
    from llava_video_app.sample_videos import make_video
    from llava_video_app.tiny import build_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="preflight-") as tmp:
        checkpoint = build_tiny_checkpoint(Path(tmp) / "tiny")
        video = make_video(Path(tmp) / "clip.mp4", seconds=2, fps=25, size=(320, 240))
        config = AppConfig(model=str(checkpoint), device=device, quant="bf16" if device == "cuda" else "fp32",
                           compile=False, frames=8, max_new_tokens=4)
        engine = Engine.from_config(config)
        try:
            engine.ask(video, "What happens?", settings=GenerationSettings(max_new_tokens=4, ignore_eos=True))
            stats = engine.last_stats
        finally:
            engine.close()
    if stats is None or stats.new_tokens != 4:
        raise PreflightError(f"the tiny checkpoint's answer on {device} has {getattr(stats, 'new_tokens', 0)} tokens, "
                             "expected 4")
    return {"new_tokens": stats.new_tokens, "visual_tokens": stats.visual_tokens}


def run(device: str, record: Callable[[str, Any], None] = lambda key, value: None) -> dict[str, Any]:
    """Each step in turn, each result handed to `record` as soon as it is known; PreflightError on the first
    failure (the step named in the message)."""
    shape = (18944, 3584) if device == "cuda" else (512, 256)  # the 7B's MLP up-projection; small on CPU
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("versions", versions), ("int4_matmul", lambda: int4_matmul(device, shape)),
        ("nf4_matmul", lambda: nf4_matmul(device, shape)), ("tiny_answer", lambda: tiny_answer(device)),
    ]
    results: dict[str, Any] = {}
    for name, step in steps:
        started = time.perf_counter()
        try:
            results[name] = step()
        except PreflightError as err:
            raise PreflightError(f"preflight {name}: {err}") from err
        except Exception as err:
            raise PreflightError(f"preflight {name}: {type(err).__name__}: {err}") from err
        results[name]["seconds"] = round(time.perf_counter() - started, 2)
        record(name, results[name])
        print(f"preflight {name}: {results[name]}", flush=True)
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        run(device)
    except PreflightError as err:
        sys.exit(str(err))
    print("preflight: ok")


if __name__ == "__main__":
    main()
