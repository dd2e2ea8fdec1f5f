"""A second quantisation of the loaded model, for comparing answers across quantisations
(`SecondModel`): loaded on demand next to the first, one at a time, and refused with a message when it
would not fit in the memory left on its device.

The estimate (`memory_needed`) is the checkpoint's parameter count (read from the safetensors headers,
nothing loaded) times the bytes a parameter takes in that quantisation, plus a margin for activations
and the KV cache. Free memory is the CUDA allocator's free bytes on a GPU, the system's available
memory on a CPU; tests hand in a budget of their own (`free_bytes`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
from pathlib import Path
from typing import Any, Callable

from .request import RequestError

# Bytes per parameter: NF4 and int4 pack two weights a byte, plus scales (and the vision tower and
# embeddings stay 16-bit: counted as a rough 0.6-0.7 over the whole model).
BYTES_PER_PARAMETER = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "4bit": 0.7, "int4": 0.65}
MARGIN = 1.2  # activations, the KV cache of a long video prompt, allocator slack


def parameter_count(checkpoint: str | Path) -> int:
    """Parameters in a checkpoint folder's safetensors files, from their headers alone."""
    total = 0
    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise RequestError(f"{checkpoint} has no safetensors files to size the model from")
    for path in files:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for n in entry["shape"]:
                    count *= int(n)
                total += count
    return total


def memory_needed(parameters: int, quant: str) -> int:
    """Bytes a model of `parameters` parameters needs in `quant`, margin included."""
    return int(parameters * BYTES_PER_PARAMETER[quant] * MARGIN)


def free_memory(device: str) -> int:
    """Bytes free for a new model on `device`: CUDA's free memory, or the system's available memory."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return _available_memory()


def _available_memory() -> int:
    """The system's available memory (Linux's MemAvailable: free plus reclaimable caches), else its free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


class SecondModel:
    """The first engine's model in another quantisation, loaded when first asked for (`get`), kept
    while the same one is asked for, and replaced (the old one closed first) when another is.
    `free_bytes(device)`: memory left there (default `free_memory`); `load(config) -> engine.Engine`: how
    to load (default: LlavaVideoModel.load; the first engine's config with the quantisation, eager decoding)."""

    def __init__(self, engine: Any, *, free_bytes: Callable[[str], int] = free_memory,
                 load: Callable[..., Any] | None = None):
        self.engine = engine
        self.free_bytes = free_bytes
        self._load = load or _load_engine
        self.loaded: Any = None  # the second engine, if any
        self.loads = 0  # models loaded so far (a comparison that reuses one loads none)
        self._lock = threading.Lock()

    def check_fits(self, quant: str) -> int:
        """The bytes `quant` needs; RequestError saying how much is needed and free when it would not fit."""
        checkpoint = Path(self.engine.model_id)
        if not checkpoint.is_dir():
            from .checkpoint import resolve_checkpoint

            checkpoint = resolve_checkpoint(self.engine.model_id)
        needed = memory_needed(parameter_count(checkpoint), quant)
        free = self.free_bytes(self.engine.device)
        if self.loaded is not None:
            free += memory_needed(parameter_count(checkpoint), self.loaded.quant)  # freed before loading
        if needed > free:
            raise RequestError(f"a second model in {quant} would not fit: it needs about {_gib(needed)} and "
                               f"{_gib(free)} is free on {self.engine.device} (the {self.engine.quant} model stays "
                               "loaded); compare on fewer settings, or start the app with --quant " + quant)
        return needed

    def get(self, quant: str) -> Any:
        """The engine for `quant`: the first one if it is already that, else the second, loaded if needed."""
        if quant == self.engine.quant:
            return self.engine
        with self._lock:
            if self.loaded is not None and self.loaded.quant == quant:
                return self.loaded
            self.check_fits(quant)
            if self.loaded is not None:
                self.loaded.close()
                self.loaded = None
            # Eager decode steps: a compile per comparison would cost more than it saves.
            config = dataclasses.replace(self.engine.config, model=self.engine.model_id, quant=quant,
                                         device=self.engine.device, compile=False)
            self.loaded = self._load(config)
            self.loads += 1
            return self.loaded

    def close(self) -> None:
        with self._lock:
            if self.loaded is not None:
                self.loaded.close()
                self.loaded = None


def _load_engine(config: Any) -> Any:
    from .engine import Engine
    from .model import LlavaVideoModel

    return Engine(LlavaVideoModel.load(config.model, quant=config.quant, device=config.device,
                                       pool_mode=config.pool_mode, attn_implementation=config.attn_implementation),
                  config)
