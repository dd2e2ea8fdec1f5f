"""The app's settings: `AppConfig` (defaults < environment variables LLAVA_VIDEO_* < CLI flags), the
quantisations (`check_quant`) and the sampling settings of one generation (`GenerationSettings`).
Torch-free, so the CLI, the UI and the synthesis recipe can use them without loading the model stack."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping

# 4bit: NF4 with double quantisation (bitsandbytes); int4: int4 weight-only, groups of 128 (torchao,
# the tinygemm kernels). Both quantise at load time from the original weights, with no calibration.
Quantization = Literal["4bit", "int4", "bf16", "fp16", "fp32"]
QUANTIZATIONS: tuple[str, ...] = ("4bit", "int4", "bf16", "fp16", "fp32")

DEFAULT_MODEL = "lmms-lab/LLaVA-Video-7B-Qwen2"
# Same on-disk format, small enough for a CPU: what we fall back to without CUDA.
CPU_FALLBACK_MODEL = "lmms-lab/llava-onevision-qwen2-0.5b-ov"

ENV_PREFIX = "LLAVA_VIDEO_"


def check_quant(value: str | None, setting: str = "quant") -> Quantization | None:
    """`value` if it is one of QUANTIZATIONS (or None: "not chosen"), else a ValueError that names the
    `setting` it came from (an environment variable, a flag)."""
    if value is not None and value not in QUANTIZATIONS:
        raise ValueError(f"{setting} must be one of {', '.join(QUANTIZATIONS)}, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass
class AppConfig:
    # Model
    model: str | None = None  # Hub id or local folder; None = choose by hardware (see resolve())
    quant: Quantization | None = None  # None = int4 (or 4bit, see default_gpu_quant) on CUDA, fp32 on CPU
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None = cuda if available
    pool_mode: str | None = None  # override of the checkpoint's mm_spatial_pool_mode
    attn_implementation: str = "sdpa_grouped"  # SDPA; decode steps per key/value head (see attention.py)
    # Decode steps through torch.compile (CUDA graphs on a GPU) over a static KV cache: 7x the tokens/s
    # of eager 4-bit decoding on an H200, paid for with a one-off compile per cache size (cached on
    # disk across runs; see decoding.py). None = on for CUDA, off on CPU (where it gains nothing).
    compile: bool | None = None
    # Tokens per prefill forward pass: bounds activation memory (a 13K-token video prompt is not run
    # at once); larger chunks use the GPU better. A multiple of engine.PREFILL_BUCKET.
    prefill_chunk: int = 2048
    # cuDNN's SDPA kernel plans per input shape, so every follow-up length would pay for a new plan.
    cudnn_attention: bool = False

    # Video
    frames: int = 64  # frames sampled uniformly (the authors' default)
    decode_at_model_size: bool = True  # let the decoder scale to the tower's input size

    # Generation (greedy by default, like the model card)
    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0

    # Caching (frames + visual features of recent videos)
    cache_videos: int = 4

    # Output / app
    output_dir: Path = Path("outputs")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    mcp_server: bool = False
    max_upload_mb: int = 500

    def resolved(self) -> "AppConfig":
        """Fill the hardware-dependent defaults: 7B in 4-bit on CUDA, the 0.5B OneVision on CPU."""
        import torch

        cuda = torch.cuda.is_available()
        device = self.device or ("cuda" if cuda else "cpu")
        on_cuda = device.startswith("cuda")
        model = self.model or (DEFAULT_MODEL if on_cuda else CPU_FALLBACK_MODEL)
        quant = self.quant or (default_gpu_quant(device) if on_cuda else "fp32")
        compile = on_cuda if self.compile is None else self.compile
        return dataclasses.replace(self, device=device, model=model, quant=quant, compile=compile)

    @property
    def fell_back_to_cpu(self) -> bool:
        """True when no model was chosen and no CUDA GPU is in use, so the CPU fallback model runs."""
        return self.model is None and self.resolved().device == "cpu"

    def with_overrides(self, **overrides: Any) -> "AppConfig":
        """Apply CLI flags; None means "flag not given"."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        check_quant(given.get("quant"), "--quant")
        return dataclasses.replace(self, **given)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AppConfig":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        check_quant(values.get("quant"), f"{ENV_PREFIX}QUANT")
        return cls(**values)


def default_gpu_quant(device: str) -> str:
    """int4 (torchao's tinygemm kernels) where they run: torchao installed and an Ampere or newer GPU;
    else NF4 (bitsandbytes). Compiled NF4 decoded at 76 tokens/s on an H200, below bf16's 92: its
    4-bit matmuls are bitsandbytes kernels torch.compile cannot fuse; tinygemm int4 is the kernel of
    the published int4 figures (about twice bf16's tokens/s on an A100)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("torchao") is None:
        return "4bit"
    try:
        major, _ = torch.cuda.get_device_capability(torch.device(device))
    except (RuntimeError, AssertionError, ValueError):  # no CUDA here (e.g. ZeroGPU's main process)
        return "int4"
    return "int4" if major >= 8 else "4bit"


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = str(f.type)
    try:
        if kind.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


@dataclass
class GenerationSettings:
    """How one answer is sampled: greedy by default, like the model card."""

    max_new_tokens: int = 1024
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    ignore_eos: bool = False  # benchmarks: always generate max_new_tokens

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @classmethod
    def from_config(cls, config: AppConfig) -> "GenerationSettings":
        return cls(config.max_new_tokens, config.temperature, config.top_p)
