"""Request bodies -> images and back, with every limit checked before the expensive step it guards.

Order matters: the declared length before reading the body, the streamed length while reading it,
the image header (Pillow reads only the header) before decoding pixels, so that a small file that
claims 50000x50000 pixels (a decompression bomb) is refused without allocating them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from msn_deploy.engines.media.images import (
    ImageError,
    ImageHeader,
    ImageTooLarge,
    LoadedImage,
    decode_image,
    read_header,
)
from msn_deploy.msn import MIN_INPUT_SIZE, MSNError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")


class RequestError(MSNError):
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


def check_header(body: bytes, max_pixels: int) -> ImageHeader:
    """The image header alone (no pixels decoded); 400 or 413 when it is not acceptable."""
    try:
        header = read_header(body, "the image", max_pixels)
    except ImageTooLarge as exc:
        raise RequestError(413, f"{exc}: send a smaller image or ask for a larger --max-pixels") from None
    except ImageError as exc:
        raise RequestError(400, f"{exc}; send a still PNG, JPEG, WebP, TIFF or BMP") from None
    if header.format not in ACCEPTED_FORMATS:
        raise RequestError(400, f"{header.format} images are not accepted; send PNG, JPEG, WebP, TIFF or BMP")
    if min(header.width, header.height) < MIN_INPUT_SIZE:
        raise RequestError(400, f"the image is {header.width}x{header.height}; MSN needs at least "
                                f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels")
    return header


def decode(body: bytes, max_pixels: int) -> LoadedImage:
    check_header(body, max_pixels)
    try:
        return decode_image(body, "the uploaded image", max_pixels)
    except ImageError as exc:
        raise RequestError(400, str(exc)) from None
