"""engines/media/images.py: what goes in comes out (bit depth, channels, transparency, ICC profile), the
EXIF orientation is applied, and files that cannot or should not be decoded are refused first."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import cv2
import numpy as np
import png
import pytest
from PIL import Image, ImageCms, ImageOps

from msn_deploy.engines.media.images import (
    QUANTISE_ROWS,
    ImageError,
    ImageTooLarge,
    decode_image,
    encode_image,
    read_header,
    read_image,
)
from tests.util import png_claiming

PNG_OF_ONE_PIXEL = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes()

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pil_bytes(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def gradient(h: int = 32, w: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_viewers_do(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = Image.fromarray(gradient())
    encoded = pil_bytes(stored, "PNG", exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(encoded))))
    image = decode_image(encoded)
    assert image.rgb.shape == upright.shape
    assert np.array_equal(np.round(image.rgb * 255).astype(np.uint8), upright)
    written = encode_image(".png", image.rgb, None, False, 255)
    assert Image.open(io.BytesIO(written)).getexif().get(0x0112) is None  # stored upright, never turned twice


@pytest.mark.parametrize("bits", [8, 16])
def test_gray_alpha_stays_gray_alpha(bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    peak = np.iinfo(dtype).max
    rng = np.random.default_rng(0)
    gray, alpha = rng.integers(0, peak, (32, 40), dtype=dtype), rng.integers(0, peak, (32, 40), dtype=dtype)
    out = io.BytesIO()
    png.Writer(40, 32, greyscale=True, alpha=True, bitdepth=bits).write(out, np.stack([gray, alpha], 2).reshape(32, 80))
    image = decode_image(out.getvalue())
    assert image.grayscale and image.alpha is not None and image.max_value == peak
    written = encode_image(".png", image.rgb, image.alpha, image.grayscale, image.max_value)
    _, _, rows, info = png.Reader(bytes=written).read()
    assert info["greyscale"] and info["alpha"] and info["bitdepth"] == bits
    assert np.array_equal(np.vstack([np.asarray(r, dtype) for r in rows]).reshape(32, 40, 2), np.stack([gray, alpha], 2))


@pytest.mark.parametrize("bits", [8, 16])
def test_a_gray_trns_key_becomes_a_real_alpha_channel(bits):
    key = 7 if bits == 8 else 700
    gray = np.full((30, 30), key + 1, np.uint16 if bits == 16 else np.uint8)
    gray[:10] = key
    out = io.BytesIO()
    png.Writer(30, 30, greyscale=True, bitdepth=bits, transparent=key).write(out, gray)
    image = decode_image(out.getvalue())
    assert image.grayscale and image.alpha is not None
    assert (image.alpha[:10] == 0).all() and (image.alpha[10:] == 1).all()
    written = png.Reader(bytes=encode_image(".png", image.rgb, image.alpha, True, image.max_value)).read()[3]
    assert written["greyscale"] and written["alpha"]


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_the_icc_profile_is_kept(fmt, suffix):
    image = decode_image(pil_bytes(Image.fromarray(gradient()), fmt, icc_profile=SRGB))
    assert image.icc_profile == SRGB
    written = encode_image(suffix, image.rgb, None, False, 255, image.icc_profile)
    assert Image.open(io.BytesIO(written)).info.get("icc_profile") == SRGB
    gray_alpha = encode_image(".png", image.rgb, image.rgb[..., 0], True, 255, image.icc_profile)
    assert Image.open(io.BytesIO(gray_alpha)).info.get("icc_profile") == SRGB


def test_rgb_rgba_gray_and_16_bit_still_round_trip():
    rgb = gradient()
    for pixels in (rgb[..., ::-1], np.dstack([rgb[..., ::-1], rgb[..., 0]]), rgb[..., 0],
                   rgb.astype(np.uint16) * 257):
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
        image = decode_image(encoded.tobytes())
        written = encode_image(".png", image.rgb, image.alpha, image.grayscale, image.max_value)
        assert np.array_equal(cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_UNCHANGED), pixels)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_animations_and_multi_page_files_are_refused(fmt):
    frames = [Image.fromarray(gradient()), Image.fromarray(gradient()[::-1].copy())]
    encoded = pil_bytes(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="(animated|multi-page) \\(2 frames\\).*video"):
        decode_image(encoded)


def test_a_huge_header_is_refused_before_decoding():
    """69 bytes claiming 100000x100000: refused from the header alone, fast."""
    bomb = png_claiming(100000, 100000)
    with pytest.raises(ImageTooLarge, match="the limit is"):
        decode_image(bomb)
    with pytest.raises(ImageTooLarge, match="the limit is 1000 "):
        decode_image(pil_bytes(Image.fromarray(gradient()), "PNG"), max_pixels=1000)


def test_our_limit_not_pillows_decides_what_is_too_large():
    """Hardening round 3, #21: a 14000x13000 image under our default limit was refused by Pillow's
    own (179 M pixels), worded as ours, and --max-pixels could not raise it."""
    assert read_header(png_claiming(14000, 13000), "x").width == 14000
    assert read_header(png_claiming(20000, 20000), "x", max_pixels=10**9).height == 20000
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's own, as it was: only set while a header is read


def test_a_header_over_our_limit_but_under_pillows_is_refused_unread():
    """1000x1000 claimed by a few bytes: refused by size (not by a failed decode of its pixels)."""
    small_bomb = png_claiming(1000, 1000)
    with pytest.raises(ImageTooLarge, match="1000x1000 = 1000000 pixels; the limit is 25600"):
        read_header(small_bomb, "the image", max_pixels=25600)


@pytest.mark.parametrize(("data", "message"), [
    (gzip.compress(PNG_OF_ONE_PIXEL), "is gzip-compressed; give the image itself"),
    (b"--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + PNG_OF_ONE_PIXEL,
     "is a multipart form; send the image's raw bytes"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + bytes(64), "is audio or video, not an image"),
    (b"ID3\x04\x00" + bytes(64), "is audio or video, not an image"),
    (b"hello, this is text" * 10, "is not a readable image (PNG, JPEG, BMP, TIFF or WebP"),
])
def test_what_a_file_is_instead_of_an_image_is_said(data, message):
    """Hardening round 3, #22-24: all of these were "not a readable image"."""
    with pytest.raises(ImageError, match=re.escape(message)):
        decode_image(data, "upload")


