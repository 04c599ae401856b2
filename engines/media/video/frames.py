"""A decoded frame as the model sees it, and the conversion to and from RGB with the matrix,
range and tags the stream declares."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hdr10:
    """HDR10's static metadata, either part possibly absent: the mastering display (SMPTE ST 2086)
    and the content light levels (CTA-861.3)."""

    # CIE 1931 xy of red, green, blue and the white point, then min and max luminance (cd/m2).
    display: tuple[float, float, float, float, float, float, float, float, float, float] | None
    light: tuple[int, int] | None  # MaxCLL, MaxFALL (cd/m2)


def side_data_of(frame) -> list:
    """A frame's side data entries: PyAV 18.1.1 iterates `frame.side_data` as a mapping (its
    types), 18.1.0 and earlier as the entries themselves."""
    from av.sidedata.sidedata import Type

    sides = frame.side_data
    return [sides[item] if isinstance(item, Type) else item for item in sides]


def hdr10_of(frame) -> Hdr10 | None:
    """A decoded frame's HDR10 metadata (FFmpeg's side data, from the bitstream or the container)."""
    display = light = None
    for side in side_data_of(frame):
        if side.type.name == "MASTERING_DISPLAY_METADATA":
            # AVMasteringDisplayMetadata: 8 rationals (r, g, b, white: x and y), min and max
            # luminance as rationals, then has_primaries and has_luminance.
            *rationals, has_primaries, has_luminance = struct.unpack("<22i", bytes(side)[:88])
            values = [num / den if den else 0.0 for num, den in zip(rationals[::2], rationals[1::2])]
            display = tuple(values) if has_primaries and has_luminance else None
        elif side.type.name == "CONTENT_LIGHT_LEVEL":
            light = struct.unpack("<2I", bytes(side)[:8])
    return Hdr10(display, light) if display or light else None


@dataclass(frozen=True)
class Colour:
    """What the input declares (read off its first frame), carried to the output."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int
    deep: bool  # more than 8 bits per sample: work in 16-bit RGB
    rotation: int  # display rotation, degrees counter-clockwise
    hdr10: Hdr10 | None = None


def colour_of(frame) -> Colour:
    from av.video.reformatter import ColorRange, Colorspace

    # Unspecified matrices are treated as FFmpeg does (BT.601); unspecified range as limited (MPEG).
    colorspace = int(frame.colorspace) or int(Colorspace.ITU601)
    color_range = int(frame.color_range) or int(ColorRange.MPEG)
    deep = any(c.bits > 8 for c in frame.format.components)
    return Colour(colorspace, color_range, int(frame.color_primaries), int(frame.color_trc), deep,
                   int(frame.rotation or 0), hdr10_of(frame))


def to_rgb(frame, colour: Colour) -> np.ndarray:
    """Decoded frame -> HxWx3 float32 in [0, 1], with the stream's own matrix and range."""
    fmt, peak = ("rgb48le", 65535.0) if colour.deep else ("rgb24", 255.0)
    # One swscale thread: the inference stage owns the cores (and sliced conversion of some
    # formats gave wrong rows under load with the FFmpeg 8.1 that PyAV 18 bundles).
    rgb = frame.reformat(format=fmt, src_colorspace=colour.colorspace, src_color_range=colour.color_range, threads=1)
    return rgb.to_ndarray().astype(np.float32) / peak


def from_rgb(rgb: np.ndarray, colour: Colour, pix_fmt: str):
    """HxWx3 float in [0, 1] -> a frame in the encoder's pixel format, matrix, range and tags."""
    import av

    peak, fmt, dtype = (65535.0, "rgb48le", np.uint16) if colour.deep else (255.0, "rgb24", np.uint8)
    pixels = np.round(np.clip(rgb, 0.0, 1.0) * peak).astype(dtype)
    frame = av.VideoFrame.from_ndarray(pixels, format=fmt)
    # The RGB is in the input's own primaries and transfer (to_rgb converts no gamut): tagged as such,
    # swscale converts the matrix only. Untagged, FFmpeg 8 took it for BT.709 and mapped it into
    # the tags asked for: BT.2020/PQ colours came out ~100 levels off, 10,000x slower.
    frame.color_primaries, frame.color_trc = colour.primaries, colour.trc
    return frame.reformat(format=pix_fmt, dst_colorspace=colour.colorspace, dst_color_range=colour.color_range,
                          threads=1)


@dataclass
class Frame:
    index: int
    pts: int | None
    rgb: np.ndarray
