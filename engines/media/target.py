"""A target output size ("a 3840x2160 result") instead of the model's fixed scale.

The model upscales first; the result is then reduced to fit the target with OpenCV's area
filter (INTER_AREA: each output pixel averages the input pixels it covers). Area averaging is the
right filter for downscaling: it cannot ring (Lanczos overshoots at the sharp edges that SR
produces) and it does not alias (bilinear or bicubic skip pixels when reducing by more than 2x).
A target never needs more than the model's scale: the model's output is the most detail there is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from msn_deploy.msn import UsageError

MIN_TARGET_PX = 16


@dataclass(frozen=True)
class TargetSize:
    """WIDTH x HEIGHT of the wanted output (a picture's size, so width first, as screens are named).
    Without `exact`, the output fits inside it with the input's aspect ratio."""

    width: int
    height: int
    exact: bool = False

    def __post_init__(self) -> None:
        if min(self.width, self.height) < MIN_TARGET_PX:
            raise UsageError(f"target {self.width}x{self.height} is degenerate; give at least "
                             f"{MIN_TARGET_PX}x{MIN_TARGET_PX} (WIDTHxHEIGHT, e.g. 3840x2160)")

    def output_size(self, lr_height: int, lr_width: int, scale: int, even: bool = False) -> tuple[int, int]:
        """(height, width) of the output for an LR image; UsageError when the target needs more
        than the model's scale. `even`: round to even sizes (chroma-subsampled video)."""
        sr_w, sr_h = lr_width * scale, lr_height * scale
        if self.exact:
            width, height = self.width, self.height
        else:
            factor = min(self.width / sr_w, self.height / sr_h, 1.0)
            width, height = max(1, round(sr_w * factor)), max(1, round(sr_h * factor))
            if factor == 1.0 and (self.width > sr_w and self.height > sr_h):
                raise UsageError(self._too_large(lr_width, lr_height, scale))
        if width > sr_w or height > sr_h:
            raise UsageError(self._too_large(lr_width, lr_height, scale))
        if even:
            width, height = max(2, width - width % 2), max(2, height - height % 2)
        return height, width

    def _too_large(self, lr_width: int, lr_height: int, scale: int) -> str:
        return (f"target {self.width}x{self.height}{' (exact)' if self.exact else ''} needs more than the model's "
                f"x{scale} of a {lr_width}x{lr_height} input; the largest is {lr_width * scale}x{lr_height * scale}")


def resize_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxW[xC] float pixels reduced to height x width with area averaging (unchanged when equal)."""
    if pixels.shape[:2] == (height, width):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
