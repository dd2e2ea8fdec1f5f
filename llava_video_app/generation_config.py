"""The checkpoint's generation_config.json, applied as the authors' `model.generate(...)` applies it.

The model card calls `generate(..., do_sample=False, temperature=0, max_new_tokens=4096)`; transformers
merges those arguments over the file. So from the file, a greedy run keeps: the stop ids
(`eos_token_id`, an id or a list) and the logits processors that act on greedy decoding too
(`repetition_penalty`). Sampling-only keys (temperature, top_k, top_p, ...) are overridden by the
card's `do_sample=False`, and our greedy default does the same. A processor that would change a greedy
answer and that this module does not implement is refused at load, not silently skipped.

LLaVA's `generate` passes `inputs_embeds` and no `input_ids`, so transformers starts the sequence that
the repetition penalty looks at empty: only the answer's own tokens are penalised, never the prompt's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .checkpoint import CheckpointError

FILE = "generation_config.json"

# Keys that change a greedy answer and are not implemented here: refused (see the module doc).
UNSUPPORTED_GREEDY_KEYS = (
    "no_repeat_ngram_size", "min_length", "min_new_tokens", "bad_words_ids", "suppress_tokens",
    "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id", "sequence_bias",
    "exponential_decay_length_penalty", "encoder_repetition_penalty", "encoder_no_repeat_ngram_size",
    "num_beams", "penalty_alpha", "dola_layers", "watermarking_config",
)
_NEUTRAL = {"no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0, "num_beams": 1,
            "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0}


@dataclass(frozen=True)
class CheckpointGeneration:
    """What a checkpoint's generation_config.json makes the authors' greedy generate do."""

    eos_token_ids: tuple[int, ...] = ()
    repetition_penalty: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckpointGeneration":
        for key in UNSUPPORTED_GREEDY_KEYS:
            value = data.get(key)
            if value not in (None, [], {}) and value != _NEUTRAL.get(key, object()):
                raise CheckpointError(f"{FILE} sets {key}={value!r}, which changes greedy answers and is not "
                                      "supported here")
        eos = data.get("eos_token_id")
        eos_ids = tuple(int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None)
        penalty = float(data.get("repetition_penalty") or 1.0)
        if penalty <= 0:
            raise CheckpointError(f"{FILE}: repetition_penalty must be positive, not {penalty}")
        return cls(eos_ids, penalty)

    @classmethod
    def read(cls, checkpoint_dir: str | Path) -> "CheckpointGeneration":
        """The folder's generation_config.json; the neutral settings when it has none."""
        path = Path(checkpoint_dir) / FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not readable JSON: {err}") from err
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} holds no JSON object")
        return cls.from_dict(data)

    def process(self, logits: torch.Tensor, generated: Sequence[int]) -> torch.Tensor:
        """The file's logits processors over one row's next-token logits; `generated` = this answer's
        tokens so far (transformers' RepetitionPenaltyLogitsProcessor: each seen token once, a positive
        score divided by the penalty, a negative one multiplied)."""
        if self.repetition_penalty == 1.0 or not generated:
            return logits
        seen = torch.tensor(sorted(set(generated)), device=logits.device)
        scores = logits.gather(-1, seen)
        scores = torch.where(scores < 0, scores * self.repetition_penalty, scores / self.repetition_penalty)
        return logits.scatter(-1, seen, scores)
