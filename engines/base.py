"""One calling convention for every backend: batches in, upscaled batches out.

A backend implements `_infer` on a batch that already fits its profile, in its own I/O dtype.
`Engine.__call__` does the rest for the caller: input checks, numpy/torch and float16/float32
conversion, splitting batches larger than the profile, and tiling images that are larger than
the profile (or than `tile`, when the caller sets one to bound memory).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from engines.tiling import DEFAULT_OVERLAP, TilePlan, tile_weight
from msn import MIN_INPUT_SIZE, InputError
from msn.validation import check_batch

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """An artifact that cannot be loaded or run here, with what to do about it."""


@dataclass(frozen=True)
class ShapeProfile:
    """Accepted input shapes (N, H, W), inclusive; None in max means unbounded."""

    min: tuple[int, int, int] = (1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
    max: tuple[int | None, int | None, int | None] = (None, None, None)

    def fits(self, n: int, h: int, w: int) -> bool:
        return all(lo <= v and (hi is None or v <= hi) for v, lo, hi in zip((n, h, w), self.min, self.max))

    def __str__(self) -> str:
        hi = "x".join("?" if v is None else str(v) for v in self.max)
        return f"{'x'.join(map(str, self.min))} .. {hi}"


class Engine(ABC):
    backend: str = ""

    def __init__(self, scale: int, io_dtype: np.dtype, profile: ShapeProfile, precision: str) -> None:
        self.scale = scale
        self.io_dtype = np.dtype(io_dtype)
        self.profile = profile
        self.precision = precision

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one NCHW batch that fits the profile, in `io_dtype`; return NCHW in `io_dtype`."""

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "scale": self.scale,
            "precision": self.precision,
            "io_dtype": str(self.io_dtype),
            "profile": str(self.profile),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.describe().items())})"

    def __call__(
        self, x: np.ndarray | torch.Tensor, *, tile: int | None = None, overlap: int = DEFAULT_OVERLAP
    ) -> np.ndarray | torch.Tensor:
        """Upscale an NCHW batch in [0, 1] (numpy or torch, any float dtype); same type back.

        `tile` (LR px) forces tiled inference with that tile size; without it, images larger
        than the profile are tiled at the largest size the profile allows.
        """
        as_torch = isinstance(x, torch.Tensor)
        array = x.detach().cpu().numpy() if as_torch else np.asarray(x)
        check_batch(array.shape, np.issubdtype(array.dtype, np.floating), array.dtype)
        out_dtype = array.dtype
        n, _, h, w = array.shape
        plan = self._tile_plan(h, w, tile, overlap)
        batch = array.astype(self.io_dtype, copy=False)
        if plan is None:
            out = np.concatenate([self._infer(part) for part in self._batches(batch)])
        else:
            out = np.stack([self._infer_tiled(image, plan) for image in batch])
        out = out.astype(out_dtype, copy=False)
        return torch.from_numpy(out).to(x.device) if as_torch else out

    def _batches(self, batch: np.ndarray) -> list[np.ndarray]:
        n, _, h, w = batch.shape
        if not self.profile.fits(1, h, w):
            raise InputError(f"input {h}x{w} is outside the engine's profile {self.profile}; tile it or rebuild")
        max_n = self.profile.max[0] or n
        if n < self.profile.min[0]:
            raise InputError(f"batch {n} is below the engine's minimum batch {self.profile.min[0]}")
        return [np.ascontiguousarray(batch[i : i + max_n]) for i in range(0, n, max_n)]

    def _tile_plan(self, h: int, w: int, tile: int | None, overlap: int) -> TilePlan | None:
        max_h, max_w = self.profile.max[1], self.profile.max[2]
        if tile is None:
            if self.profile.fits(1, h, w):
                return None
            tile = min(v for v in (max_h, max_w) if v is not None)
            log.info("image %dx%d exceeds profile %s: tiling at %d LR px", h, w, self.profile, tile)
        elif (max_h is not None and tile > max_h) or (max_w is not None and tile > max_w):
            raise InputError(f"tile {tile} is larger than the engine's profile {self.profile}")
        if tile >= h and tile >= w:
            return None
        plan = TilePlan(h, w, tile, min(overlap, tile // 2 - 1))
        if not all(self.profile.fits(1, t.h, t.w) for t in plan.tiles()):
            raise InputError(
                f"input {h}x{w} is outside the engine's profile {self.profile} and {tile}px tiles do not fit it "
                "either; export with dynamic shapes or rebuild the engine with a larger profile"
            )
        return plan

    def _infer_tiled(self, image: np.ndarray, plan: TilePlan) -> np.ndarray:
        s = self.scale
        c = image.shape[0]
        acc = np.zeros((c, plan.height * s, plan.width * s), np.float32)
        weight = np.zeros((plan.height * s, plan.width * s), np.float32)
        for t in plan.tiles():
            patch = np.ascontiguousarray(image[None, :, t.y : t.y + t.h, t.x : t.x + t.w])
            sr = self._infer(patch)[0].astype(np.float32)
            wt = tile_weight(plan, t, s)
            acc[:, t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += sr * wt
            weight[t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += wt
        return (acc / weight).astype(self.io_dtype)
