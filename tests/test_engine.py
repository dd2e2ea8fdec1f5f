"""The engine end to end on the tiny checkpoint: stream, stop, follow-ups from the caches."""

import threading

import pytest
import torch

from llava_video_app import video as video_stage
from llava_video_app.config import GenerationSettings
from llava_video_app.engine import Engine
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
    monkeypatch.setattr(tiny_engine.model, "encode_video", lambda f, *pool: encodes.append(1) or real_encode(f, *pool))

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
    assert compiled._kv.state.cache.layers[0].max_cache_len == 4096  # the smallest static size

    history = [Turn("What moves?", first)]
    second = compiled.ask(sample_video, "Which way?", history, settings=settings)
    assert compiled.last_stats.reused_tokens > compiled.last_stats.visual_tokens
    assert second == tiny_engine.ask(sample_video, "Which way?", history, settings=settings)
    cache = compiled._kv.state.cache
    compiled.clear()  # a new conversation: the same static cache is emptied and reused
    assert compiled.ask_text("Write one question.", settings=settings) == tiny_engine.ask_text(
        "Write one question.", settings=settings)
    assert compiled._kv.state.cache is cache
    assert counters["stats"]["unique_graphs"] == graphs  # warmed-up cache size: nothing compiled on use


def test_a_static_cache_too_small_for_the_next_request_is_replaced(tiny_engine, sample_video, monkeypatch):
    import dataclasses

    from llava_video_app import kv_cache

    monkeypatch.setattr(kv_cache, "STATIC_CACHE_MIN", 256)
    # eager steps over a static cache: the cache logic without paying for a compile
    static = Engine(tiny_engine.model, dataclasses.replace(tiny_engine.config, compile=True))
    static._decoder = None
    first = static.ask(sample_video, "What moves?", settings=GenerationSettings(max_new_tokens=4))
    small = static._kv.state.cache
    assert small.layers[0].max_cache_len == 256
    static.ask(sample_video, "Which way?", [Turn("What moves?", first)], settings=GenerationSettings(max_new_tokens=300))
    assert static.last_stats.reused_tokens == 0  # the small cache could not hold it
    assert static._kv.state.cache is not small and static._kv.state.cache.layers[0].max_cache_len > 256


def test_ids_past_the_tokenizer_are_never_picked(tiny_checkpoint, sample_video):
    """The checkpoint's LM head is padded past the tokenizer (152,064 rows for 151,646 tokens in the
    7B); the authors resize it away. Rows made to win every argmax must still never be chosen."""

    from llava_video_app.config import AppConfig
    from llava_video_app.engine import Engine
    from llava_video_app.model import LlavaVideoModel

    model = LlavaVideoModel.load(str(tiny_checkpoint), quant="fp32", device="cpu")
    tokenizer_size = len(model.tokenizer)
    assert model.lm.lm_head.weight.shape[0] > tokenizer_size == model.vocab_size

    def padding_rows_win(module, inputs, logits):
        logits[..., tokenizer_size:] += 100.0
        return logits

    model.lm.lm_head.register_forward_hook(padding_rows_win)
    engine = Engine(model, AppConfig(frames=4))
    for temperature in (0.0, 1.0):
        engine.ask(sample_video, "What happens?", settings=GenerationSettings(max_new_tokens=12, temperature=temperature))
        assert engine.last_stats.new_tokens >= 1
        assert max(engine.last_stats.token_ids) < tokenizer_size
    assert engine.prompt_logits(sample_video, "What happens?").shape == (tokenizer_size,)
    uncut = model.lm(inputs_embeds=model.embed(model.tokenize("Hi"), None)).logits[0, -1]
    assert int(uncut.argmax()) >= tokenizer_size  # the padding rows do win when nothing cuts them


def test_prefill_shapes_come_in_buckets_and_the_padding_changes_nothing(tiny_engine, sample_video):
    """Follow-ups of different lengths run the model on a few padded input lengths, not a new shape
    each (per-shape work cost 0.8 s per follow-up on a GPU); answers are those of a cold start."""
    from llava_video_app.engine import PREFILL_BUCKET

    lengths = []
    hook = tiny_engine.model.lm.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["inputs_embeds"].shape[1]) if kwargs.get("inputs_embeds") is not None else None,
        with_kwargs=True)
    try:
        settings = GenerationSettings(max_new_tokens=6)
        first = tiny_engine.ask(sample_video, "What moves?", settings=settings)
        history = [Turn("What moves?", first)]
        for question in ("Which way?", "And what colour is the square at the very end of the video?"):
            lengths.clear()
            warm = tiny_engine.ask(sample_video, question, history, settings=settings)
            assert tiny_engine.last_stats.reused_tokens > tiny_engine.last_stats.visual_tokens
            assert lengths and all(n % PREFILL_BUCKET == 0 for n in lengths)
            tiny_engine.clear()
            assert tiny_engine.ask(sample_video, question, history, settings=settings) == warm
            tiny_engine.ask(sample_video, "What moves?", settings=settings)  # back to the first turn's cache
    finally:
        hook.remove()


