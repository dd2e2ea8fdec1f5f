"""The tiny checkpoint makes every weight visible: no bias is zero, no norm weight is one, and
resetting any of them changes the logits. So a loader or forward pass that drops one fails parity.
"""

from __future__ import annotations

import json
import re

import torch
from safetensors import safe_open

from llava_video_app.config import AppConfig
from llava_video_app.engine import Engine

QUESTION = "What moves?"


def _checkpoint_tensors(checkpoint):
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    for shard in sorted(set(index.values())):
        with safe_open(checkpoint / shard, framework="pt") as f:
            for key in f.keys():
                yield key, f.get_tensor(key).float()


def test_the_tiny_checkpoint_has_no_zero_bias_and_no_unit_norm_weight(tiny_checkpoint):
    biases = norms = 0
    for name, tensor in _checkpoint_tensors(tiny_checkpoint):
        if name.endswith("bias"):
            biases += 1
            assert tensor.abs().min() >= 0.01, name
        elif "norm" in name and name.endswith("weight"):
            norms += 1
            assert (tensor - 1).abs().min() >= 0.05 and tensor.abs().min() >= 0.5, name
    # biases: LM 2 layers x q/k/v; SigLIP 2 saved layers x (q/k/v/out, fc1/fc2, 2 LayerNorms) + patch
    # embedding + post-LN; projector 2. Norm weights: LM 2 layers x 2 + final; SigLIP 2 x 2 + post-LN.
    assert (biases, norms) == (2 * 3 + 2 * 8 + 1 + 1 + 2, 2 * 2 + 1 + 2 * 2 + 1)


def _groups(model) -> dict[str, list[tuple[torch.nn.Parameter | torch.Tensor, float]]]:
    """Every bias and norm affine of the model, grouped across layers: {name with * for the layer:
    [(tensor, the neutral value that would hide it)]}."""
    groups: dict[str, list] = {}
    parts = {"lm": model.lm, "vision": model.vision.siglip, "projector": model.projector}
    for part, module in parts.items():
        for name, param in module.named_parameters():
            is_norm = "norm" in name
            if name.endswith("bias"):
                neutral = 0.0
            elif is_norm and name.endswith("weight"):
                neutral = 1.0
            else:
                continue
            across_layers = re.sub(r"\.\d+\.", ".*.", name)
            groups.setdefault(f"{part}.{across_layers}", []).append((param, neutral))
    groups["image_newline"] = [(model.image_newline, 0.0)]
    return groups


def test_resetting_any_bias_or_norm_weight_changes_the_logits(tiny_model, sample_video):
    config = AppConfig(frames=8, decode_at_model_size=False)
    clip = Engine(tiny_model, config).load_clip(sample_video)
    baseline = Engine(tiny_model, config).prompt_logits(clip, QUESTION)
    features = tiny_model.encode_video(clip.frames)
    groups = _groups(tiny_model)
    # q/k/v biases of the LM, both RMSNorms and the final one, SigLIP's LayerNorms and biases, projector
    for expected in ("lm.model.layers.*.self_attn.q_proj.bias", "lm.model.layers.*.input_layernorm.weight",
                     "lm.model.norm.weight", "vision.encoder.layers.*.layer_norm1.bias",
                     "vision.embeddings.patch_embedding.bias", "projector.2.bias"):
        assert expected in groups
    # No effect by design: the tower's output skips its post-layernorm (as upstream), and a key bias
    # without rotary positions adds the same score to every key (softmax ignores it).
    unused = {name for name in groups
              if "post_layernorm" in name or name.startswith("vision.") and "k_proj.bias" in name}
    assert len(unused) == 3 and len(groups) >= 20
    changes = {}
    for name, tensors in groups.items():
        saved = [t.detach().clone() for t, _ in tensors]
        try:
            with torch.no_grad():
                for t, neutral in tensors:
                    t.fill_(neutral)
            logits = Engine(tiny_model, config).prompt_logits(clip, QUESTION)
            # how many times what parity tolerates (rtol 1e-4, atol 1e-5), in the logits or the visual tokens
            changes[name] = max(_beyond_tolerance(logits, baseline), _beyond_tolerance(
                tiny_model.encode_video(clip.frames), features))
        finally:
            with torch.no_grad():
                for (t, _), old in zip(tensors, saved):
                    t.copy_(old)
    torch.testing.assert_close(Engine(tiny_model, config).prompt_logits(clip, QUESTION), baseline)  # restored
    invisible = sorted(name for name, change in changes.items() if change < 20 and name not in unused)
    assert not invisible, f"resetting these hardly changes the logits: {invisible} ({changes})"
    assert all(changes[name] < 0.1 for name in unused)


def _beyond_tolerance(got: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest |got - expected| in units of what the parity tests allow there (1e-5 + 1e-4 |expected|)."""
    return float(((got - expected).abs() / (1e-5 + 1e-4 * expected.abs())).max())
