"""Image files <-> [0, 1] RGB float arrays: what goes in comes out.

Bit depth (8/16), channels (gray, gray+alpha, RGB, RGBA; a gray PNG's tRNS key becomes a real
alpha channel) and the ICC profile are kept; the EXIF orientation is applied to the pixels, as
every photo viewer does, so the output (which carries no EXIF) displays the same way up.

OpenCV decodes and encodes the pixels (Pillow cannot hold 16-bit colour); Pillow reads the
header first (size, frames, orientation, mode) so that limits are checked before any pixel is
decoded; pypng writes gray+alpha, which OpenCV cannot encode. JPEGs are decoded by simplejpeg
(the same libjpeg-turbo, the same pixels) because it refuses damaged data, which OpenCV pads
with gray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import png
import simplejpeg
from PIL import Image, ImageCms, UnidentifiedImageError

from msn_deploy.msn import UsageError
from msn_deploy.msn.files import atomic_output

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Largest image decoded by default (width x height): 16384 x 16384. Its x4 output is 4.3 G pixels.
MAX_PIXELS = 1 << 28
EXIF_ORIENTATION = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY_ALPHA = 4  # IHDR colour type
QUANTISE_ROWS = 64  # rows quantised at a time when encoding (a band of a 2560-px-wide output is 2 MB in float32)


class ImageError(UsageError):
    """An image file that cannot be read or written as asked."""


class ImageTooLarge(ImageError):
    """An image whose header claims more pixels than the limit (refused before decoding)."""


@dataclass
class LoadedImage:
    rgb: np.ndarray  # HxWx3 float32 in [0, 1], EXIF orientation applied
    alpha: np.ndarray | None  # HxW float32 in [0, 1]
    grayscale: bool
    max_value: int  # 255 or 65535
    icc_profile: bytes | None = None


@dataclass(frozen=True)
class ImageHeader:
    """What Pillow reads without decoding pixels."""

    format: str
    width: int
    height: int
    frames: int
    orientation: int  # EXIF orientation, 1 (as stored) to 8
    gray_alpha: bool
    transparent_gray: int | None  # a gray image's tRNS key
    icc_profile: bytes | None
    cmyk: bool = False  # ink, not light: converted to RGB by its profile (or Pillow's formula)


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow refuses to open images over twice its own limit (179 M pixels) before we can see
    their size: while we read a header, its limit is ours (--max-pixels), which we check ourselves."""
    with _PILLOW_LIMIT:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def read_header(encoded: bytes, name: str, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """The header of an encoded image; ImageError for what cannot or should not be decoded."""
    try:
        with warnings.catch_warnings(), _pillow_limit(max_pixels):
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is below
            with Image.open(io.BytesIO(encoded)) as image:
                width, height = image.size
                if width * height > max_pixels:  # before anything below may read pixel data
                    raise ImageTooLarge(f"{name} is {width}x{height} = {width * height} pixels; the limit is "
                                        f"{max_pixels} (width x height, --max-pixels)")
                frames = getattr(image, "n_frames", 1)
                key = image.info.get("transparency") if image.mode in ("L", "I;16", "I") else None
                header = ImageHeader(image.format or "?", width, height, frames, _orientation(image),
                                     image.mode in ("LA", "La") or _png_colour_type(encoded) == PNG_GRAY_ALPHA,
                                     key if isinstance(key, int) else None, image.info.get("icc_profile"),
                                     image.mode == "CMYK")
    except Image.DecompressionBombError:  # over twice our limit (Pillow's check, set to ours below)
        size = _png_size(encoded)
        claim = f"is {size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else \
            f"claims over {2 * max_pixels} pixels"
        raise ImageTooLarge(f"{name} {claim}; the limit is {max_pixels} (width x height, --max-pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError(f"{name} {unreadable(encoded)}") from None
    if frames > 1:
        kind = "multi-page" if header.format == "TIFF" else "animated"
        raise ImageError(f"{name} is {kind} ({frames} frames); only still images are upscaled: convert it to a "
                         "video (e.g. ffmpeg -i anim.gif anim.mkv) and upscale that, or extract the frame you need")
    return header


SUPPORTED = "PNG, JPEG, BMP, TIFF or WebP with 8 or 16 bits per channel"
# What else a file (or an upload) can be, by its first bytes, and what to do instead.
_NOT_IMAGES = (
    (lambda b: b[:2] == b"\x1f\x8b", "is gzip-compressed; give the image itself (uploads: the raw bytes, no "
                                      "Content-Encoding)"),
    (lambda b: b[:2] == b"--" and b"content-disposition" in b[:1024].lower(),
     "is a multipart form; send the image's raw bytes as the request body (curl --data-binary @photo.png)"),
    (lambda b: b[4:8] == b"ftyp" or b[:4] in (b"\x1aE\xdf\xa3", b"OggS", b"fLaC") or b[:3] == b"ID3"
     or (b[:4] == b"RIFF" and b[8:12] in (b"WAVE", b"AVI ")),
     "is audio or video, not an image (videos are upscaled when their name ends in .mp4, .mkv, .mov, .webm, "
     ".avi or .m4v; audio is not)"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), f"is a TIFF this reader cannot decode (floating-point or "
                                                f"unusual samples?); convert it to {SUPPORTED}"),
)


def unreadable(encoded: bytes) -> str:
    """Why `encoded` is not an image we read, worded for the user (the caller names the file)."""
    why = next((text for test, text in _NOT_IMAGES if test(encoded)), None)
    return why or f"is not a readable image ({SUPPORTED})"


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation from what the header parse already holds: `getexif()` would decode the
    whole image to look for a PNG's eXIf chunk, which the size check must come before."""
    exif = image.info.get("exif")
    if not exif:
        return 1
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        return int(parsed.get(EXIF_ORIENTATION, 1) or 1)
    except (SyntaxError, ValueError, TypeError, OSError, struct.error):  # damaged EXIF: show it as stored
        log.warning("the EXIF block is unreadable; the image is taken as stored")
        return 1


def _png_size(encoded: bytes) -> tuple[int, int] | None:
    # IHDR is the first chunk: signature (8), length (4), type (4), then width and height.
    if encoded[:8] != PNG_SIGNATURE or len(encoded) < 24:
        return None
    return int.from_bytes(encoded[16:20], "big"), int.from_bytes(encoded[20:24], "big")


def _png_colour_type(encoded: bytes) -> int | None:
    # IHDR is the first chunk: signature (8), length (4), type (4), width, height (8), depth (1), colour type.
    return encoded[25] if encoded[:8] == PNG_SIGNATURE and len(encoded) > 25 else None


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    try:
        encoded = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path} cannot be read ({exc.strerror})") from None
    return decode_image(encoded, str(path), max_pixels)


