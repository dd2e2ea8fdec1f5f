"""An independent LLaVA-Video forward pass in plain torch, for the parity tests.

It shares no code with `llava_video_app`: it reads config.json with `json` and the weights with
`safetensors`, samples frames with decord + np.linspace as the model card's `load_video` does,
writes the prompt from its own transcription of LLaVA-NeXT's `qwen_1_5` conversation and the model
card's time instruction, and computes the whole model itself: SigLIP layers (the tower with its last
layer deleted, as `SigLipVisionTower.load_model` does), the mlp2x_gelu projector, `get_2dPool`, the
newline layouts of `prepare_inputs_labels_for_multimodal`, `tokenizer_image_token` and the splice, and
a Qwen2 decoder (RMSNorm, rotary embeddings from the file's `rope_theta`, grouped-query attention,
SwiGLU MLP, final norm, LM head resized to len(tokenizer) as the authors' builder does). fp32 only.
Only the tokenizer files are read through a library (transformers' Qwen2Tokenizer), as the authors do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_TOKEN_INDEX = -200


def load_video(path: str | Path, max_frames_num: int) -> tuple[np.ndarray, list[float], float]:
    """The model card's load_video with force_sample=True: frames, their times, the video's length."""
    from decord import VideoReader, cpu

    vr = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    total_frame_num = len(vr)
    video_time = total_frame_num / vr.get_avg_fps()
    frame_idx = np.linspace(0, total_frame_num - 1, max_frames_num, dtype=int).tolist()
    frame_time = [i / vr.get_avg_fps() for i in frame_idx]
    return vr.get_batch(frame_idx).asnumpy(), frame_time, video_time


def qwen_1_5_prompt(question: str, frame_time: list[float] | None, video_time: float | None,
                    history: list[tuple[str, str]] = ()) -> str:
    """conv_templates["qwen_1_5"] (SeparatorStyle.CHATML) with the model card's video question.

    `history`: earlier (question, answer) turns, appended as conv.append_message does; each answer is
    the decoded output `.strip()`-ed, as the authors' serve/cli.py stores it. The video (and its time
    instruction) belongs to the first user message only. frame_time None: a text-only conversation.
    """
    system, sep = "<|im_start|>system\nYou are a helpful assistant.", "<|im_end|>"
    messages = []
    for i, (q, answer) in enumerate([*history, (question, None)]):
        if i == 0 and frame_time is not None:
            times = ",".join(f"{t:.2f}s" for t in frame_time)
            time_instruction = (f"The video lasts for {video_time:.2f} seconds, and {len(frame_time)} frames are "
                                f"uniformly sampled from it. These frames are located at {times}.Please answer "
                                "the following questions related to this video.")
            q = "<image>" + f"{time_instruction}\n" + q
        messages += [("<|im_start|>user", q), ("<|im_start|>assistant", None if answer is None else answer.strip())]
    ret = system + sep + "\n"
    for role, message in messages:
        ret += role + "\n" + message + sep + "\n" if message else role + "\n"
    return ret


class ReferenceLlavaVideo:
    def __init__(self, checkpoint: str | Path):
        from safetensors import safe_open
        from transformers import Qwen2Tokenizer

        checkpoint = Path(checkpoint)
        self.config = json.loads((checkpoint / "config.json").read_text())
        self.vision_config = self.config["vision_config"]
        index = json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
        self.w: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.values())):
            with safe_open(checkpoint / shard, framework="pt") as f:
                for key in f.keys():
                    self.w[key] = f.get_tensor(key).float()
        self.tokenizer = Qwen2Tokenizer.from_pretrained(checkpoint)
        generation = json.loads((checkpoint / "generation_config.json").read_text())
        eos = generation["eos_token_id"]
        self.eos = set(eos if isinstance(eos, list) else [eos])
        # generate(do_sample=False) keeps the file's repetition penalty (a logits processor, not a warper)
        self.repetition_penalty = generation.get("repetition_penalty", 1.0)
        head = self.w["model.embed_tokens.weight"] if self.config.get("tie_word_embeddings") else self.w["lm_head.weight"]
        self.lm_head = head[:len(self.tokenizer)]  # model.resize_token_embeddings(len(tokenizer))

    # --- vision ------------------------------------------------------------------------------------
    def resize(self, frames: np.ndarray) -> np.ndarray:
        """SigLipImageProcessor's resize: PIL bicubic to size x size (uint8 out, as PIL rounds it)."""
        from PIL import Image

        size = self.vision_config["image_size"]
        return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """SigLipImageProcessor: bicubic resize to size x size, rescale 1/255, normalise mean = std = 0.5."""
        pixels = torch.from_numpy(self.resize(frames).astype(np.float32)).permute(0, 3, 1, 2) / 255.0
        return (pixels - 0.5) / 0.5

    def siglip(self, pixels: torch.Tensor) -> torch.Tensor:
        """hidden_states[-1] of the SigLIP tower after `del encoder.layers[-1:]` (no post-layernorm)."""
        c, p = self.vision_config, "model.vision_tower.vision_tower.vision_model."
        w, eps, heads = self.w, c["layer_norm_eps"], c["num_attention_heads"]
        x = F.conv2d(pixels, w[p + "embeddings.patch_embedding.weight"], w[p + "embeddings.patch_embedding.bias"],
                     stride=c["patch_size"])
        x = x.flatten(2).transpose(1, 2) + w[p + "embeddings.position_embedding.weight"][None]
        n, t, d = x.shape
        for i in range(c["num_hidden_layers"] - 1):
            q = f"{p}encoder.layers.{i}."
            h = F.layer_norm(x, (d,), w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"], eps)
            qkv = [F.linear(h, w[f"{q}self_attn.{k}_proj.weight"], w[f"{q}self_attn.{k}_proj.bias"])
                   .view(n, t, heads, d // heads).transpose(1, 2) for k in "qkv"]
            scores = qkv[0] @ qkv[1].transpose(-1, -2) * (d // heads) ** -0.5
            attn = (scores.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(n, t, d)
            x = x + F.linear(attn, w[q + "self_attn.out_proj.weight"], w[q + "self_attn.out_proj.bias"])
            h = F.layer_norm(x, (d,), w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"], eps)
            h = F.linear(h, w[q + "mlp.fc1.weight"], w[q + "mlp.fc1.bias"])
            x = x + F.linear(F.gelu(h, approximate="tanh"), w[q + "mlp.fc2.weight"], w[q + "mlp.fc2.bias"])
        return x

    def video_features(self, frames: np.ndarray) -> torch.Tensor:
        """encode_images (tower + mlp2x_gelu projector), get_2dPool, then the config's newline layout."""
        w, cfg = self.w, self.config
        h = F.linear(self.siglip(self.preprocess(frames)), w["model.mm_projector.0.weight"], w["model.mm_projector.0.bias"])
        feat = F.linear(F.gelu(h), w["model.mm_projector.2.weight"], w["model.mm_projector.2.bias"])
        # get_2dPool(image_feature) with its default stride=2
        side = self.vision_config["image_size"] // self.vision_config["patch_size"]
        frames_n, _, dim = feat.shape
        grid = feat.view(frames_n, side, side, dim).permute(0, 3, 1, 2)
        mode = cfg["mm_spatial_pool_mode"]
        if mode == "average":
            grid = F.avg_pool2d(grid, 2)
        elif mode == "max":
            grid = F.max_pool2d(grid, 2)
        elif mode == "bilinear":
            grid = F.interpolate(grid, size=[math.ceil(side / 2)] * 2, mode="bilinear")
        feat = grid.permute(0, 2, 3, 1).reshape(frames_n, -1, dim)
        newline = w["model.image_newline"]
        position = cfg["mm_newline_position"]
        if position == "grid":  # add_token_per_grid
            s = int(math.sqrt(feat.shape[1]))
            x = feat.view(frames_n, 1, s, s, -1).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
            x = torch.cat((x, newline[:, None, None].expand(*x.shape[:-1], 1)), dim=-1)
            return x.flatten(1, 2).transpose(0, 1)
        if position == "frame":  # add_token_per_frame
            x = feat.permute(2, 0, 1)
            x = torch.cat((x, newline[:, None, None].expand(*x.shape[:-1], 1)), dim=-1)
            return x.permute(1, 2, 0).flatten(0, 1)
        if position == "one_token":
            x = feat.flatten(0, 1)
            return torch.cat((x, newline[None]), dim=0) if "unpad" in cfg["mm_patch_merge_type"] else x
        if position == "no_token":
            return feat.flatten(0, 1)
        raise ValueError(position)

    # --- text and splice ----------------------------------------------------------------------------
    def tokenizer_image_token(self, prompt: str) -> list[int]:
        chunks = [self.tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
        separated = [e for sub in zip(chunks, [[IMAGE_TOKEN_INDEX]] * len(chunks)) for e in sub][:-1]
        return [i for x in separated for i in x]

    def inputs_embeds(self, prompt: str, frames: np.ndarray | None) -> torch.Tensor:
        ids = torch.tensor(self.tokenizer_image_token(prompt))
        embed = self.w["model.embed_tokens.weight"]
        if frames is None:
            return embed[ids]
        at = int(torch.where(ids == IMAGE_TOKEN_INDEX)[0][0])
        return torch.cat([embed[ids[:at]], self.video_features(frames), embed[ids[at + 1:]]])

    # --- Qwen2 decoder ------------------------------------------------------------------------------
    def logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """(L, hidden) input embeddings -> (L, len(tokenizer)) logits; positions 0..L-1, causal."""
        c, w = self.config, self.w
        assert not c.get("use_sliding_window") and not c.get("rope_scaling"), "the reference implements neither"
        heads, kv_heads, eps = c["num_attention_heads"], c["num_key_value_heads"], c["rms_norm_eps"]
        hd = c["hidden_size"] // heads
        length = embeds.shape[0]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

        def rms_norm(x, weight):
            return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

        def rotate(x):  # (heads, L, hd): x * cos + rotate_half(x) * sin
            half = x.shape[-1] // 2
            return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

        causal = torch.full((length, length), float("-inf")).triu(1)
        x = embeds
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"])
            q = F.linear(h, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"]).view(length, heads, hd)
            k = F.linear(h, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"]).view(length, kv_heads, hd)
            v = F.linear(h, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"]).view(length, kv_heads, hd)
            q, k, v = rotate(q.transpose(0, 1)), rotate(k.transpose(0, 1)), v.transpose(0, 1)
            k, v = k.repeat_interleave(heads // kv_heads, 0), v.repeat_interleave(heads // kv_heads, 0)
            attn = ((q @ k.transpose(1, 2)) / math.sqrt(hd) + causal).softmax(-1) @ v
            x = x + F.linear(attn.transpose(0, 1).reshape(length, -1), w[p + "self_attn.o_proj.weight"])
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
            mlp = F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"])
            x = x + F.linear(mlp, w[p + "mlp.down_proj.weight"])
        return F.linear(rms_norm(x, w["model.norm.weight"]), self.lm_head)

    @torch.no_grad()
    def last_logits(self, prompt: str, frames: np.ndarray) -> torch.Tensor:
        return self.logits(self.inputs_embeds(prompt, frames))[-1]

    @torch.no_grad()
    def greedy(self, prompt: str, frames: np.ndarray | None, max_new_tokens: int) -> list[int]:
        return self.greedy_steps(prompt, frames, max_new_tokens)[0]

    @torch.no_grad()
    def greedy_steps(self, prompt: str, frames: np.ndarray | None, max_new_tokens: int,
                     ignore_eos: bool = False) -> tuple[list[int], list[torch.Tensor]]:
        """Greedy decoding without a KV cache (the whole sequence again for every token), as generate
        with do_sample=False: the raw logits of each step, then the file's repetition penalty over the
        tokens generated so far (generate starts from inputs_embeds, so the prompt is not penalised),
        then argmax. Returns (tokens, raw logits of every step)."""
        embeds, out, steps = self.inputs_embeds(prompt, frames), [], []
        for _ in range(max_new_tokens):
            logits = self.logits(embeds)[-1]
            steps.append(logits)
            scores = logits.clone()
            for t in set(out):  # RepetitionPenaltyLogitsProcessor
                penalty = self.repetition_penalty
                scores[t] = scores[t] * penalty if scores[t] < 0 else scores[t] / penalty
            token = int(scores.argmax())
            if token in self.eos and not ignore_eos:
                break
            out.append(token)
            embeds = torch.cat([embeds, self.w["model.embed_tokens.weight"][token][None]])
        return out, steps