def test_time_to_first_token_is_broken_down(tiny_engine, sample_video, monkeypatch):
    """Each part is timed when it does work and is 0 when it came from a cache (counted, not timed against
    another run: a busy machine makes any run slow)."""
    settings = GenerationSettings(max_new_tokens=3)
    tiny_engine.ask(sample_video, "What moves?", settings=settings)
    cold = tiny_engine.last_stats
    assert not cold.video_cached and cold.video_s > 0 and cold.vision_s > 0 and cold.prefill_s > 0
    # nested intervals of one clock (1e-9: float rounding of the differences), not a speed
    assert cold.video_s + cold.vision_s + cold.prefill_s <= cold.time_to_first_token_s + 1e-9
    work = []
    monkeypatch.setattr(video_stage, "load_video", lambda *a, **k: work.append("decode"))
    monkeypatch.setattr(tiny_engine.model, "encode_video", lambda frames, *pool: work.append("encode"))
    tiny_engine.ask(sample_video, "Which way?", settings=settings)
    warm = tiny_engine.last_stats
    assert work == [] and warm.video_cached and warm.video_s == 0 and warm.vision_s == 0 and warm.prefill_s > 0


def test_prompts_answered_as_one_batch_equal_their_answers_one_by_one(tiny_engine):
    from llava_video_app.prompts import QUESTION_TYPES
    from llava_video_app.synth.prompts import qa_prompt

    caption = "A red square moves from left to right while the camera pans; then the square turns blue."
    questions = [qa_prompt(caption, [t.name]) for t in QUESTION_TYPES[:6]] + ["Hi.", "Write a long list."]
    for settings in (GenerationSettings(max_new_tokens=10), GenerationSettings(max_new_tokens=16, ignore_eos=True)):
        one_by_one = [tiny_engine.ask_text(q, settings=settings) for q in questions]
        batched = list(tiny_engine.answer_texts(questions, settings=settings))
        assert sorted(i for i, _ in batched) == list(range(len(questions)))  # each answered once
        assert dict(batched) == dict(enumerate(one_by_one))


def test_a_stopped_batch_returns_each_answer_as_it_stands(tiny_engine):
    stop = threading.Event()
    settings = GenerationSettings(max_new_tokens=50, ignore_eos=True)
    answers = []
    for index, text in tiny_engine.answer_texts(["One?", "Two, and a longer one?"], settings=settings, stop=stop):
        answers.append(index)
        stop.set()
    assert sorted(answers) == [0, 1]  # both come back at once: stopped after the first step
    stop.clear()
    full = dict(tiny_engine.answer_texts(["One?"], settings=settings, stop=stop))
    assert len(tiny_engine.model.tokenizer(full[0]).input_ids) > 10


