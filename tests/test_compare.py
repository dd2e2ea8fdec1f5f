"""Compare (compare.py, second_model.py) on the tiny random checkpoint: the same seed and settings give
the same answer; a frames, pool or route variant changes what the model saw and the differences say
so; what each variant reused from the caches is counted; a second quantisation loads on demand, once,
and is refused with a message when an injected memory budget is too small."""

import pytest

from llava_video_app.compare import (
    Variant,
    as_conversations,
    differences,
    parse_variant,
    parse_variants,
    run_compare,
)
from llava_video_app.request import RequestError, check_request
from llava_video_app.second_model import SecondModel, memory_needed, parameter_count

QUESTION = "What happens in the video?"


def _base(engine, **kw):
    return check_request(engine.config, max_new_tokens=kw.pop("max_new_tokens", 8), **kw)


def _run(engine, video, texts, **kw):
    return run_compare(engine, video, QUESTION, parse_variants(texts), _base(engine), **kw)


def test_the_same_seed_and_settings_give_the_same_answer_and_no_differences(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["temperature=1.5, seed=11", "temperature=1.5, seed=11"])
    first, second = result.answers
    assert first.error is None and second.error is None
    assert first.answer and first.answer == second.answer
    assert first.provenance["seed"] == second.provenance["seed"] == 11
    assert result.differences == {}


def test_without_a_seed_one_is_drawn_for_the_whole_comparison(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["temperature=1.5", "temperature=1.5, top_p=0.9"])
    seeds = {a.provenance["seed"] for a in result.answers}
    assert len(seeds) == 1 and None not in seeds
    assert set(result.differences) == {"top-p"}


def test_a_frames_variant_differs_in_visual_tokens_and_frames(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["as asked", "frames=4"])
    asked, fewer = (a.provenance for a in result.answers)
    assert asked["settings"]["frames"] == 8 and fewer["settings"]["frames"] == 4
    assert fewer["visual_tokens"] * 2 == asked["visual_tokens"]
    assert result.differences["frames"] == [8, 4]
    assert result.differences["visual tokens"] == [asked["visual_tokens"], fewer["visual_tokens"]]
    assert "temperature" not in result.differences and "seed" not in result.differences


def test_cache_reuse_is_counted_per_variant(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["as asked", "temperature=0.7", "pool=average", "route=exact"])
    asked, sampled, pooled, exact = result.answers
    assert asked.reused == {"frames": False, "features": False, "prompt_tokens": 0}  # a fresh engine
    # Same clip, same pool: frames and features from the cache, and the KV prefix up to the question's end.
    assert sampled.reused["frames"] and sampled.reused["features"]
    assert sampled.reused["prompt_tokens"] >= asked.provenance["visual_tokens"]
    assert sampled.reused_text().startswith("reused frames, features, ")
    # Another pool mode: the frames are reused, the features (and so the video's KV) are not.
    assert pooled.reused["frames"] and not pooled.reused["features"]
    assert pooled.reused["prompt_tokens"] < asked.provenance["visual_tokens"]
    # The exact route decodes at the video's own size: nothing of the frames is reused.
    assert not exact.reused["frames"] and not exact.reused["features"]
    assert result.differences["pool mode"] == ["bilinear", "bilinear", "average", "bilinear"]
    assert result.differences["route"] == ["fast", "fast", "fast", "exact"]
    # The tiny tower's odd 5x5 grid: bilinear (ceil) pools to 3x3, average (floor) to 2x2 per frame
    assert pooled.provenance["visual_tokens"] < asked.provenance["visual_tokens"]


def test_a_trim_variant_sees_other_frames(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["as asked", "trim=2-4"])
    assert result.differences["trim"] == ["the whole video", "2 s to 4 s"]
    times = result.differences["frame times (s)"][1]
    assert all(2 <= t <= 4 for t in times)


def test_a_second_quantisation_loads_once_and_is_compared(tiny_engine, sample_video):
    models = SecondModel(tiny_engine)
    result = _run(tiny_engine, sample_video, ["as asked", "quant=bf16"], models=models)
    fp32, bf16 = result.answers
    assert bf16.error is None and bf16.answer
    assert result.differences["quantisation"] == ["fp32", "bf16"]
    assert bf16.reused["frames"]  # the first engine's decoded frames serve every quantisation
    again = _run(tiny_engine, sample_video, ["quant=bf16"], models=models)
    assert again.answers[0].error is None
    assert models.loads == 1
    models.close()


def test_a_second_quantisation_that_would_not_fit_is_refused_and_the_others_run(tiny_engine, sample_video):
    params = parameter_count(tiny_engine.model_id)
    budget = memory_needed(params, "bf16") - 1  # one byte short
    models = SecondModel(tiny_engine, free_bytes=lambda device: budget)
    result = _run(tiny_engine, sample_video, ["as asked", "quant=bf16"], models=models)
    asked, refused = result.answers
    assert asked.error is None and asked.answer
    assert refused.error and "would not fit" in refused.error and "bf16" in refused.error
    assert refused.provenance is None and models.loads == 0
    assert result.differences == {}  # one answer: nothing to differ
    fits = SecondModel(tiny_engine, free_bytes=lambda device: budget + 1)
    assert fits.check_fits("bf16") == budget + 1


