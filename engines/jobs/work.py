"""One image's work, in the three stages a pipeline overlaps: decode, upscale, encode. The same
functions run in this process (engines.jobs.pipeline) and inside Ray workers (engines.jobs.on_ray),
so an image comes out the same wherever it ran."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engines.media.images import LoadedImage, encode_image, upscale_alpha
from engines.media.target import TargetSize, resize_to
from engines.runtime.base import Engine
from engines.runtime.tiling import TILE_OVERLAP


@dataclass(frozen=True)
class ImageOptions:
    """How every image of a job is upscaled and written."""

    tile: int | None = None
    overlap: int = TILE_OVERLAP
    target: TargetSize | None = None
    max_pixels: int = 1 << 28


@dataclass
class Upscaled:
    rgb: np.ndarray  # HxWx3 float32, the model's output (reduced to the target)
    alpha: np.ndarray | None
    source: LoadedImage


def failure(src: Path, exc: Exception) -> str:
    """Why an image failed, naming it once (reading errors name the file already)."""
    text = str(exc)
    return text if str(src) in text else f"{src}: {text}"


def stored_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone, to group a job's images by size; (0, 0) when the
    header cannot be read (the file fails properly when it is decoded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0, 0


def upscale_image(engine: Engine, image: LoadedImage, options: ImageOptions) -> Upscaled:
    x = image.rgb.transpose(2, 0, 1)[None]
    size = options.target.output_size(*x.shape[2:], engine.scale) if options.target is not None else None
    sr = engine(x, tile=options.tile, overlap=options.overlap)[0].transpose(1, 2, 0)
    alpha = upscale_alpha(image.alpha, engine.scale) if image.alpha is not None else None
    if size is not None:
        sr = resize_to(sr, *size)
        alpha = resize_to(alpha, *size) if alpha is not None else None
    return Upscaled(sr, alpha, image)


def encode_upscaled(suffix: str, result: Upscaled) -> bytes:
    """The output file's bytes: the source's bit depth, channels and ICC profile."""
    source = result.source
    return encode_image(suffix, result.rgb, result.alpha, source.grayscale, source.max_value, source.icc_profile)
