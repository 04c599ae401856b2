"""Image files <-> [0, 1] RGB float arrays, keeping bit depth, grayscale and alpha.

OpenCV reads and writes 8- and 16-bit PNG (and 8-bit JPEG) with channels as stored, which
Pillow does not do for 16-bit colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from msn.files import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    pass


@dataclass
class LoadedImage:
    rgb: np.ndarray  # HxWx3 float32 in [0, 1]
    alpha: np.ndarray | None  # HxW float32 in [0, 1]
    grayscale: bool
    max_value: int  # 255 or 65535


def read_image(path: Path) -> LoadedImage:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageError(f"{path} is not a readable image")
    return image_from_pixels(data, str(path))


def decode_image(encoded: bytes, name: str = "the image") -> LoadedImage:
    """Decode an encoded file held in memory exactly as `read_image` reads one from disk."""
    data = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED) if encoded else None
    if data is None:
        raise ImageError(f"{name} is not a readable image")
    return image_from_pixels(data, name)


def image_from_pixels(data: np.ndarray, name: str) -> LoadedImage:
    """OpenCV's HxW[xC] BGR(A) uint8/uint16 pixels as a LoadedImage."""
    if data.dtype == np.uint8:
        max_value = 255
    elif data.dtype == np.uint16:
        max_value = 65535
    else:
        raise ImageError(f"{name} has {data.dtype} pixels; only 8- and 16-bit images are supported")
    pixels = data.astype(np.float32) / max_value
    if pixels.ndim == 2:
        return LoadedImage(np.repeat(pixels[..., None], 3, axis=2), None, True, max_value)
    channels = pixels.shape[2]
    if channels == 1:
        return LoadedImage(np.repeat(pixels, 3, axis=2), None, True, max_value)
    if channels == 3:
        return LoadedImage(pixels[..., ::-1].copy(), None, False, max_value)
    if channels == 4:
        return LoadedImage(pixels[..., 2::-1].copy(), pixels[..., 3], False, max_value)
    raise ImageError(f"{name} has {channels} channels; expected gray, RGB or RGBA")


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is not what MSN was trained on: resize it bicubically instead."""
    h, w = alpha.shape
    return np.clip(cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def encode_image(suffix: str, rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool, max_value: int) -> bytes:
    """Clamp, quantise to the source bit depth and channels, and encode as `suffix` (.png, .jpg...)."""
    if suffix.lower() in (".jpg", ".jpeg") and (max_value > 255 or alpha is not None):
        raise ImageError("JPEG cannot hold 16-bit or alpha; write PNG instead")
    img = np.clip(rgb, 0.0, 1.0)
    if grayscale:
        img = img.mean(axis=2)
    else:
        img = img[..., ::-1]
        if alpha is not None:
            img = np.concatenate([img, alpha[..., None]], axis=2)
    dtype = np.uint16 if max_value > 255 else np.uint8
    pixels = np.round(img * max_value).astype(dtype)
    encoded_ok, buffer = cv2.imencode(suffix, pixels)
    if not encoded_ok:
        raise ImageError(f"cannot encode {suffix} images")
    return buffer.tobytes()


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool, max_value: int) -> None:
    """Encode as the file name's format and write atomically."""
    try:
        encoded = encode_image(path.suffix, rgb, alpha, grayscale, max_value)
    except ImageError as exc:
        raise ImageError(f"{path.name}: {exc}") from None
    with atomic_output(path) as tmp:
        tmp.write_bytes(encoded)