def test_without_a_second_model_another_quantisation_is_refused(tiny_engine, sample_video):
    result = _run(tiny_engine, sample_video, ["quant=bf16", "as asked"])
    assert "cannot be loaded" in result.answers[0].error and result.answers[1].answer


def test_bad_variant_settings_are_refused_before_anything_runs(tiny_engine, sample_video):
    with pytest.raises(RequestError, match="variant 'frames=999'.*frames must be a whole number"):
        _run(tiny_engine, sample_video, ["as asked", "frames=999"])
    assert tiny_engine.last_stats is None


@pytest.mark.parametrize("text, words", [("frames", "is not a setting"), ("colour=red", "is not a setting"),
                                         ("pool=median", "pool must be one of"), ("route=slow", "fast or exact"),
                                         ("quant=int8", "quant must be one of"), ("trim=5", "START-END"),
                                         ("frames=8 frames=16", "given twice"), ("temperature=hot", "a number")])
def test_a_bad_variant_text_gets_one_message(text, words):
    with pytest.raises(ValueError, match=words):
        parse_variant(text)


def test_variant_labels_read_back_as_the_same_variant():
    for text in ("frames=16, pool=max", "trim=2-5, route=exact", "trim=whole", "temperature=0.7, seed=3",
                 "quant=bf16", "trim=-5"):
        variant = parse_variant(text)
        assert parse_variant(variant.label()) == variant
    assert parse_variant("as asked") == Variant() and Variant().label() == "as asked"
    with pytest.raises(ValueError, match="1 to 4 variants"):
        parse_variants(["frames=1"] * 5)


def test_differences_leave_out_the_seed_of_greedy_answers_and_refused_variants():
    greedy = {"settings": {"frames": 8, "temperature": 0.0}, "seed": 1}
    other = {"settings": {"frames": 8, "temperature": 0.0}, "seed": 2}
    assert differences([greedy, other]) == {}
    assert differences([greedy, None, {**greedy, "settings": {"frames": 4, "temperature": 0.0}}]) == \
        {"frames": [8, None, 4]}


def test_a_comparison_exports_as_conversations_marked_with_their_variant(tiny_engine, sample_video):
    from llava_video_app import transcript

    result = _run(tiny_engine, sample_video, ["as asked", "frames=4"])
    conversations = as_conversations(result, sample_video)
    assert [c["compare"]["variant"] for c in conversations] == ["as asked", "frames=4"]
    assert conversations[1]["compare"]["differs"]["frames"] == 4
    assert conversations[1]["turns"][0]["answer"] == result.answers[1].answer
    markdown = transcript.to_markdown(transcript.export(conversations))
    assert "Variant: frames=4" in markdown


def test_a_variant_answers_as_a_plain_ask_with_its_settings_does(tiny_engine, sample_video):
    from llava_video_app.config import GenerationSettings

    result = _run(tiny_engine, sample_video, ["frames=4, temperature=1.5, seed=4"])
    (answer,) = result.answers
    clip = tiny_engine.load_clip(sample_video, frames=4)
    plain = tiny_engine.ask(clip, QUESTION, settings=GenerationSettings(8, 1.5, 1.0, seed=4))
    assert answer.answer == plain and len(plain) > 1


def test_each_variant_waits_for_its_turn_on_a_shared_gpu_and_a_stop_while_waiting_runs_nothing(tiny_engine,
                                                                                                 sample_video):
    """On a shared app a comparison's model calls take turns in the GPU's line (gpu_queue) with answers and
    synthesis calls: none runs while another call has the GPU; a Stop while it waits runs nothing."""
    import threading

    from gpu_line import start_waiting

    from llava_video_app.compare import compare
    from llava_video_app.gpu_queue import GpuQueue

    line = GpuQueue()

    def start(stop=None):
        items = []
        return items, start_waiting(line, lambda: items.extend(compare(
            tiny_engine, sample_video, QUESTION, parse_variants(["as asked", "frames=4"]), _base(tiny_engine),
            stop=stop, turn=lambda s: line.turn("a comparison", s))))

    other = line.join("another visitor's answer")  # has the GPU
    items, worker = start()
    assert len(line) == 2 and line.running == "another visitor's answer" and not items  # nothing ran meanwhile
    other.leave()
    worker.join(300)
    assert not worker.is_alive() and len(line) == 0
    assert [a.error for a in items[-1].answers] == [None, None] and all(a.answer for a in items[-1].answers)

    other, stop = line.join("another visitor's answer"), threading.Event()
    items, worker = start(stop)
    stop.set()  # the visitor's Stop, while the comparison waits for the GPU
    worker.join(300)
    other.leave()
    assert [a.error for a in items[-1].answers] == ["stopped", "stopped"] and not any(a.answer for a in items[-1].answers)