def test_the_prefill_chunk_size_changes_memory_use_not_results(tiny_engine, sample_video):
    import dataclasses

    import torch

    small = Engine(tiny_engine.model, dataclasses.replace(tiny_engine.config, prefill_chunk=64))
    chunks = []
    hook = tiny_engine.model.lm.register_forward_pre_hook(
        lambda module, args, kwargs: chunks.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        logits = small.prompt_logits(sample_video, "What moves?")
    finally:
        hook.remove()
    assert len(chunks) > 1 and max(chunks) == 64  # the prompt went through in 64-token passes
    torch.testing.assert_close(logits, tiny_engine.prompt_logits(sample_video, "What moves?"), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 64"):
        Engine(tiny_engine.model, dataclasses.replace(tiny_engine.config, prefill_chunk=100))


# --- bounded work per request -------------------------------------------------------------------

@pytest.fixture
def decoder_calls(monkeypatch):
    """Every call of either video reader's decoding (PyAV's and decord's read), recorded."""
    from llava_video_app.video.decord_reader import DecordSource
    from llava_video_app.video.pyav_reader import PyAVSource

    calls = []
    for source in (PyAVSource, DecordSource):
        real = source.read
        monkeypatch.setattr(source, "read", lambda self, indices, size, real=real: calls.append(len(indices))
                            or real(self, indices, size))
    return calls


def test_a_request_too_big_for_the_context_is_refused_before_any_decoding(tiny_model, sample_video, decoder_calls):
    from llava_video_app.config import AppConfig
    from llava_video_app.request import RequestError

    # An owner who raised max_frames: the token budget still refuses, from the header and the layout
    # (12 tokens per frame here) alone, in the planning call and at the start of stream() alike.
    engine = Engine(tiny_model, AppConfig(frames=100_000, max_new_tokens=16, max_frames=100_000))
    too_many = (r"^too many frames: 100000 frames make 1,200,000 visual tokens and 59\d,\d{3} of timestamps; with "
                r"the rest of the prompt \(\d+ tokens\) and up to 16 new tokens this request needs .*: use at most "
                r"about 1,8\d\d frames$")
    with pytest.raises(RequestError, match=too_many):
        engine.check_request(sample_video, "What happens?", frames=100_000)
    with pytest.raises(RequestError, match=too_many):
        next(engine.stream(sample_video, "What happens?"))
    # "before any decoding" is counted, not timed: no frame read, nothing cached
    assert decoder_calls == [] and len(engine._clips) == 0 and len(engine._features) == 0
    engine.ask(engine.load_clip(sample_video, frames=8), "What happens?", settings=GenerationSettings(max_new_tokens=2))
    assert decoder_calls, "a request that fits is decoded and answered"


def test_caches_are_bounded_in_bytes_too(tiny_model, sample_video):
    from llava_video_app.config import AppConfig
    from llava_video_app.recently_used import RecentlyUsed

    lru = RecentlyUsed(10, max_bytes=100)
    for key, size in enumerate((40, 40, 40, 150)):
        lru.get_or_make(key, lambda size=size: torch.zeros(size, dtype=torch.uint8))
    assert list(lru) == [1, 2] and lru.nbytes == 80, "the oldest went for the third; the 150-byte one is not kept"
    lru.clear()
    assert lru.nbytes == 0

    engine = Engine(tiny_model, AppConfig(frames=8, max_new_tokens=16, cache_videos=100, cache_mb=1))
    for frames in range(20, 40):  # 20 clips of 70x70 frames: 290-570 KB each
        clip = engine.load_clip(sample_video, frames=frames)
        engine.ask(clip, "What?", settings=GenerationSettings(max_new_tokens=1))
        engine.load_clip(sample_video, frames=frames)
    assert 0 < engine._clips.nbytes <= 2**20 and 0 < engine._features.nbytes <= 2**20
    assert len(engine._clips) < 20


def test_out_of_gpu_memory_is_a_message_frees_what_it_took_and_keeps_the_model(tiny_engine, sample_video, monkeypatch):
    from llava_video_app.request import RequestError

    settings = GenerationSettings(max_new_tokens=4)
    tiny_engine.ask(sample_video, "What moves?", settings=settings)
    assert len(tiny_engine._clips) and len(tiny_engine._features) and tiny_engine._kv.state is not None
    model_lm = tiny_engine.model.lm

    class OutOfMemoryLM:  # the language model's forward pass fails as CUDA's allocator would
        def __call__(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        def __getattr__(self, name):
            return getattr(model_lm, name)

    monkeypatch.setattr(tiny_engine.model, "lm", OutOfMemoryLM())
    with pytest.raises(RequestError, match=r"^the GPU ran out of memory for this request: try fewer frames "
                                           r"\(e.g. 4 instead of 8\), a shorter question or fewer new tokens"):
        tiny_engine.ask(sample_video, "What else?", settings=settings)
    assert len(tiny_engine._clips) == len(tiny_engine._features) == 0 and tiny_engine._clips.nbytes == 0
    assert tiny_engine._kv.state is None, "the half-filled conversation cache is not kept"
    with pytest.raises(RequestError, match="ran out of memory"):
        tiny_engine.ask_text("A text-only call?", settings=settings)
    with pytest.raises(RequestError, match="ran out of memory"):  # the synthesis recipe's batched QA calls
        list(tiny_engine.answer_texts(["One?", "Two?"], settings=settings))
    monkeypatch.setattr(tiny_engine.model, "lm", model_lm)
    assert tiny_engine.ask(sample_video, "And now?", settings=settings), "the same model answers the next request"
    assert tiny_engine.last_stats.reused_tokens == 0 and not tiny_engine.last_stats.video_cached


def test_the_engine_bounds_tokens_not_characters_so_the_recipes_long_prompts_run(tiny_model):
    """max_question_chars is for what users type (the API, the CLI, the Ask tab check it); a level-3
    or QA prompt of the synthesis recipe only has to fit the context."""
    from llava_video_app.config import AppConfig

    engine = Engine(tiny_model, AppConfig(frames=8, max_new_tokens=16, max_question_chars=20))
    assert engine.ask_text("Describe these windows: " + "the square moves right. " * 50,
                           settings=GenerationSettings(max_new_tokens=2))


def test_a_language_model_that_ignores_the_kv_cache_stops_the_answer(tiny_engine, sample_video, monkeypatch):
    """transformers 5.17-5.23 read the cache as `past_key_values` and swallow an unknown `cache=`: the model then
    answers with no context and nothing says so. Passing the cache under a name no release reads makes that happen
    on any version; the engine must refuse instead of answering."""
    from llava_video_app import transformers_support

    monkeypatch.setattr(transformers_support, "cache_argument", lambda: "cache_no_release_reads")
    short = GenerationSettings(max_new_tokens=3)
    for request in (lambda: tiny_engine.ask(sample_video, "What moves?", settings=short),
                    lambda: list(tiny_engine.answer_texts(["One?", "Two?"], settings=short)),
                    lambda: tiny_engine.prompt_logits(None, "Hello")):
        with pytest.raises(RuntimeError, match=r"kept 0 of the \d+ positions .* KV cache"):
            request()


def test_the_cache_goes_under_the_name_the_installed_transformers_reads():
    import inspect

    from transformers import Qwen2ForCausalLM

    from llava_video_app.transformers_support import cache_argument

    assert cache_argument() in inspect.signature(Qwen2ForCausalLM.forward).parameters
