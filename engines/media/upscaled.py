"""An upscaled image, finished and written like its source: the alpha upscaled with it, both fit
to a target size when one is asked for, encoded in the source's bit depth, channels and ICC
profile. One path for every caller (folder jobs here or on Ray, the HTTP service)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msn_deploy.engines.media.images import LoadedImage, encode_image, upscale_alpha
from msn_deploy.engines.media.target import TargetSize, resize_to


@dataclass
class Upscaled:
    rgb: np.ndarray  # HxWx3 float32, the model's output (reduced to the target)
    alpha: np.ndarray | None
    source: LoadedImage


def finish_upscaled(source: LoadedImage, sr_rgb: np.ndarray, scale: int, target: TargetSize | None = None) -> Upscaled:
    """The model's HxWx3 output of `source`, with the source's alpha upscaled alongside, both
    reduced to fit `target`."""
    alpha = upscale_alpha(source.alpha, scale) if source.alpha is not None else None
    if target is not None:
        size = target.output_size(*source.rgb.shape[:2], scale)
        sr_rgb = resize_to(sr_rgb, *size)
        alpha = resize_to(alpha, *size) if alpha is not None else None
    return Upscaled(sr_rgb, alpha, source)


def encode_upscaled(suffix: str, result: Upscaled) -> bytes:
    """The output file's bytes: the source's bit depth, channels and ICC profile."""
    source = result.source
    return encode_image(suffix, result.rgb, result.alpha, source.grayscale, source.max_value, source.icc_profile)
