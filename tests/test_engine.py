"""The engine end to end on the tiny checkpoint: stream, stop, follow-ups from the caches."""

import threading

import pytest

from llava_video_app import video as video_stage
from llava_video_app.config import GenerationSettings
from llava_video_app.engine import Engine, inspect_request
from llava_video_app.prompts import Turn


def test_answer_streams_in_several_chunks(tiny_engine, sample_video):
    chunks = list(tiny_engine.stream(sample_video, "What happens?", settings=GenerationSettings(max_new_tokens=12)))
    stats = tiny_engine.last_stats
    assert stats.new_tokens >= 1
    assert len(chunks) >= 2 or stats.new_tokens == 1
    assert stats.visual_tokens == tiny_engine.model.layout.visual_tokens(8)
    assert stats.prompt_tokens > stats.visual_tokens
    assert stats.time_to_first_token_s > 0 and not stats.stopped


def test_stop_ends_generation_within_two_tokens(tiny_engine, sample_video):
    stop = threading.Event()
    received = []
    for chunk in tiny_engine.stream(sample_video, "Describe it.", settings=GenerationSettings(max_new_tokens=200), stop=stop):
        received.append(chunk)
        stop.set()  # the user presses Stop as soon as the first text shows
    stats = tiny_engine.last_stats
    assert stats.stopped
    assert stats.new_tokens <= 2
    # the engine is free right away: the next request runs at once, to its end
    assert tiny_engine.ask_text("Next?", settings=GenerationSettings(max_new_tokens=2))
    assert tiny_engine.last_stats.new_tokens == 2 and not tiny_engine.last_stats.stopped


def test_a_consumer_that_walks_away_counts_as_stop_and_frees_the_engine(tiny_engine, sample_video):
    stream = tiny_engine.stream(sample_video, "Describe it.", settings=GenerationSettings(max_new_tokens=200))
    next(stream)
    stream.close()  # what a cancelled UI event does
    assert tiny_engine.last_stats.stopped and tiny_engine.last_stats.new_tokens <= 2
    assert tiny_engine._lock.acquire(blocking=False)
    tiny_engine._lock.release()


def test_follow_up_reuses_frames_features_and_the_kv_cache(tiny_engine, sample_video, monkeypatch):
    settings = GenerationSettings(max_new_tokens=8)
    first = tiny_engine.ask(sample_video, "What moves?", settings=settings)
    calls = []
    real_load = video_stage.load_video
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    encodes = []
    real_encode = tiny_engine.model.encode_video
    monkeypatch.setattr(tiny_engine.model, "encode_video", lambda f: encodes.append(1) or real_encode(f))

    history = [Turn("What moves?", first)]
    second = tiny_engine.ask(sample_video, "Which way?", history, settings=settings)
    stats = tiny_engine.last_stats
    assert calls == [] and encodes == []  # neither decoded nor encoded again
    assert stats.video_cached
    assert stats.reused_tokens > stats.visual_tokens  # only the new text was prefilled

    # the cached path gives the same greedy answer as a cold engine
    cold = Engine(tiny_engine.model, tiny_engine.config)
    assert cold.ask(sample_video, "Which way?", history, settings=settings) == second
    assert cold.last_stats.reused_tokens == 0


def test_another_video_does_not_reuse_the_previous_videos_cache(tiny_engine, sample_video, tmp_path):
    from llava_video_app.sample_videos import make_video

    other = make_video(tmp_path / "pan.mp4", seconds=4, fps=10, size=(160, 120), pattern="pan")
    tiny_engine.ask(sample_video, "What moves?", settings=GenerationSettings(max_new_tokens=4))
    tiny_engine.ask(other, "What moves?", settings=GenerationSettings(max_new_tokens=4))
    stats = tiny_engine.last_stats
    assert not stats.video_cached
    assert stats.reused_tokens < stats.prompt_tokens - stats.visual_tokens  # stopped before the video block


