"""One token at a time: the compiled decode step, choosing the next token, and turning tokens into
text as they come.

Compiled decoding runs each step through `torch.compile` over a static KV cache; on a GPU in
"reduce-overhead" mode, so a step is one CUDA graph replay instead of a thousand kernel launches
from Python (what makes eager 4-bit decoding slow at batch size 1). All compiled steps of the
process, whichever engine they belong to, run on one thread of their own: CUDA graph trees keep
their state per thread, and the app calls engines from many threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .transformers_support import with_cache

_decode_thread: ThreadPoolExecutor | None = None
_decode_thread_lock = threading.Lock()


def compile_cache_dir() -> Path:
    """Where torch.compile keeps compiled graphs and kernels across runs (so a second start skips
    most of the compile): $TORCHINDUCTOR_CACHE_DIR as the user set it, else
    ~/.cache/llava-video/torchinductor (PyTorch's default under /tmp does not survive a reboot)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # PyTorch writes its default into the variable when a library first asks for the folder.
    if chosen and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()):
        return Path(chosen)
    return Path.home() / ".cache" / "llava-video" / "torchinductor"


def use_persistent_compile_cache() -> Path:
    """Point PyTorch's on-disk compile caches (FX graphs, autograd graphs, Triton kernels) at
    compile_cache_dir() for the compiles to come. Returns the folder."""
    folder = compile_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read afresh on every use (cache_dir_utils)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return folder


def _prepare_graph_thread() -> None:
    """Give the decode thread CUDA graph trees' thread-local state.

    torch._inductor.cudagraph_trees creates it on the thread that first imports it; torch 2.11 (and
    earlier) asserts on any other thread that lacks it (`_is_key_in_tls(...)`), which crashed the
    second compiled engine of a process. Only the Python thread-locals are set, not torch's C++
    thread-local copy (`_stash_obj_in_tls`, there for autograd's threads): that copy is released
    by a C++ destructor when the thread ends, which needs the GIL and aborts the process
    ("terminate called without an active exception") if the interpreter is finishing by then.
    """
    try:
        from torch._inductor import cudagraph_trees as trees
    except ImportError:  # a build without inductor: nothing to prepare
        return
    if not hasattr(trees.local, "tree_manager_containers"):
        from collections import defaultdict

        trees.local.tree_manager_containers = {}
        trees.local.tree_manager_locks = defaultdict(threading.Lock)


def decode_thread() -> ThreadPoolExecutor:
    """The process's one thread for compiled decode steps (created on first use)."""
    global _decode_thread
    with _decode_thread_lock:
        if _decode_thread is None:
            _decode_thread = ThreadPoolExecutor(1, thread_name_prefix="decode-step", initializer=_prepare_graph_thread)
        return _decode_thread


class CompiledDecoder:
    """One decode step (one token in, next-token logits out) compiled for a static KV cache.

    Prefill stays eager: its shapes change with every prompt.
    """

    def __init__(self, lm: torch.nn.Module):
        self.cuda = next(lm.parameters()).device.type == "cuda"
        # Imported here, on the thread that builds the engine, not first on the decode thread: the
        # import stashes objects in the importing thread's C++ thread-locals (see _prepare_graph_thread).
        import torch._inductor.cudagraph_trees  # noqa: F401
        if self.cuda:
            use_persistent_compile_cache()
        self._step = torch.compile(lm.__call__, fullgraph=True, dynamic=False,
                                   mode="reduce-overhead" if self.cuda else None)

    def __call__(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        return decode_thread().submit(self._run, input_ids, cache).result()

    def _run(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        with torch.inference_mode():
            if self.cuda:
                torch.compiler.cudagraph_mark_step_begin()
            out = self._step(input_ids=input_ids, use_cache=True, **with_cache(cache))
            # A CUDA graph's outputs are overwritten by its next replay: keep a copy.
            return out.logits[0, -1].clone()


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """The next token: argmax at temperature 0 (greedy, like the model card), else nucleus sampling."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < top_p
        sorted_probs[~keep] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class IncrementalDecoder:
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
