"""Request bodies -> images and back, with every limit checked before the expensive step it guards.

Order matters: the declared length before reading the body, the streamed length while reading it,
the image header (Pillow reads only the header) before decoding pixels, so that a small file that
claims 50000x50000 pixels (a decompression bomb) is refused without allocating them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from engines.images import ImageError, LoadedImage, decode_image, encode_image
from msn import MIN_INPUT_SIZE

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")


class RequestError(Exception):
    """A client mistake or an overload: answered with `status` and a JSON `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # crosses from model replica to ingress
        return RequestError, (self.status, self.message)


async def read_body(content_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refusing it as soon as it is known to exceed `limit` bytes."""
    too_large = RequestError(413, f"the upload is larger than the server's limit of {limit / 2**20:.1f} MiB")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError(400, f"Content-Length {content_length!r} is not a number") from None
        if declared > limit:
            raise too_large
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:  # chunked uploads declare no length
            raise too_large
    if not body:
        raise RequestError(400, "the request has no body; send an encoded image (PNG, JPEG, WebP, TIFF or BMP)")
    return bytes(body)


def check_header(body: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the image header alone; 400 or 413 when they are not acceptable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is below
            with Image.open(io.BytesIO(body)) as header:
                fmt, (width, height) = header.format, header.size
    except Image.DecompressionBombError:  # over twice Pillow's own limit, far above any sane one of ours
        raise RequestError(413, f"the image has over {2 * Image.MAX_IMAGE_PIXELS} pixels; the limit is "
                                f"{max_pixels} (width x height)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(400, "the body is not a readable image; send PNG, JPEG, WebP, TIFF or BMP") from None
    if fmt not in ACCEPTED_FORMATS:
        raise RequestError(400, f"{fmt} images are not accepted; send PNG, JPEG, WebP, TIFF or BMP")
    if width * height > max_pixels:
        raise RequestError(413, f"the image is {width}x{height} = {width * height} pixels; the limit is "
                                f"{max_pixels}: send a smaller image or ask for a larger --max-pixels")
    if min(width, height) < MIN_INPUT_SIZE:
        raise RequestError(400, f"the image is {width}x{height}; MSN needs at least "
                                f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels")
    return width, height


def decode(body: bytes, max_pixels: int) -> LoadedImage:
    width, height = check_header(body, max_pixels)
    try:
        image = decode_image(body, "the uploaded image")
    except ImageError as exc:
        raise RequestError(400, str(exc)) from None
    if image.rgb.shape[:2] != (height, width):  # a header that lies about the pixels that follow
        raise RequestError(400, f"the image header says {width}x{height} but the pixels are "
                                f"{image.rgb.shape[1]}x{image.rgb.shape[0]}")
    return image


def encode_png(image: LoadedImage, sr_rgb: np.ndarray, sr_alpha: np.ndarray | None) -> bytes:
    """The upscaled image as PNG with the upload's bit depth and channels (as the image CLI writes)."""
    return encode_image(".png", sr_rgb, sr_alpha, image.grayscale, image.max_value)