def test_text_only_generation_for_qa_writing(tiny_engine):
    settings = GenerationSettings(max_new_tokens=6)
    text = tiny_engine.ask_text("Write one question.", settings=settings)
    assert text and tiny_engine.last_stats.visual_tokens == 0 and 1 <= tiny_engine.last_stats.new_tokens <= 6
    cold = Engine(tiny_engine.model, tiny_engine.config)  # greedy: the same text, from a cold engine too
    assert "".join(cold.stream_text("Write one question.", settings=settings)) == text


def test_sampling_with_temperature_runs(tiny_engine, sample_video):
    tiny_engine.ask(sample_video, "What?", settings=GenerationSettings(max_new_tokens=5, temperature=0.8, top_p=0.9))
    assert tiny_engine.last_stats.new_tokens <= 5 and tiny_engine.last_stats.prompt_tokens > 0


def test_inspect_plans_the_7b_input_without_loading_anything(sample_video):
    plan = inspect_request(sample_video, "What happens?", model="lmms-lab/LLaVA-Video-7B-Qwen2", frames=64)
    assert len(plan["frame_indices"]) == len(plan["timestamps"]) == 64
    assert plan["visual_tokens"] == 64 * 210 == 13_440
    assert plan["newline_position"] == "grid" and plan["pool_mode"] == "bilinear"
    assert plan["prompt"].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>")


@pytest.mark.slow
def test_compiled_decoding_over_a_static_cache_gives_the_eager_answers(tiny_engine, sample_video):
    """--compile: the same greedy answers as the eager path, follow-ups still served from the (now
    static) KV cache, and a second question of the same size compiles nothing new."""
    import dataclasses

    from torch._dynamo.utils import counters

    compiled = Engine(tiny_engine.model, dataclasses.replace(tiny_engine.config, compile=True))
    compiled.warm_up()  # what the app does at start-up
    graphs = counters["stats"]["unique_graphs"]
    settings = GenerationSettings(max_new_tokens=10)
    first = compiled.ask(sample_video, "What moves?", settings=settings)
    assert first == tiny_engine.ask(sample_video, "What moves?", settings=settings)
    assert compiled._kv.cache.layers[0].max_cache_len == 4096  # the smallest static size

    history = [Turn("What moves?", first)]
    second = compiled.ask(sample_video, "Which way?", history, settings=settings)
    assert compiled.last_stats.reused_tokens > compiled.last_stats.visual_tokens
    assert second == tiny_engine.ask(sample_video, "Which way?", history, settings=settings)
    cache = compiled._kv.cache
    compiled.clear()  # a new conversation: the same static cache is emptied and reused
    assert compiled.ask_text("Write one question.", settings=settings) == tiny_engine.ask_text(
        "Write one question.", settings=settings)
    assert compiled._kv.cache is cache
    assert counters["stats"]["unique_graphs"] == graphs  # warmed-up cache size: nothing compiled on use


def test_a_static_cache_too_small_for_the_next_request_is_replaced(tiny_engine, sample_video, monkeypatch):
    import dataclasses

    from llava_video_app import engine as engine_module

    monkeypatch.setattr(engine_module, "STATIC_CACHE_MIN", 256)
    # eager steps over a static cache: the cache logic without paying for a compile
    static = Engine(tiny_engine.model, dataclasses.replace(tiny_engine.config, compile=True))
    static._decoder = None
    first = static.ask(sample_video, "What moves?", settings=GenerationSettings(max_new_tokens=4))
    small = static._kv.cache
    assert small.layers[0].max_cache_len == 256
    static.ask(sample_video, "Which way?", [Turn("What moves?", first)], settings=GenerationSettings(max_new_tokens=300))
    assert static.last_stats.reused_tokens == 0  # the small cache could not hold it
    assert static._kv.cache is not small and static._kv.cache.layers[0].max_cache_len > 256
