"""Token-level pieces: the compiled decode step's thread, sampling, incremental detokenising."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from llava_video_app import decoding
from llava_video_app.config import GenerationSettings
from llava_video_app.engine import Engine


def test_the_decode_thread_has_cuda_graph_trees_thread_state():
    """torch 2.11 asserted (`_is_key_in_tls`) when a compiled step ran on a thread other than the one
    that imported cudagraph_trees: the crash of a process's second compiled engine."""
    from torch._inductor import (
        cudagraph_trees as trees,  # imported here, on the test's thread
    )

    def state_on_this_thread():
        return hasattr(trees.local, "tree_manager_containers") or torch._C._is_key_in_tls("tree_manager_containers")

    seen = {}
    fresh = threading.Thread(target=lambda: seen.setdefault("fresh", state_on_this_thread()))
    fresh.start()
    fresh.join()
    assert seen["fresh"] is False  # a plain new thread has none of it
    assert decoding.decode_thread().submit(state_on_this_thread).result() is True
    assert decoding.decode_thread().submit(lambda: trees.get_container(0)).result() is not None


@pytest.mark.slow
def test_two_compiled_engines_one_after_the_other_and_side_by_side(tiny_engine, sample_video):
    settings = GenerationSettings(max_new_tokens=6, ignore_eos=True)
    eager = tiny_engine.ask(sample_video, "What moves?", settings=settings)
    config = dataclasses.replace(tiny_engine.config, compile=True)

    first = Engine(tiny_engine.model, config)
    first.warm_up()
    assert first.ask(sample_video, "What moves?", settings=settings) == eager
    first.close()  # a reload: the old engine lets go, a new one compiles its own step
    second = Engine(tiny_engine.model, config)
    second.warm_up()
    assert second.ask(sample_video, "What moves?", settings=settings) == eager

    third = Engine(tiny_engine.model, config)  # beside the second one (a synthesis engine next to the chat's)
    third.warm_up()
    threads = set()
    real_run = decoding.CompiledDecoder._run

    def run_and_note_thread(self, *args):
        threads.add(threading.current_thread().name)
        return real_run(self, *args)

    decoding.CompiledDecoder._run = run_and_note_thread
    try:
        answers = {}
        workers = [threading.Thread(target=lambda e=e, k=k: answers.setdefault(k, e.ask(sample_video, "What moves?", settings=settings)))
                   for k, e in (("second", second), ("third", third))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        decoding.CompiledDecoder._run = real_run
    assert answers == {"second": eager, "third": eager}
    assert len(threads) == 1 and next(iter(threads)).startswith("decode-step")  # every engine's steps, one thread


def test_greedy_is_argmax_and_sampling_respects_top_p():
    logits = torch.tensor([0.0, 5.0, 1.0, 4.9])
    generator = torch.Generator().manual_seed(0)
    assert decoding.sample(logits, 0.0, 1.0, generator) == 1
    picks = {decoding.sample(logits, 1.0, 0.5, generator) for _ in range(50)}
    assert picks <= {1, 3} and picks  # the nucleus holds the two likeliest tokens only


def test_compile_caches_go_to_a_folder_that_survives_a_reboot(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing transformers leaves there
    folder = decoding.use_persistent_compile_cache()
    assert folder == tmp_path / ".cache" / "llava-video" / "torchinductor" and folder.is_dir()
    assert cache_dir() == str(folder)  # where inductor now writes
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice wins
    assert decoding.use_persistent_compile_cache() == tmp_path / "mine"
