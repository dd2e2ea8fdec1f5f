"""The language model's attention: PyTorch SDPA, with the decode step's grouped-query attention run
per key/value head.

Qwen2-7B has 28 query heads over 4 key/value heads. For one new token, transformers' SDPA path
repeats the keys and values 7 times (`repeat_kv`) whenever it runs under torch.compile, i.e. in every
compiled decode step: over a 16K-position static cache that is about 0.5 GB of copies per layer and
token, several times the weights' own traffic. Here the 7 query heads of each key/value head become
that head's 7 "queries" instead (the trick transformers itself uses outside compile), so the cache
is read once. Prefill (many tokens) goes to transformers' SDPA unchanged.

Registered as attn_implementation "sdpa_grouped" (the default, AppConfig.attn_implementation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "sdpa_grouped"


def grouped_decode_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        **kwargs) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_length, head_dim = query.shape
    if q_length != 1 or groups == 1 or kwargs.get("position_bias") is not None or (module.training and dropout):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    grouped = query.reshape(batch, heads // groups, groups, head_dim)  # (b, kv heads, its query heads, d)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[1] != 1:
        attention_mask = attention_mask[:, :1]  # one mask for every head (decoder masks are per position)
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, heads, 1, head_dim).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make "sdpa_grouped" an attention implementation transformers models can be loaded with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_decode_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
