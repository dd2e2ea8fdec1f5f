"""Parity with the authors' code: an independent, literal transcription of LLaVA-NeXT's video path.

The reference below follows llava/model/llava_arch.py (encode_images, get_2dPool,
add_token_per_grid, the one_token branch, the splice in prepare_inputs_labels_for_multimodal),
multimodal_encoder/siglip_encoder.py (SigLipImageProcessor, load_model deleting the last layer,
forward taking hidden_states[-1]) and mm_utils.tokenizer_image_token, in plain torch. It reads the
checkpoint files itself and shares no code with llava_video_app.model.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from llava_video_app.engine import Engine, GenerationSettings
from llava_video_app.config import AppConfig
from llava_video_app.model import LlavaVideoModel
from llava_video_app.prompts import build_prompt

IMAGE_TOKEN_INDEX = -200


class Reference:
    """The authors' steps, transcribed. Names follow theirs."""

    def __init__(self, checkpoint: Path):
        from safetensors import safe_open
        from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer, SiglipVisionConfig, SiglipVisionModel

        self.config = json.loads((checkpoint / "config.json").read_text())
        index = json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
        weights = {}
        for shard in set(index.values()):
            with safe_open(checkpoint / shard, framework="pt") as f:
                for k in f.keys():
                    weights[k] = f.get_tensor(k).float()

        # SigLipVisionTower.load_model: full tower, then `del layers[-1:]`, head = Identity
        vcfg = SiglipVisionConfig(**self.config["vision_config"])
        tower = SiglipVisionModel(vcfg)
        prefix = "model.vision_tower.vision_tower.vision_model."
        tower.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=False)
        del tower.encoder.layers[-1:]
        tower.head = nn.Identity()
        self.vision_tower = tower.eval()
        self.image_size = vcfg.image_size
        self.num_patches_per_side = vcfg.image_size // vcfg.patch_size

        # build_vision_projector, mlp2x_gelu
        c = self.config
        self.mm_projector = nn.Sequential(nn.Linear(c["mm_hidden_size"], c["hidden_size"]), nn.GELU(),
                                          nn.Linear(c["hidden_size"], c["hidden_size"]))
        self.mm_projector.load_state_dict({k[len("model.mm_projector."):]: v for k, v in weights.items()
                                           if k.startswith("model.mm_projector.")})
        self.image_newline = weights["model.image_newline"]

        qwen_keys = set(Qwen2Config().to_dict())
        qcfg = Qwen2Config(**{k: v for k, v in c.items() if k in qwen_keys and k not in ("architectures", "model_type", "torch_dtype")})
        self.lm = Qwen2ForCausalLM.from_pretrained(checkpoint, config=qcfg, dtype=torch.float32).eval()
        self.tokenizer = Qwen2Tokenizer.from_pretrained(checkpoint)

    # SigLipImageProcessor.preprocess
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        from transformers.image_transforms import normalize, rescale, resize
        from transformers.image_utils import ChannelDimension, PILImageResampling

        transforms = [
            partial(resize, size=(self.image_size, self.image_size), resample=PILImageResampling.BICUBIC,
                    data_format=ChannelDimension.FIRST, input_data_format=ChannelDimension.LAST),
            partial(rescale, scale=1 / 255, data_format=ChannelDimension.FIRST, input_data_format=ChannelDimension.FIRST),
            partial(normalize, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), data_format=ChannelDimension.FIRST,
                    input_data_format=ChannelDimension.FIRST),
        ]
        out = []
        for image in frames:
            for t in transforms:
                image = t(image)
            out.append(image)
        return torch.tensor(np.stack(out))

    def encode_images(self, images):
        outs = self.vision_tower(images, output_hidden_states=True)
        image_features = outs.hidden_states[-1]
        return self.mm_projector(image_features)

    def get_2dPool(self, image_feature, stride=2):
        height = width = self.num_patches_per_side
        num_frames, num_tokens, num_dim = image_feature.shape
        image_feature = image_feature.view(num_frames, height, width, -1)
        image_feature = image_feature.permute(0, 3, 1, 2).contiguous()
        mode = self.config["mm_spatial_pool_mode"]
        if mode == "average":
            image_feature = nn.functional.avg_pool2d(image_feature, stride)
        elif mode == "max":
            image_feature = nn.functional.max_pool2d(image_feature, stride)
        elif mode == "bilinear":
            height, width = image_feature.shape[2:]
            scaled_shape = [math.ceil(height / stride), math.ceil(width / stride)]
            image_feature = nn.functional.interpolate(image_feature, size=scaled_shape, mode="bilinear")
        image_feature = image_feature.permute(0, 2, 3, 1)
        return image_feature.view(num_frames, -1, num_dim)

    def add_token_per_grid(self, image_feature):
        resize_h = int(math.sqrt(image_feature.shape[1]))
        num_frames = image_feature.shape[0]
        image_feature = image_feature.view(num_frames, 1, resize_h, resize_h, -1)
        image_feature = image_feature.permute(4, 0, 2, 1, 3).contiguous()
        image_feature = image_feature.flatten(1, 2).flatten(2, 3)
        image_feature = torch.cat((image_feature, self.image_newline[:, None, None].expand(*image_feature.shape[:-1], 1)), dim=-1)
        return image_feature.flatten(1, 2).transpose(0, 1)

    def video_features(self, frames: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            image_feature = self.get_2dPool(self.encode_images(self.preprocess(frames)))
            position = self.config["mm_newline_position"]
            if position == "grid":
                return self.add_token_per_grid(image_feature)
            if position == "one_token":
                image_feature = image_feature.flatten(0, 1)
                return torch.cat((image_feature, self.image_newline[None]), dim=0)
            raise AssertionError(position)

    def tokenizer_image_token(self, prompt):
        prompt_chunks = [self.tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
        input_ids = []
        for x in [e for sub in zip(prompt_chunks, [[IMAGE_TOKEN_INDEX]] * len(prompt_chunks)) for e in sub][:-1]:
            input_ids.extend(x)
        return input_ids

    def inputs_embeds(self, prompt: str, frames: np.ndarray) -> torch.Tensor:
        cur_input_ids = torch.tensor(self.tokenizer_image_token(prompt))
        image_features = self.video_features(frames)
        image_token_indices = [-1] + torch.where(cur_input_ids == IMAGE_TOKEN_INDEX)[0].tolist() + [cur_input_ids.shape[0]]
        noim = [cur_input_ids[image_token_indices[i] + 1:image_token_indices[i + 1]] for i in range(len(image_token_indices) - 1)]
        with torch.no_grad():
            embeds = self.lm.get_input_embeddings()(torch.cat(noim))
        no_im = torch.split(embeds, [x.shape[0] for x in noim], dim=0)
        return torch.cat([no_im[0], image_features, no_im[1]])[None]

    def greedy(self, prompt: str, frames: np.ndarray, max_new_tokens: int) -> str:
        embeds = self.inputs_embeds(prompt, frames)
        eos = [self.tokenizer.convert_tokens_to_ids("<|im_end|>"), self.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
        with torch.no_grad():
            out = self.lm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                   max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[1])
        return self.tokenizer.decode(out[0], skip_special_tokens=True)


@pytest.fixture(scope="module")
def video_frames(sample_video):
    from llava_video_app.video import load_video

    return load_video(sample_video, num_frames=8, size=None)  # native resolution: both sides resize alike


@pytest.mark.parametrize("variant", ["grid", "one_token"])
def test_visual_tokens_and_embeddings_match_the_authors(variant, tiny_checkpoint, tiny_onevision_checkpoint, video_frames):
    checkpoint = tiny_checkpoint if variant == "grid" else tiny_onevision_checkpoint
    ref = Reference(checkpoint)
    ours = LlavaVideoModel.load(str(checkpoint), quant="fp32", device="cpu")

    expected = ref.video_features(video_frames.frames)
    got = ours.encode_video(video_frames.frames)
    assert got.shape == expected.shape
    assert got.shape[0] == ours.layout.visual_tokens(len(video_frames.frames))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    prompt = build_prompt("What happens?", duration=video_frames.duration, timestamps=video_frames.timestamps)
    assert ours.tokenize(prompt) == ref.tokenizer_image_token(prompt)
    torch.testing.assert_close(ours.embed(ours.tokenize(prompt), got), ref.inputs_embeds(prompt, video_frames.frames),
                               rtol=1e-4, atol=1e-5)


def test_greedy_answer_matches_the_authors(tiny_checkpoint, sample_video):
    ref = Reference(tiny_checkpoint)
    model = LlavaVideoModel.load(str(tiny_checkpoint), quant="fp32", device="cpu")
    engine = Engine(model, AppConfig(frames=8, decode_at_model_size=False))
    clip = engine.load_clip(sample_video)
    question = "Please describe this video in detail."
    answer = engine.ask(clip, question, settings=GenerationSettings(max_new_tokens=24))
    prompt = build_prompt(question, duration=clip.duration, timestamps=clip.timestamps)
    assert answer == ref.greedy(prompt, clip.frames, max_new_tokens=24)
    assert engine.last_stats.new_tokens >= 1
