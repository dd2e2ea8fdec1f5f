"""Compare (compare.py) on the tiny random checkpoint, continued: a Stop ends the running variant and
skips the rest; the exact frame route and a pool-mode variant see exactly what an engine configured that
way sees."""

from llava_video_app.compare import parse_variants, run_compare
from llava_video_app.request import check_request

QUESTION = "What happens in the video?"


def _base(engine, **kw):
    return check_request(engine.config, max_new_tokens=kw.pop("max_new_tokens", 8), **kw)


def _run(engine, video, texts, **kw):
    return run_compare(engine, video, QUESTION, parse_variants(texts), _base(engine), **kw)


def test_stop_ends_the_running_variant_and_skips_the_rest(tiny_engine, sample_video):
    import threading

    from llava_video_app.compare import Comparison, compare

    stop = threading.Event()
    items = []
    base = _base(tiny_engine, max_new_tokens=16)
    for item in compare(tiny_engine, sample_video, QUESTION, parse_variants(["as asked", "frames=4"]), base,
                        stop=stop):
        items.append(item)
        stop.set()  # pressed as the first text arrives
    result = items[-1]
    assert isinstance(result, Comparison)
    running, skipped = result.answers
    assert running.provenance["stopped"] and running.provenance["new_tokens"] < 16
    assert skipped.error == "stopped" and skipped.provenance is None and not skipped.answer


def _first_logits(engine, run):
    """The logits the first answer token of `run()` was chosen from (the engine's last request)."""
    engine.record_logits = True
    try:
        run()
        return engine.recorded_logits[0][0]
    finally:
        engine.record_logits = False


def test_the_exact_route_and_a_pool_variant_see_what_an_engine_configured_so_sees(tiny_engine, tiny_model,
                                                                                  sample_video):
    """The tiny random model often picks the same tokens whatever it sees, so the logits are compared (to
    float noise: a reused KV prefix is prefilled in other pieces)."""
    import dataclasses

    import torch

    from llava_video_app.engine import Engine

    def compared(text):
        return _first_logits(tiny_engine, lambda: _run(tiny_engine, sample_video, [text]))

    def same(a, b):
        return torch.allclose(a, b, rtol=0, atol=1e-5)

    def asked(engine):
        clip = engine.load_clip(sample_video, frames=8)
        return _first_logits(engine, lambda: engine.ask(clip, QUESTION))

    exact = Engine(tiny_model, dataclasses.replace(tiny_engine.config, decode_at_model_size=False))
    assert exact.load_clip(sample_video, frames=8).frames.shape[1:3] == (120, 160), "the video's own size"
    assert same(compared("route=exact"), asked(exact))
    assert not same(compared("route=fast"), asked(exact))

    max_model = type(tiny_model).load(str(tiny_model.model_id), quant="fp32", device="cpu", pool_mode="max")
    configured = Engine(max_model, tiny_engine.config)
    assert same(compared("pool=max"), asked(configured))
    assert not same(compared("pool=average"), asked(configured))
