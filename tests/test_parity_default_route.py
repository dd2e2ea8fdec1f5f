"""The default route (frames scaled to the tower's size by the video decoder while converting to RGB)
against the authors' (decord at the video's own size, then PIL bicubic in SigLIP's image processor).

The two are not bit-identical: measured on a textured 224x160 pan, 8 frames, at the toy tower's 70 px
(`python -m pytest tests/test_parity_default_route.py -s` prints them): mean |pixel difference| 1.13
(PyAV, the default for H.264) and 1.22 (decord), max 45; visual tokens within 0.29 % (relative L2);
last-position logits within 5e-4 (scale 0.54). The bounds below sit above those and below what a
route error gives: nearest-neighbour or non-antialiased scaling, limited-range colours taken as full
range, or a half-pixel shift each move the pixels by 2.0 to 7.0 on average and the visual tokens by
0.54 % to 0.75 %. (PIL bilinear instead of bicubic moves them less than the decoder's own scaling
does, 0.46 px: that one these bounds cannot tell apart.) On the toy model the last-position logits
move less under those errors than under the decoder's scaling, so the logit bound guards against
gross errors only; the pixel and visual-token bounds are the sharp ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_reference import ReferenceLlavaVideo, load_video, qwen_1_5_prompt
from PIL import Image

from llava_video_app.config import AppConfig
from llava_video_app.engine import Engine
from llava_video_app.sample_videos import make_video

FRAMES = 8
QUESTION = "Please describe this video in detail."
PIXEL_BOUND = 1.6  # mean |difference| in 0-255 steps
FEATURE_BOUND = 0.0045  # relative L2 difference of the visual tokens
LOGIT_BOUND = 1e-3  # max |difference| of the last-position logits


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    """Texture everywhere (a pan over a scene), so that scaling errors show; 224x160 -> 70x70."""
    return make_video(tmp_path_factory.mktemp("route") / "pan.mp4", seconds=4, fps=8, size=(224, 160), pattern="pan")


@pytest.fixture(scope="module")
def authors(tiny_checkpoint, pan_video):
    reference = ReferenceLlavaVideo(tiny_checkpoint)
    frames, frame_time, video_time = load_video(pan_video, FRAMES)
    return reference, frames, reference.resize(frames), qwen_1_5_prompt(QUESTION, frame_time, video_time)


def pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def feature_difference(reference: ReferenceLlavaVideo, frames: np.ndarray, expected: torch.Tensor) -> float:
    return float((reference.video_features(frames) - expected).norm() / expected.norm())


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_the_default_route_stays_within_the_bounds_of_the_authors_pixels(tiny_model, authors, pan_video, decoder,
                                                                         monkeypatch):
    monkeypatch.setenv("LLAVA_VIDEO_DECODER", decoder)
    reference, _, resized, prompt = authors
    engine = Engine(tiny_model, AppConfig(frames=FRAMES))
    assert engine.config.decode_at_model_size  # the default
    clip = engine.load_clip(pan_video)
    assert clip.decoder == decoder and clip.frames.shape == resized.shape
    pixels = pixel_difference(clip.frames, resized)
    visual = reference.video_features(resized)
    features = feature_difference(reference, clip.frames, visual)
    expected = reference.last_logits(prompt, resized)
    logits = float((engine.prompt_logits(pan_video, QUESTION) - expected).abs().max())
    print(f"\n{decoder}: mean |pixel difference| {pixels:.3f}, visual tokens {features:.5f} (relative), "
          f"last-position logits {logits:.2e} (scale {float(expected.abs().max()):.2f})")
    assert 0 < pixels <= PIXEL_BOUND
    assert features <= FEATURE_BOUND
    assert logits <= LOGIT_BOUND


def _nearest(frames, size):
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.NEAREST)) for f in frames])


def _no_antialias(frames, size):  # bicubic sampled at the output points only (torch's, no prefilter)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    scaled = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
    return scaled.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def _limited_range(frames, size):  # full-range RGB squeezed into 16-235 (a colour-range mix-up)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
    return np.clip(resized * (219 / 255) + 16, 0, 255).round().astype(np.uint8)


def _half_pixel_shift(frames, size):  # sampling points half an output pixel right and down
    height, width = frames.shape[1:3]
    dx, dy = 0.5 * width / size, 0.5 * height / size
    padded = np.pad(frames, ((0, 0), (0, 2), (0, 2), (0, 0)), mode="edge")
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC,
                                                            box=(dx, dy, width + dx, height + dy))) for f in padded])


@pytest.mark.parametrize("route_error", [_nearest, _no_antialias, _limited_range, _half_pixel_shift],
                         ids=lambda f: f.__name__.strip("_"))
def test_each_route_error_breaks_the_bounds(authors, route_error):
    reference, frames, resized, _ = authors
    wrong = route_error(frames, resized.shape[1])
    assert pixel_difference(wrong, resized) > PIXEL_BOUND
    assert feature_difference(reference, wrong, reference.video_features(resized)) > FEATURE_BOUND
