"""The app's settings: `AppConfig` (defaults < environment variables LLAVA_VIDEO_* < CLI flags), the
quantisations (`check_quant`), the sampling settings of one generation (`GenerationSettings`), the
checks of single values they share (`whole_number`, `number_in`: one wording for every interface),
and the network defaults applied at start-up (`keep_start_up_offline`).
Torch-free, so the CLI, the UI and the synthesis recipe can use them without loading the model stack."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping, MutableMapping

# 4bit: NF4 with double quantisation (bitsandbytes); int4: int4 weight-only, groups of 128 (torchao,
# the tinygemm kernels). Both quantise at load time from the original weights, with no calibration.
Quantization = Literal["4bit", "int4", "bf16", "fp16", "fp32"]
QUANTIZATIONS: tuple[str, ...] = ("4bit", "int4", "bf16", "fp16", "fp32")

DEFAULT_MODEL = "lmms-lab/LLaVA-Video-7B-Qwen2"
# Same on-disk format, small enough for a CPU: what we fall back to without CUDA.
CPU_FALLBACK_MODEL = "lmms-lab/llava-onevision-qwen2-0.5b-ov"

ENV_PREFIX = "LLAVA_VIDEO_"

TEMPERATURE_MAX = 2.0  # the UI's slider and every request: beyond it sampling is noise


def _shown(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return repr(value)


def as_number(name: str, value: Any) -> float:
    """`value` as a float (NaN and infinities included), else a ValueError naming the setting."""
    if isinstance(value, bool):  # True is an int to Python, not a number to a user
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {_shown(value)}") from None


def whole_number(name: str, value: Any, low: int, high: int | None = None, why_high: str = "") -> int:
    """`value` as an int if it is a whole number in [low, high] (64.0 is 64; 2.7 is refused, never
    rounded), else a ValueError that names the setting, the range and the value."""
    number = as_number(name, value)
    if math.isfinite(number) and number == int(number) and number >= low and (high is None or number <= high):
        return int(number)
    span = f"from {low} to {high}{why_high}" if high is not None else f"of at least {low}"
    raise ValueError(f"{name} must be a whole number {span}, not {_shown(value)}")


def number_in(name: str, value: Any, low: float, high: float, *, above_low: bool = False, note: str = "") -> float:
    """`value` as a float in [low, high] (or (low, high] with `above_low`), else a ValueError that
    names the setting, the range and the value."""
    number = as_number(name, value)
    inside = (number > low if above_low else number >= low) and number <= high  # False for NaN
    if inside:
        return number
    span = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
    raise ValueError(f"{name} must be a number {span}{note}, not {_shown(value)}")


def check_temperature(value: Any) -> float:
    return number_in("temperature", value, 0.0, TEMPERATURE_MAX, note=" (0 = greedy)")


def check_top_p(value: Any) -> float:
    return number_in("top_p", value, 0.0, 1.0, above_low=True)


SEED_MAX = 2**53 - 1  # exact as a float: a browser's number box and JSON carry it unchanged


def check_seed(value: Any) -> int | None:
    """None (a random seed per answer) or a whole number from 0 to 2**53 - 1."""
    return None if value is None else whole_number("seed", value, 0, SEED_MAX)


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
    quant: Quantization | None = None  # None = CUDA_DEFAULT_QUANT (4bit) on CUDA, fp32 on CPU
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
    # The model card's "The video lasts for ... seconds" line before the question (the authors'
    # recipe); off reproduces lmms-eval's llava_vid default (add_time_instruction=False).
    time_instruction: bool = True

    # Generation (greedy, at most 4096 new tokens by default, like the model card; Stop ends one sooner)
    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_p: float = 1.0
    # The sampler's seed (matters when temperature > 0): the same seed and settings give the same answer.
    # None = a fresh random seed per answer, recorded in its provenance so that it can be asked again.
    seed: int | None = None

    # What one request may ask for, in every interface (the API, the CLI, the UI's sliders): checked
    # before any work starts (request.py), so a request's work is bounded by these.
    max_frames: int = 128
    max_new_tokens_limit: int = 4096
    max_decoded_mb: int = 4096  # the decoded frames of one request (matters with decode_at_model_size=0)
    # A question's characters, checked before tokenizing (tokenizing costs about 1.5 s per million
    # characters here); the synthesis recipe's longest prompts are a few thousand.
    max_question_chars: int = 100_000

    # Caching (frames + visual features of recent videos), bounded in entries and in bytes: each of the
    # two caches (frames in memory, features on the model's device) keeps at most cache_mb MB.
    cache_videos: int = 4
    cache_mb: int = 1024

    # Output / app
    output_dir: Path = Path("outputs")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    mcp_server: bool = False
    max_upload_mb: int = 500
    # What each visitor may leave behind on a shared server: the app keeps at most max_sessions browser
    # sessions' state (Gradio's and its own; least recently used out first, never one mid-answer), and
    # deletes uploads and other temporary files upload_ttl_s seconds after they were made.
    max_sessions: int = 500
    upload_ttl_s: int = 3600
    # Saved synthetic data per browser session (a folder each under output_dir/sessions/, Download zips
    # only that) instead of one shared folder. None = on when the app is shared: --share, a Hugging Face
    # Space or a host other than loopback (see per_session); the CLI never uses it.
    per_session_data: bool | None = None
    # Gradio's usage analytics and Hugging Face telemetry: off unless turned on (LLAVA_VIDEO_ANALYTICS=1;
    # see keep_start_up_offline), so start-up reaches no host but the model's (a Hub id not yet cached).
    analytics: bool = False

    def __post_init__(self) -> None:
        self.max_frames = whole_number("max_frames", self.max_frames, 1)
        self.max_new_tokens_limit = whole_number("max_new_tokens_limit", self.max_new_tokens_limit, 1)
        self.frames = whole_number("frames", self.frames, 1, self.max_frames, " (the app's max_frames)")
        self.max_new_tokens = whole_number("max_new_tokens", self.max_new_tokens, 1, self.max_new_tokens_limit,
                                           " (the app's max_new_tokens_limit)")
        self.temperature, self.top_p = check_temperature(self.temperature), check_top_p(self.top_p)
        self.seed = check_seed(self.seed)
        for name in ("cache_videos", "cache_mb", "max_decoded_mb", "max_question_chars", "max_upload_mb",
                     "max_sessions", "upload_ttl_s"):
            setattr(self, name, whole_number(name, getattr(self, name), 0 if name.startswith("cache") else 1))

    def per_session(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the app keeps each browser session's saved data apart: per_session_data if set, else
        whether others can reach the app (--share, a Space: SPACE_ID is set, or a non-loopback host)."""
        if self.per_session_data is not None:
            return self.per_session_data
        environ = os.environ if environ is None else environ
        return self.share or bool(environ.get("SPACE_ID")) or not is_loopback(self.host)

    def resolved(self) -> "AppConfig":
        """Fill the hardware-dependent defaults: 7B in 4-bit on CUDA, the 0.5B OneVision on CPU."""
        import torch

        cuda = torch.cuda.is_available()
        device = self.device or ("cuda" if cuda else "cpu")
        on_cuda = device.startswith("cuda")
        model = self.model or (DEFAULT_MODEL if on_cuda else CPU_FALLBACK_MODEL)
        quant = self.quant or (CUDA_DEFAULT_QUANT if on_cuda else "fp32")
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


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine ("localhost", 127.x, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: assume it is reachable from elsewhere
        return False


def keep_start_up_offline(environ: MutableMapping[str, str] | None = None) -> None:
    """Gradio's usage analytics and version check (GRADIO_ANALYTICS_ENABLED) and Hugging Face telemetry
    (HF_HUB_DISABLE_TELEMETRY) off, unless LLAVA_VIDEO_ANALYTICS=1 (AppConfig.analytics, the one
    switch: then the environment decides, as gradio and huggingface_hub do by default). The entry
    points call this before gradio or huggingface_hub is imported: both read these variables when
    imported; build_ui also passes the setting to gr.Blocks."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_PREFIX + "ANALYTICS", "")
    wanted = raw != "" and _parse(next(f for f in fields(AppConfig) if f.name == "analytics"), raw)
    if not wanted:
        environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


# The CUDA default: NF4 (bitsandbytes), the 4-bit route that has run on a GPU (76 tokens/s compiled on an
# H200, shared/reference gpu-measured.md). int4 (torchao's tinygemm kernels, --quant int4) has not run on
# a GPU yet; it becomes the default once bench/gpu_suite.py shows it faster than NF4 with logits as close
# to bf16's (docs/benchmarks.md). A default must have run on the hardware it is the default for.
CUDA_DEFAULT_QUANT: Quantization = "4bit"


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

    max_new_tokens: int = 4096
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    ignore_eos: bool = False  # benchmarks: always generate max_new_tokens
    seed: int | None = None  # None: a random one per answer (GenerationStats.seed says which)

    def __post_init__(self) -> None:
        # The same checks and words as a request's (request.check_request); the app's upper bound on
        # max_new_tokens is the request's to apply (synthesis and benchmarks set their own).
        self.max_new_tokens = whole_number("max_new_tokens", self.max_new_tokens, 1)
        self.temperature, self.top_p = check_temperature(self.temperature), check_top_p(self.top_p)
        self.seed = check_seed(self.seed)

    @classmethod
    def from_config(cls, config: AppConfig) -> "GenerationSettings":
        return cls(config.max_new_tokens, config.temperature, config.top_p, seed=config.seed)
