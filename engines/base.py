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

from engines.tiling import TilePlan, check_tiling, tile_weight
from export import defaults
from export.artifacts import MSNGraph
from msn import MIN_INPUT_SIZE, InputError, MSNError, UsageError
from msn.validation import check_batch, check_values

log = logging.getLogger(__name__)


class EngineError(MSNError):
    """An engine that failed while running (e.g. NaN/Inf output), with what to do about it."""


class DeviceError(EngineError, UsageError):
    """A device, provider or runtime asked for that this machine does not have (exit 2)."""


@dataclass(frozen=True)
class ShapeProfile:
    """Accepted input shapes (N, H, W), inclusive; None in max means unbounded."""

    min: tuple[int, int, int] = (1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
    max: tuple[int | None, int | None, int | None] = (None, None, None)

    @classmethod
    def of_graph(cls, graph: MSNGraph) -> ShapeProfile:
        """What an ONNX graph accepts: its fixed dims, or anything from MSN's minimum up."""
        n, h, w = graph.input_dims
        return cls((n or 1, h or MIN_INPUT_SIZE, w or MIN_INPUT_SIZE), (n, h, w))

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
        self, x: np.ndarray | torch.Tensor, *, tile: int | None = None, overlap: int = defaults.TILE_OVERLAP
    ) -> np.ndarray | torch.Tensor:
        """Upscale an NCHW batch in [0, 1] (numpy or torch, any float dtype); same type back.

        `tile` (LR px) forces tiled inference with that tile size; without it, images larger
        than the profile are tiled at the largest size the profile allows. Raises EngineError
        rather than return NaN or Inf (e.g. from an overflowing FP16 engine).
        """
        as_torch = isinstance(x, torch.Tensor)
        array = x.detach().cpu().numpy() if as_torch else np.asarray(x)
        check_batch(array.shape, np.issubdtype(array.dtype, np.floating), array.dtype)
        check_values(float(array.min()), float(array.max()), bool(np.isfinite(array).all()))
        out_dtype = array.dtype
        _, _, h, w = array.shape
        plan = self._tile_plan(h, w, tile, overlap)
        batch = array.astype(self.io_dtype, copy=False)
        if plan is None:
            out = self._run(batch)
        else:
            out = np.stack([self._infer_tiled(image, plan) for image in batch])
        if not np.isfinite(out).all():
            raise EngineError(f"{self.backend} ({self.precision}) produced NaN or Inf for a {h}x{w} input; "
                              "no output was written. Check the weights, or use an FP32 artifact")
        out = out.astype(out_dtype, copy=False)
        return torch.from_numpy(out).to(x.device) if as_torch else out

    def fits_hw(self, h: int, w: int) -> bool:
        """Whether an h x w image fits the profile (at any batch size it allows)."""
        return self.profile.fits(self.profile.min[0], h, w)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch of any size: split to the profile's maximum batch, pad a short last part
        to its minimum batch (by repeating the last image), and check every output's shape."""
        n, c, h, w = batch.shape
        if not self.fits_hw(h, w):
            raise InputError(f"input {h}x{w} is outside the engine's profile {self.profile}; tile it or rebuild")
        lo, hi = self.profile.min[0], self.profile.max[0] or n
        outs = []
        for start in range(0, n, hi):
            part = batch[start : start + hi]
            k = len(part)
            if k < lo:
                part = np.concatenate([part, np.repeat(part[-1:], lo - k, axis=0)])
            out = self._infer(np.ascontiguousarray(part))
            expected = (len(part), c, h * self.scale, w * self.scale)
            if out.shape != expected:
                raise EngineError(f"{self.backend} returned shape {out.shape} for input {part.shape}, expected "
                                  f"{expected}: the artifact is not an x{self.scale} MSN; re-export it")
            outs.append(out[:k])
        return np.concatenate(outs)

    def _tile_plan(self, h: int, w: int, tile: int | None, overlap: int) -> TilePlan | None:
        max_h, max_w = self.profile.max[1], self.profile.max[2]
        if tile is None:
            if self.fits_hw(h, w):
                return None
            tile = min(v for v in (max_h, max_w) if v is not None)
            overlap = min(overlap, tile // 2 - 1)
            log.info("image %dx%d exceeds profile %s: tiling at %d LR px, overlap %d",
                     h, w, self.profile, tile, overlap)
        elif (max_h is not None and tile > max_h) or (max_w is not None and tile > max_w):
            raise InputError(f"tile {tile} is larger than the engine's profile {self.profile}")
        if tile >= h and tile >= w:
            return None
        check_tiling(tile, overlap)
        plan = TilePlan(h, w, tile, overlap)
        if not all(self.fits_hw(t.h, t.w) for t in plan.tiles()):
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
            patch = image[None, :, t.y : t.y + t.h, t.x : t.x + t.w]
            sr = self._run(patch)[0].astype(np.float32)
            wt = tile_weight(plan, t, s)
            acc[:, t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += sr * wt
            weight[t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += wt
        return (acc / weight).astype(self.io_dtype)