def decode_image(encoded: bytes, name: str = "the image", max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode an encoded file held in memory exactly as `read_image` reads one from disk."""
    if not encoded:
        raise ImageError(f"{name} is empty")
    header = read_header(encoded, name, max_pixels)
    if header.cmyk:
        data, header = _cmyk_as_bgr(encoded, name, header)
    elif header.format == "JPEG":
        data = _jpeg_as_bgr(encoded, name)
    else:
        data = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageError(f"{name} {unreadable(encoded)}")
    if data.shape[:2] != (header.height, header.width):  # a header that lies about the pixels that follow
        raise ImageError(f"{name}: the header says {header.width}x{header.height} but the pixels are "
                         f"{data.shape[1]}x{data.shape[0]}")
    image = image_from_pixels(data, name, header)
    if header.orientation != 1:
        log.info("%s: applied EXIF orientation %d (the output is stored upright)", name, header.orientation)
        image.rgb = orient(image.rgb, header.orientation)
        image.alpha = orient(image.alpha, header.orientation) if image.alpha is not None else None
    return image


def _jpeg_as_bgr(encoded: bytes, name: str) -> np.ndarray:
    """A JPEG's pixels (HxW gray or HxWx3 BGR uint8); ImageError when its data is damaged or
    shorter than its header says (libjpeg would fill the rest with gray and only warn)."""
    try:
        gray = simplejpeg.decode_jpeg_header(encoded)[2] == "Gray"
        return simplejpeg.decode_jpeg(encoded, colorspace="GRAY" if gray else "BGR", strict=True)
    except ValueError as exc:
        raise ImageError(f"{name} is a damaged JPEG ({exc}): its data is cut off or does not match its header; "
                         "use an intact copy") from None


def _cmyk_as_bgr(encoded: bytes, name: str, header: ImageHeader) -> tuple[np.ndarray, ImageHeader]:
    """A CMYK image (JPEG, TIFF) as 8-bit BGR: through its own CMYK profile to sRGB when it has
    one, else by Pillow's formula. The output is RGB, so it carries no CMYK profile (OpenCV would
    have read the four inks as BGRA, or kept the CMYK profile on RGB pixels)."""
    with Image.open(io.BytesIO(encoded)) as image:
        rgb = None
        if header.icc_profile:
            try:
                source = ImageCms.ImageCmsProfile(io.BytesIO(header.icc_profile))
                rgb = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            except (ImageCms.PyCMSError, OSError, ValueError):
                log.warning("%s: its colour profile is not a usable CMYK profile; converted without it", name)
        rgb = rgb if rgb is not None else image.convert("RGB")
    log.info("%s is CMYK: converted to RGB (sRGB); the output carries no CMYK profile", name)
    return np.asarray(rgb)[..., ::-1].copy(), dataclasses.replace(header, icc_profile=None, cmyk=False)


def image_from_pixels(data: np.ndarray, name: str, header: ImageHeader) -> LoadedImage:
    """OpenCV's HxW[xC] BGR(A) uint8/uint16 pixels as a LoadedImage."""
    if data.dtype == np.uint8:
        max_value = 255
    elif data.dtype == np.uint16:
        max_value = 65535
    else:
        raise ImageError(f"{name} has {data.dtype} pixels; convert it to {SUPPORTED}")
    pixels = data.astype(np.float32) / max_value
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        data, pixels = data[..., 0], pixels[..., 0]
    icc = header.icc_profile
    if pixels.ndim == 2:
        alpha = None
        if header.transparent_gray is not None:  # the tRNS key: pixels of that value are transparent
            alpha = (data != header.transparent_gray).astype(np.float32)
        return LoadedImage(np.repeat(pixels[..., None], 3, axis=2), alpha, True, max_value, icc)
    channels = pixels.shape[2]
    if channels == 3:
        return LoadedImage(pixels[..., ::-1].copy(), None, False, max_value, icc)
    if channels == 4:
        rgb = pixels[..., 2::-1].copy()
        return LoadedImage(rgb, pixels[..., 3].copy(), header.gray_alpha, max_value, icc)
    raise ImageError(f"{name} has {channels} channels; expected gray, gray+alpha, RGB or RGBA")


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2-8) to HxW[xC] pixels, as Pillow's ImageOps.exif_transpose does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](pixels)) if orientation in transforms else pixels


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is not what MSN was trained on: resize it bicubically instead."""
    h, w = alpha.shape
    return np.clip(cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def encode_image(suffix: str, rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool, max_value: int,
                 icc_profile: bytes | None = None) -> bytes:
    """Clamp, quantise to the source bit depth and channels, and encode as `suffix` (.png, .jpg...)
    with the ICC profile when one is given."""
    if suffix.lower() in (".jpg", ".jpeg") and (max_value > 255 or alpha is not None):
        raise ImageError("JPEG cannot hold 16-bit or alpha; write PNG instead")
    dtype = np.uint16 if max_value > 255 else np.uint8

    def colour(rows: slice) -> np.ndarray:
        band = np.clip(rgb[rows], 0.0, 1.0)  # before gray averaging
        return band.mean(axis=2) if grayscale else band[..., ::-1]

    def opacity(rows: slice) -> np.ndarray:
        return np.clip(alpha[rows], 0.0, 1.0)

    if grayscale and alpha is not None:
        if suffix.lower() != ".png":
            raise ImageError(f"gray+alpha images are written as PNG, not {suffix}")
        return _gray_alpha_png(_quantised(colour, rgb.shape[0], max_value, dtype),
                               _quantised(opacity, rgb.shape[0], max_value, dtype), icc_profile)
    if alpha is None:
        pixels = _quantised(colour, rgb.shape[0], max_value, dtype)
    else:
        pixels = _quantised(lambda rows: np.concatenate([colour(rows), opacity(rows)[..., None]], axis=2),
                            rgb.shape[0], max_value, dtype)
    if icc_profile and suffix.lower() in (".tif", ".tiff"):  # OpenCV writes no ICC profile into TIFF
        if dtype == np.uint8 and alpha is None:
            return _tiff_with_profile(pixels, icc_profile)
        # Pillow writes no 16-bit colour TIFF, and its alpha is read back premultiplied by OpenCV.
        log.warning("the ICC profile cannot be kept in a 16-bit or alpha TIFF here; write PNG (--format png) "
                    "to keep it")
        icc_profile = None
    try:
        if icc_profile:
            encoded_ok, buffer = cv2.imencodeWithMetadata(suffix, pixels, [cv2.IMAGE_METADATA_ICCP],
                                                          [np.frombuffer(icc_profile, np.uint8)])
        else:
            encoded_ok, buffer = cv2.imencode(suffix, pixels)
    except cv2.error:  # no encoder for the suffix: one image's failure, never the job's
        encoded_ok = False
    if not encoded_ok:
        raise ImageError(f"cannot encode {suffix} images")
    return buffer.tobytes()


def _quantised(band_of: Callable[[slice], np.ndarray], height: int, max_value: int, dtype: type) -> np.ndarray:
    """round(band * max_value) as `dtype`, for the float bands `band_of(rows)` QUANTISE_ROWS rows at a
    time: the float temporaries stay a band's size (a 4000x3000 photo's output is 2.3 GB in float32,
    and a fresh process pays for every new page it touches)."""
    out = None
    for top in range(0, height, QUANTISE_ROWS):
        band = band_of(slice(top, top + QUANTISE_ROWS)) * max_value
        np.round(band, out=band)
        if out is None:
            out = np.empty((height, *band.shape[1:]), dtype)
        out[top : top + len(band)] = band
    return out


def _tiff_with_profile(pixels: np.ndarray, icc_profile: bytes) -> bytes:
    """An 8-bit TIFF (gray or BGR pixels, as OpenCV holds them) with its ICC profile, by Pillow."""
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]  # to RGB
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, "TIFF", icc_profile=icc_profile, compression="tiff_lzw")
    return out.getvalue()


def _gray_alpha_png(gray: np.ndarray, alpha: np.ndarray, icc_profile: bytes | None) -> bytes:
    h, w = gray.shape
    rows = np.stack([gray, alpha], axis=2).reshape(h, w * 2)
    out = io.BytesIO()
    png.Writer(w, h, greyscale=True, alpha=True, bitdepth=16 if gray.dtype == np.uint16 else 8).write(out, rows)
    encoded = out.getvalue()
    if not icc_profile:
        return encoded
    chunks = list(png.Reader(bytes=encoded).chunks())
    iccp = (b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))  # name, NUL, compression method 0
    out = io.BytesIO()
    png.write_chunks(out, [chunks[0], iccp, *chunks[1:]])  # iCCP must precede the image data
    return out.getvalue()


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool, max_value: int,
                icc_profile: bytes | None = None) -> None:
    """Encode as the file name's format and write atomically."""
    try:
        encoded = encode_image(path.suffix, rgb, alpha, grayscale, max_value, icc_profile)
    except ImageError as exc:
        raise ImageError(f"{path.name}: {exc}") from None
    with atomic_output(path) as tmp:
        tmp.write_bytes(encoded)
