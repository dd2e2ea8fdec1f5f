"""The grouped decode attention gives what transformers' SDPA gives, over dynamic and static caches."""

from __future__ import annotations

import pytest
import torch

from llava_video_app import attention
from llava_video_app.transformers_support import with_cache


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_grouped_decode_steps_match_transformers_sdpa(tiny_model, cache_kind):
    from transformers import DynamicCache, StaticCache

    lm = tiny_model.lm
    assert lm.model.layers[0].self_attn.num_key_value_groups == 2  # grouped-query attention in the tiny model too
    ids = torch.randint(0, 500, (1, 40))
    steps = torch.randint(0, 500, (6,))
    logits = {}
    for implementation in ("sdpa", attention.NAME):
        lm.config._attn_implementation = implementation
        cache = DynamicCache() if cache_kind == "dynamic" else StaticCache(config=lm.config, max_cache_len=128)
        with torch.inference_mode():
            outs = [lm(input_ids=ids, use_cache=True, **with_cache(cache)).logits[0, -1]]  # the name this release reads
            outs += [lm(input_ids=t.view(1, 1), use_cache=True, **with_cache(cache)).logits[0, -1] for t in steps]
        assert int(cache.get_seq_length()) == 40 + len(steps), "the steps ran over the cache"
        logits[implementation] = torch.stack(outs)
    lm.config._attn_implementation = attention.NAME  # the loader's default, for the other tests
    torch.testing.assert_close(logits[attention.NAME], logits["sdpa"], rtol=1e-5, atol=1e-6)


def test_the_loader_uses_it_by_default(tiny_model):
    assert tiny_model.lm.config._attn_implementation == attention.NAME
