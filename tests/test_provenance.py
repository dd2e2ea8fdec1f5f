"""Reproducible sampling and the provenance every answer carries (provenance.py), on the tiny random
checkpoint: a seed (the settings', or the random one drawn and recorded) gives the same answer again;
the record names the video by content, the trim, the settings, the tokens and the timings."""

import hashlib

import pytest

from llava_video_app.config import AppConfig, GenerationSettings
from llava_video_app.provenance import Provenance, settings_for, summary_of, video_identity
from llava_video_app.request import RequestError, check_request

SAMPLED = dict(max_new_tokens=12, temperature=1.5, top_p=1.0)


def _answer(engine, video, seed):
    clip = engine.load_clip(video, frames=8)
    return engine.ask(clip, "What happens?", settings=GenerationSettings(**SAMPLED, seed=seed)), engine.last_stats


def test_the_same_seed_gives_the_same_sampled_answer_and_others_differ(tiny_engine, sample_video):
    first, stats = _answer(tiny_engine, sample_video, 7)
    again, _ = _answer(tiny_engine, sample_video, 7)
    assert stats.seed == 7 and stats.new_tokens > 0
    assert again == first
    others = {_answer(tiny_engine, sample_video, seed)[1].token_ids[:12] == stats.token_ids[:12] for seed in (1, 2, 3)}
    assert others != {True}, "at temperature 1.5 other seeds should sample other tokens"


def test_a_random_seed_is_recorded_and_asking_with_it_reproduces_the_answer(tiny_engine, sample_video):
    answer, stats = _answer(tiny_engine, sample_video, None)
    drawn = stats.seed
    assert isinstance(drawn, int)
    assert _answer(tiny_engine, sample_video, drawn)[0] == answer
    assert _answer(tiny_engine, sample_video, None)[1].seed != drawn, "a fresh seed per answer"


@pytest.mark.parametrize("seed, words", [(-1, "seed must be a whole number from 0"), (2.5, "not 2.5"),
                                         ("x", "seed must be a number")])
def test_a_bad_seed_is_refused_with_one_message(seed, words):
    with pytest.raises(RequestError, match=words):
        check_request(AppConfig(), seed=seed)
    with pytest.raises(ValueError, match="seed"):
        AppConfig(seed=seed)


def test_the_config_seed_is_every_requests_default(monkeypatch):
    monkeypatch.setenv("LLAVA_VIDEO_SEED", "42")
    config = AppConfig.from_env()
    assert check_request(config).generation.seed == 42
    assert check_request(config, seed=3).generation.seed == 3


def test_provenance_names_the_video_by_content_and_carries_settings_tokens_and_timings(tiny_engine, sample_video):
    clip = tiny_engine.load_clip(sample_video, frames=8, start=1.0, end=4.0)
    settings = GenerationSettings(**SAMPLED, seed=11)
    tiny_engine.ask(clip, "What happens?", settings=settings)
    stats = tiny_engine.last_stats
    record = Provenance.of_answer(settings_for(tiny_engine, settings, 8), None, clip, stats, video=sample_video,
                                  start=1.0, end=4.0).to_dict()
    assert record["video"] == {"name": "square.mp4", "sha256": hashlib.sha256(sample_video.read_bytes()).hexdigest(),
                               "bytes": sample_video.stat().st_size}
    assert record["trim"] == {"start": 1.0, "end": 4.0}
    assert record["seed"] == 11
    s = record["settings"]
    assert (s["frames"], s["temperature"], s["top_p"], s["quant"]) == (8, 1.5, 1.0, "fp32")
    assert s["model"] == tiny_engine.model_id and "pool_mode" in s
    assert record["visual_tokens"] == stats.visual_tokens > 0
    assert record["prompt_tokens"] == stats.prompt_tokens > record["visual_tokens"]
    assert record["new_tokens"] == stats.new_tokens
    assert record["timings"]["time_to_first_token"] > 0 and record["tokens_per_s"] == round(stats.tokens_per_s, 2)
    assert len(record["prompt_sha256"]) == 64 and record["prompt_sha256"] == stats.prompt_sha256
    assert all(1.0 <= t <= 4.0 for t in record["timestamps"]) and len(record["frame_indices"]) == 8
    line = summary_of(record)
    assert "square.mp4" in line and "seed 11" in line and "8 frames" in line and "trim 1 s to 4 s" in line


def test_the_video_hash_follows_the_content_not_the_name(tmp_path, sample_video):
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(sample_video.read_bytes())
    assert video_identity(copy)["sha256"] == video_identity(sample_video)["sha256"]
    copy.write_bytes(sample_video.read_bytes() + b"\0")
    assert video_identity(copy)["sha256"] != video_identity(sample_video)["sha256"]
