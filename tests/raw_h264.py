"""Raw H.264 (Annex B, no container) made for the tests: libx264 through PyAV's `h264` muxer, frame i a flat
grey `grey(i)` so a decoded frame says which one it is; B-frames on, so decode order is not presentation
order. `strip_vui_timing` rewrites the sequence parameter set without its VUI timing info (num_units_in_tick,
time_scale): what a camera or encoder that states no rate writes, and where FFmpeg guesses 25 fps.

Written from the H.264 spec (7.3.2.1.1 seq_parameter_set_data, E.1.1 vui_parameters), sharing no code with
llava_video_app."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np


def grey(i: int) -> int:
    return 16 + (i * 20) % 220


def make_raw_h264(path: Path, *, frames: int = 30, fps: int = 10, gop: int = 12, vui_timing: bool = True) -> Path:
    """`frames` frames at `fps` (stated in the SPS unless vui_timing is False), a keyframe every `gop`."""
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=fps, options={"bf": "2", "g": str(gop), "keyint_min": str(gop),
                                                                     "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), grey(i), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    if not vui_timing:
        path.write_bytes(strip_vui_timing(path.read_bytes()))
    return path


def strip_vui_timing(stream: bytes) -> bytes:
    """The byte stream with every SPS's timing_info_present_flag cleared and its 65 timing bits removed."""
    parts = re.split(b"(\x00\x00\x01)", stream)  # keeps the start codes; a 4-byte one leaves its 0 on the part before
    out = []
    for k, part in enumerate(parts):
        if k > 0 and parts[k - 1] == b"\x00\x00\x01" and part and part[0] & 0x1F == 7:
            trailing = len(part) - len(part.rstrip(b"\x00"))  # the next start code's leading zero byte
            part = _sps_without_timing(part[:len(part) - trailing]) + b"\x00" * trailing
        out.append(part)
    return b"".join(out)


def _sps_without_timing(nal: bytes) -> bytes:
    bits = "".join(f"{b:08b}" for b in _unescape(nal[1:]))
    reader = _Bits(bits)
    profile = reader.u(8)
    reader.u(16)  # constraint flags, level
    reader.ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if reader.ue() == 3:  # chroma_format_idc
            reader.u(1)
        reader.ue(), reader.ue(), reader.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        assert reader.u(1) == 0, "scaling matrices are not handled"
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()
    assert poc_type != 1, "pic_order_cnt_type 1 is not handled"
    reader.ue(), reader.u(1), reader.ue(), reader.ue()  # refs, gaps, width, height
    if not reader.u(1):  # frame_mbs_only_flag
        reader.u(1)
    reader.u(1)  # direct_8x8_inference
    if reader.u(1):  # frame_cropping
        reader.ue(), reader.ue(), reader.ue(), reader.ue()
    assert reader.u(1) == 1, "no VUI: nothing to strip"
    if reader.u(1) and reader.u(8) == 255:  # aspect_ratio_info_present, aspect_ratio_idc: extended SAR
        reader.u(32)
    if reader.u(1):  # overscan_info_present
        reader.u(1)
    if reader.u(1):  # video_signal_type_present
        reader.u(4)
        if reader.u(1):
            reader.u(24)
    if reader.u(1):  # chroma_loc_info_present
        reader.ue(), reader.ue()
    flag = reader.pos
    assert bits[flag] == "1", "the SPS has no timing info"
    rest = bits[flag + 1 + 65:].rstrip("0")[:-1]  # without the old rbsp stop bit and alignment
    new = bits[:flag] + "0" + rest + "1"
    new += "0" * (-len(new) % 8)
    rbsp = bytes(int(new[i:i + 8], 2) for i in range(0, len(new), 8))
    return nal[:1] + _escape(rbsp)


class _Bits:
    def __init__(self, bits: str):
        self.bits, self.pos = bits, 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.pos:self.pos + n], 2)
        self.pos += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos + zeros] == "0":
            zeros += 1
        self.pos += zeros + 1
        return (1 << zeros) - 1 + (self.u(zeros) if zeros else 0)


def _unescape(data: bytes) -> bytes:
    return data.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
