"""Synthetic test videos (PyAV + numpy): for tests, example assets and benchmarks.

    make_video("square.mp4", seconds=6)                              # a moving, colour-changing square
    make_video("pan.mp4", seconds=600, size=(1280, 720), pattern="pan")  # a textured camera pan
    make_video("index.webm", seconds=4, codec="vp9", pattern="index")    # frames encode their index

The "index" pattern draws the frame number as 16 black/white bars, so that `read_index(frame)` can
tell which frame a decoder returned, at any resolution it was scaled to.
"""

from __future__ import annotations

import colorsys
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

PATTERNS = ("moving_square", "pan", "index")
INDEX_BITS = 16  # up to 65,535 frames: 43 minutes at 25 fps

# codec name -> (encoder candidates, encoder options). Options favour encoding speed: these videos are
# made on the fly in tests, so a 70 s 320x240 clip must take a few seconds at most.
_ENCODERS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "h264": (("libx264", "h264"), {"preset": "veryfast", "crf": "20"}),
    "mpeg4": (("mpeg4",), {"qscale": "3"}),
    "vp9": (("libvpx-vp9",), {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0", "row-mt": "1"}),
    # SVT-AV1's presets above 8 garble the "index" pattern's bars (a frame's bits read as a neighbour's)
    "av1": (("libsvtav1", "libaom-av1", "librav1e"), {"preset": "8", "crf": "30"}),
}


def available_codecs() -> list[str]:
    """The codecs of `make_video` that this PyAV/ffmpeg build can encode."""
    return [name for name, (encoders, _) in _ENCODERS.items() if _encoder_for(name) is not None]


def _encoder_for(codec: str) -> str | None:
    for name in _ENCODERS[codec][0]:
        if name in av.codecs_available:
            try:
                if av.Codec(name, "w"):
                    return name
            except Exception:  # present as a decoder only
                continue
    return None


def make_video(path: str | Path, *, seconds: float, fps: float = 25, size: tuple[int, int] = (320, 240),
               codec: str = "h264", pattern: str = "moving_square", gop: int | None = None,
               faststart: bool = False, noise: float = 0.0) -> Path:
    """Write a synthetic video; returns its path. The container follows the file's extension
    (.mp4 for h264/mpeg4/av1, .webm for vp9/av1). `gop` = keyframe interval in frames (encoder
    default if None); `faststart` puts an .mp4's index at the start of the file; `noise` = standard
    deviation of a sensor-like luma noise, new in every frame ("pan" only): without it a pan's inter
    frames cost almost nothing to decode, and decoding benchmarks would measure keyframes only."""
    if codec not in _ENCODERS:
        raise ValueError(f"codec must be one of {', '.join(_ENCODERS)}, not {codec!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    encoder = _encoder_for(codec)
    if encoder is None:
        raise ValueError(f"this PyAV/ffmpeg build has no {codec} encoder")
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    count = max(1, round(seconds * fps))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT-AV1 prints a banner per video otherwise
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(encoder, rate=rate, options=dict(_ENCODERS[codec][1]))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 4_000_000
        if gop is not None:
            stream.codec_context.gop_size = gop
            if encoder == "libx264":  # x264 ignores gop_size < its scenecut logic otherwise; keep it exact
                stream.codec_context.options = {**stream.codec_context.options, "keyint_min": str(gop)}
        for i, yuv in enumerate(_frames(pattern, count, width, height, noise)):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_index(frame: np.ndarray) -> int:
    """The frame number drawn by the "index" pattern, from an (H, W, 3) uint8 frame at any size."""
    height, width = frame.shape[:2]
    gray = frame[height // 4: 3 * height // 4].mean(axis=2)
    value = 0
    for bit in range(INDEX_BITS):
        left, right = bit * width / INDEX_BITS, (bit + 1) * width / INDEX_BITS
        margin = (right - left) / 4  # read the middle of each bar, away from blurred edges
        cell = gray[:, int(left + margin): max(int(right - margin), int(left + margin) + 1)]
        value |= int(cell.mean() > 127) << (INDEX_BITS - 1 - bit)
    return value


def _frames(pattern: str, count: int, width: int, height: int, noise: float = 0.0) -> Iterator[np.ndarray]:
    """yuv420p frames as (H * 3/2, W) arrays (PyAV's layout): made directly in YUV, because an RGB ->
    YUV conversion per frame would cost as much as the encoding itself."""
    if pattern == "index":
        columns = np.arange(width) * INDEX_BITS // width  # which bar each pixel column belongs to
        frame = np.full((height * 3 // 2, width), 128, np.uint8)  # grey chroma
        for i in range(count):
            bits = (i >> (INDEX_BITS - 1 - columns)) & 1
            frame[:height] = np.where(bits, 235, 16).astype(np.uint8)[None, :]  # white / black luma
            yield frame
    elif pattern == "moving_square":
        side = max(2, height // 4) // 2 * 2  # even, so that it covers whole chroma samples
        top = (height - side) // 4 * 2
        background = _yuv420(np.full((height, width, 3), 40, np.uint8))
        for i in range(count):
            t = i / max(1, count - 1)
            x = int(t * (width - side)) // 2 * 2
            hue = colorsys.hsv_to_rgb(t * 0.8, 0.9, 1.0)  # red -> yellow -> green -> blue
            colour = _planes(_yuv420(np.full((2, 2, 3), hue) * 255), 2, 2)
            frame = background.copy()
            for plane, value, scale in zip(_planes(frame, width, height), colour, (1, 2, 2)):
                plane[top // scale:(top + side) // scale, x // scale:(x + side) // scale] = value[0, 0]
            yield frame
    else:  # pan: a wide textured scene seen through a window moving left to right
        scene = _yuv420(_scene(width * 3, height))
        sy, su, sv = _planes(scene, width * 3, height)
        travel = width * 2
        planes = [np.random.default_rng(k).normal(0, noise, (height, width)).round().astype(np.int16)
                  for k in range(7 if noise > 0 else 0)]  # a few precomputed noise planes, cycled
        frame = np.empty((height * 3 // 2, width), np.uint8)
        fy, fu, fv = _planes(frame, width, height)
        for i in range(count):
            x = int(round(i / max(1, count - 1) * travel)) // 2 * 2
            fy[:] = np.clip(sy[:, x:x + width] + planes[i % 7], 0, 255) if planes else sy[:, x:x + width]
            fu[:] = su[:, x // 2:(x + width) // 2]
            fv[:] = sv[:, x // 2:(x + width) // 2]
            yield frame


def _planes(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V views into a (H * 3/2, W) yuv420p array."""
    flat = frame.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (flat[:luma].reshape(height, width), flat[luma:luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma:].reshape(height // 2, width // 2))


def _yuv420(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> yuv420p (H * 3/2, W), BT.601 limited range: what decoders assume by default."""
    height, width = rgb.shape[:2]
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    out = np.empty((height * 3 // 2, width), np.uint8)
    oy, ou, ov = _planes(out, width, height)
    oy[:] = np.clip(np.rint(y), 0, 255)
    for src, dst in ((u, ou), (v, ov)):  # 2x2 average for the half-resolution chroma
        dst[:] = np.clip(np.rint(src.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))), 0, 255)
    return out


def _scene(width: int, height: int) -> np.ndarray:
    """Sky, hills and trees with some fine texture: enough detail to cost what real footage costs to
    decode, with no dependency beyond numpy. Deterministic."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    scene = np.empty((height, width, 3))
    scene[:] = np.stack([90 + 80 * y, 140 + 70 * y, 230 - 40 * y], axis=-1)  # sky: a vertical gradient
    for level, colour in ((0.55, (70, 120, 60)), (0.7, (50, 95, 45)), (0.85, (80, 70, 50))):
        phase = rng.uniform(0, 2 * np.pi, 3)
        ridge = level + 0.06 * np.sin(2 * np.pi * 3 * x + phase[0]) + 0.03 * np.sin(2 * np.pi * 11 * x + phase[1])
        scene[np.broadcast_to(y > ridge, (height, width))] = colour
    for cx in rng.uniform(0, 1, max(4, width // 60)):  # trees: dark trunks and round crowns
        cy, r = rng.uniform(0.55, 0.8), rng.uniform(0.03, 0.07)
        crown = (x - cx) ** 2 * (width / height) ** 2 + (y - cy + r) ** 2 < r ** 2
        scene[crown] = (30, 80 + rng.integers(0, 60), 30)
        trunk = (np.abs(x - cx) * width < max(2, width // 400)) & (y > cy) & (y < cy + 0.08)
        scene[trunk] = (60, 40, 25)
    scene += rng.normal(0, 4, scene.shape)  # fine grain, moving with the scene
    return np.clip(scene, 0, 255).astype(np.uint8)