def test_floating_point_tiffs_name_what_is_supported(tmp_path):
    three = tmp_path / "rgb_float.tiff"
    cv2.imwrite(str(three), np.full((32, 32, 3), 0.5, np.float32))
    with pytest.raises(ImageError, match="convert it to PNG, JPEG, BMP, TIFF or WebP with 8 or 16 bits"):
        read_image(three)
    one = tmp_path / "gray_float.tiff"
    Image.fromarray(np.full((32, 32), 0.5, np.float32), mode="F").save(one)
    with pytest.raises(ImageError, match="float32 pixels; convert it to PNG"):
        read_image(one)


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_a_cmyk_image_comes_out_rgb_without_its_cmyk_profile(fmt):
    """Hardening round 3, #5 and #7: a CMYK TIFF came out RGBA with an all-255 alpha (its inks read as
    BGRA), a CMYK JPEG's RGB output carried the CMYK profile."""
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # full magenta and yellow: red
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # not a CMYK profile
    image = decode_image(pil_bytes(cmyk, fmt, icc_profile=srgb), "cmyk")
    assert image.alpha is None and image.icc_profile is None and not image.grayscale
    red, green, blue = image.rgb[16, 16]
    assert red > 0.9 and green < 0.1 and blue < 0.1


SWOP_CMYK = Path("/usr/share/color/icc/ghostscript/default_cmyk.icc")  # Debian's libgs-common (.ci/setup.sh)


@pytest.mark.skipif(not SWOP_CMYK.is_file(), reason=f"no CMYK ICC profile at {SWOP_CMYK} (Debian: libgs-common)")
@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_a_cmyk_image_goes_through_its_own_cmyk_profile(fmt):
    """Hardening round 4, Q: printed inks through a real press profile (Artifex's SWOP), not Pillow's
    formula, which makes full cyan ink (0, 255, 255) and full black ink (0, 0, 0)."""
    inks = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    inks.paste((0, 0, 0, 255), (8, 0, 16, 8))
    image = decode_image(pil_bytes(inks, fmt, icc_profile=SWOP_CMYK.read_bytes()), "swop")
    assert image.icc_profile is None and image.alpha is None
    cyan, black = np.round(image.rgb[4, 3] * 255), np.round(image.rgb[4, 12] * 255)
    assert np.abs(cyan - (0, 174, 239)).max() <= 3  # SWOP cyan as prepress tools show it in sRGB
    assert 30 <= black.min() and black.max() <= 50  # ink on paper is not pure black


