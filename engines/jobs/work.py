"""One image's work, in the three stages a pipeline overlaps: decode, upscale, encode. The same
functions run in this process (engines.jobs.pipeline) and inside Ray workers (engines.jobs.on_ray),
so an image comes out the same wherever it ran."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from msn_deploy.engines.media.images import LoadedImage
from msn_deploy.engines.media.target import TargetSize
from msn_deploy.engines.media.upscaled import Upscaled, finish_upscaled
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP


@dataclass(frozen=True)
class ImageOptions:
    """How every image of a job is upscaled and written."""

    tile: int | None = None
    overlap: int = TILE_OVERLAP
    target: TargetSize | None = None
    max_pixels: int = 1 << 28


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
    sr = engine(image.rgb.transpose(2, 0, 1)[None], tile=options.tile, overlap=options.overlap)[0]
    return finish_upscaled(image, sr.transpose(1, 2, 0), engine.scale, options.target)
