"""Frames that repeat the last upscaled one reuse its output (--reuse-repeats)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from msn_deploy.engines.media.video.frames import Frame

log = logging.getLogger(__name__)

REPEAT_BLOCK = 16  # px: the blocks --reuse-repeats LEVELS compares


class Repeats:
    """Which frames repeat the last one the model saw, and the output each one takes.

    Equal means identical, or with `levels`, no REPEAT_BLOCK x REPEAT_BLOCK block differing by
    more than `levels` (of 255) on average: a lossy codec re-encodes a held picture a few levels
    off here and there (measured up to 4.4 at x264 crf 18), while a change that matters (a moving
    mouth in a static shot) moves some block by tens of levels. Frames are compared with the last
    *upscaled* frame, not the one just before, so a slow fade cannot creep past the threshold a
    step at a time."""

    def __init__(self, levels: float | None) -> None:
        self.levels = levels
        self.reference: Frame | None = None  # the last frame the model saw
        self.last_output: np.ndarray | None = None

    def _same(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return False
        if self.levels == 0:
            return np.array_equal(a, b)
        difference = np.abs(a - b).mean(axis=2)
        h, w = difference.shape
        blocks = cv2.resize(difference, (-(-w // REPEAT_BLOCK), -(-h // REPEAT_BLOCK)), interpolation=cv2.INTER_AREA)
        return float(blocks.max()) * 255 <= self.levels

    def fresh_frames(self, batch: list[Frame]) -> list[Frame]:
        """The frames of `batch` the model must see (in order); the others repeat the one before them."""
        if self.levels is None:
            return batch
        fresh = []
        for frame in batch:
            if self.reference is None or not self._same(frame.rgb, self.reference.rgb):
                fresh.append(frame)
                self.reference = frame
        return fresh

    def output_for(self, frame: Frame, upscaled: dict[int, np.ndarray]) -> np.ndarray:
        out = upscaled.get(id(frame))
        if out is None:  # a repeat: the output of the last fresh frame, which came before it
            return self.last_output
        self.last_output = out
        return out


def log_reuse(src: Path, reused: int, frames: int) -> None:
    if reused:
        log.info("%s: %d of %d frames repeated the one before and reused its output", src, reused, frames)