@pytest.mark.parametrize("max_value", [255, 65535])
@pytest.mark.parametrize("grayscale", [False, True])
def test_what_is_written_is_the_clamped_rounded_output_over_many_row_bands(grayscale, max_value):
    """encode_image quantises a band of rows at a time (QUANTISE_ROWS): every band, the last one
    short, gives exactly round(clip(x, 0, 1) * max) with gray averaged after clamping."""
    rng = np.random.default_rng(3)
    height = 2 * QUANTISE_ROWS + 7
    rgb = rng.uniform(-0.2, 1.2, (height, 24, 3)).astype(np.float32)
    alpha = rng.uniform(-0.2, 1.2, (height, 24)).astype(np.float32)
    back = decode_image(encode_image(".png", rgb, alpha, grayscale, max_value))
    clamped = np.clip(rgb, 0, 1)
    colour = clamped.mean(axis=2, keepdims=True) if grayscale else clamped
    assert np.array_equal(back.rgb * max_value, np.broadcast_to(np.round(colour * max_value), back.rgb.shape))
    assert np.array_equal(back.alpha * max_value, np.round(np.clip(alpha, 0, 1) * max_value))


@pytest.mark.parametrize("grayscale", [False, True])
def test_an_8_bit_tiff_keeps_its_icc_profile(grayscale):
    """Hardening round 3, #6: OpenCV writes no ICC profile into TIFF; it was dropped without a word."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    back = decode_image(encode_image(".tiff", rgb, None, grayscale, 255, icc))
    assert back.icc_profile == icc and back.grayscale == grayscale
    expected = np.round(rgb.mean(axis=2, keepdims=True) * 255) / 255 if grayscale else np.round(rgb * 255) / 255
    assert np.abs(back.rgb - expected).max() < 1e-6


def test_a_profile_a_tiff_cannot_hold_here_is_dropped_with_a_word(caplog):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    encode_image(".tiff", np.zeros((8, 8, 3), np.float32), None, False, 65535, icc)
    assert "write PNG (--format png) to keep it" in caplog.text


def _jpeg_claiming(width: int, height: int, pixels: np.ndarray) -> bytes:
    """A real JPEG of `pixels` whose frame header (SOF0) says width x height."""
    encoded = bytearray(cv2.imencode(".jpg", pixels)[1].tobytes())
    sof = encoded.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    encoded[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(encoded)


def test_a_jpeg_holding_less_than_its_header_says_is_refused():
    """Hardening round 3, #13: a header saying 400x400 over 40x40 of data was decoded gray-padded (exit 0)."""
    liar = _jpeg_claiming(400, 400, gradient(40, 40))
    with pytest.raises(ImageError, match="liar.jpg is a damaged JPEG .*premature end of data.*intact copy"):
        decode_image(liar, "liar.jpg")
    cut_off = cv2.imencode(".jpg", gradient(400, 400))[1].tobytes()
    with pytest.raises(ImageError, match="is a damaged JPEG"):
        decode_image(cut_off[:len(cut_off) // 2] + b"\xff\xd9", "cut.jpg")


@pytest.mark.parametrize("gray", [False, True])
def test_jpeg_pixels_are_libjpegs_own(gray):
    """The strict JPEG decoder gives exactly the pixels OpenCV's libjpeg gives (colour and gray)."""
    pixels = gradient(37, 53)
    pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if gray else pixels
    encoded = cv2.imencode(".jpg", pixels)[1].tobytes()
    expected = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    image = decode_image(encoded)
    assert image.grayscale == gray and image.max_value == 255
    assert np.array_equal(image.rgb, np.repeat(expected[..., None], 3, 2) if gray else expected[..., ::-1])
