"""One calling convention for every backend: batches in, upscaled batches out.

A backend implements `_infer` on a batch that already fits its profile, in its own I/O dtype: a
numpy array for host runtimes (OpenVINO, ONNX Runtime on the CPU, ncnn), a torch tensor on the
engine's `tensor_device` for the others (PyTorch, TensorRT, ONNX Runtime on CUDA). `Engine.__call__`
does the rest for the caller: input checks, float16/float32 conversion, splitting batches larger
than the profile, and tiling images that are larger than the profile (or than `tile`, when the
caller sets one to bound memory).

Everything between the caller and `_infer` runs in the engine's own array library, through the
array API standard (array_api_compat): a host runtime's path never imports torch (about a second
of a command's start), and a torch tensor stays where it is: a CUDA tensor given to a CUDA engine
is checked, padded, tiled and blended on the GPU and comes back as a CUDA tensor; only three
scalars of the input check and one flag of the output check reach the host. numpy in gives numpy
out; a GPU engine copies host input through a reused pinned buffer (engines.runtime.torch_arrays). Host
runtimes see the array's memory without a copy.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from array_api_compat import array_namespace, is_torch_array, to_device
from array_api_compat import device as device_of

from msn_deploy.engines.runtime.memory import BUDGET_ENV, TILED_IMAGE_BYTES_PER_PIXEL, memory_budget, tile_within
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP, TilePlan, check_tiling, tile_weight
from msn_deploy.msn import MIN_INPUT_SIZE, InputError, MSNError, UsageError
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.validation import check_batch, check_values, inputs_checked

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Array = Any  # a numpy array or a torch tensor (the array API has no common type to name)


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


def as_array(x: Array) -> Array:
    """The caller's batch as it is (a torch tensor detached), or as a numpy array; never a copy."""
    return x.detach() if is_torch_array(x) else np.asarray(x)


def is_floating(batch: Array) -> bool:
    return batch.is_floating_point() if is_torch_array(batch) else np.issubdtype(batch.dtype, np.floating)


def check_where_it_lives(batch: Array) -> None:
    """Shape, dtype, range and NaN/Inf checks where the batch lives: one sync of three scalars."""
    check_batch(tuple(batch.shape), is_floating(batch), batch.dtype)
    xp = array_namespace(batch)
    stats = xp.stack([xp.astype(xp.min(batch), xp.float32), xp.astype(xp.max(batch), xp.float32),
                      xp.astype(xp.all(xp.isfinite(batch)), xp.float32)])
    low, high, finite = to_device(stats, "cpu").tolist()
    check_values(low, high, bool(finite))


def contiguous(a: Array) -> Array:
    return a.contiguous() if is_torch_array(a) else np.ascontiguousarray(a)


def to_callers(out: Array, given: Array) -> Array:
    """An engine's output in the caller's array library, dtype and device."""
    if is_torch_array(given):
        import torch  # the caller's own: loaded already

        out = out if is_torch_array(out) else torch.from_numpy(out)
        return out.to(device=given.device, dtype=given.dtype)
    if is_torch_array(out):
        out = out.cpu().numpy()
    return out.astype(given.dtype, copy=False)


class Engine(ABC):
    backend: str = ""
    # None for a host runtime (`_infer` takes and gives numpy arrays); GPU engines and PyTorch set
    # the torch.device where `_infer` takes and gives torch tensors.
    tensor_device: torch.device | None = None
    # Peak host memory of a whole-image run per LR pixel (engines.runtime.memory); None where host
    # memory does not bound the run (GPU engines), and then nothing is tiled for memory.
    peak_bytes_per_pixel: int | None = None

    def __init__(self, scale: int, io_dtype: np.dtype, profile: ShapeProfile, precision: str) -> None:
        self.scale = scale
        self.io_dtype = np.dtype(io_dtype)
        self.profile = profile
        self.precision = precision
        self._staging = None  # engines.runtime.torch_arrays.PinnedStaging, made on first host -> GPU copy

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> Engine:
        """This backend's engine for `artifact` on `device` (engines.runtime.targets.Target.open calls
        it): a graph runtime's precision is the graph's own, so `precision` is the target's to check."""
        return cls(artifact, device=device, **options)

    @abstractmethod
    def _infer(self, batch: Array) -> Array:
        """Run one contiguous NCHW batch that fits the profile, in the I/O dtype: a numpy array, or
        a torch tensor on `tensor_device`; return NCHW of the same kind (in the I/O dtype or
        float32). The result must not be a buffer the engine reuses."""

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

    def __call__(self, x: Array, *, tile: int | None = None, overlap: int = TILE_OVERLAP) -> Array:
        """Upscale an NCHW batch in [0, 1] (numpy or torch, any float dtype); same type, dtype and
        device back.

        `tile` (LR px) forces tiled inference with that tile size; without it, images larger
        than the profile are tiled at the largest size the profile allows. Raises EngineError
        rather than return NaN or Inf (e.g. from an overflowing FP16 engine).
        """
        given = as_array(x)
        check_where_it_lives(given)
        _, _, h, w = given.shape
        plan = self._tile_plan(h, w, tile, overlap)
        batch = self._to_engine(given)
        xp = array_namespace(batch)
        with inputs_checked():
            out = self._run(batch) if plan is None else xp.stack([self._infer_tiled(image, plan) for image in batch])
        if not bool(xp.all(xp.isfinite(out))):
            raise EngineError(f"{self.backend} ({self.precision}) produced NaN or Inf for a {h}x{w} input; "
                              "no output was written. Check the weights, or use an FP32 artifact")
        return to_callers(out, given)

    def _to_engine(self, batch: Array) -> Array:
        """The batch where `_infer` takes it, in the I/O dtype (no copy when it is there already)."""
        if self.tensor_device is None and not is_torch_array(batch):
            return np.ascontiguousarray(batch, dtype=self.io_dtype)
        from msn_deploy.engines.runtime.torch_arrays import PinnedStaging, to_host_array, to_torch_device

        if self.tensor_device is None:
            return np.ascontiguousarray(to_host_array(batch), dtype=self.io_dtype)
        if self._staging is None:
            self._staging = PinnedStaging()
        return to_torch_device(batch, self.tensor_device, self.io_dtype, self._staging)

    def fits_hw(self, h: int, w: int) -> bool:
        """Whether an h x w image fits the profile (at any batch size it allows)."""
        return self.profile.fits(self.profile.min[0], h, w)

    def _run(self, batch: Array) -> Array:
        """Run a batch of any size: split to the profile's maximum batch (and to what the memory
        budget allows), pad a short last part to its minimum batch (by repeating the last image),
        and check every output's shape."""
        xp = array_namespace(batch)
        n, c, h, w = batch.shape
        if not self.fits_hw(h, w):
            raise InputError(f"input {h}x{w} is outside the engine's profile {self.profile}; tile it or rebuild")
        lo, hi = self.profile.min[0], self.profile.max[0] or n
        within = self._images_within_budget(h, w) if n > 1 else None
        if within is not None and within < hi:
            hi = max(within, lo, 1)
            log.info("%s: %d images of %dx%d at once would exceed the memory budget: %d at a time",
                     self.backend, n, h, w, hi)
        outs = []
        for start in range(0, n, hi):
            part = batch[start : start + hi]
            k = part.shape[0]
            if k < lo:
                part = xp.concat([part, xp.broadcast_to(part[-1:], (lo - k, c, h, w))])
            out = self._infer(contiguous(part))
            expected = (part.shape[0], c, h * self.scale, w * self.scale)
            if tuple(out.shape) != expected:
                raise EngineError(f"{self.backend} returned shape {tuple(out.shape)} for input {tuple(part.shape)}, "
                                  f"expected {expected}: the artifact is not an x{self.scale} MSN; re-export it")
            outs.append(out[:k])
        return outs[0] if len(outs) == 1 else xp.concat(outs)

    def _tile_plan(self, h: int, w: int, tile: int | None, overlap: int) -> TilePlan | None:
        max_h, max_w = self.profile.max[1], self.profile.max[2]
        if tile is None and self.fits_hw(h, w):
            tile = self._tile_for_memory(h, w)
            if tile is None:
                return None
            overlap = min(overlap, tile // 2 - 1)
        elif tile is None:
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

    def _budget(self) -> tuple[int, str] | None:
        """The memory budget (engines.runtime.memory) and its source; None when nothing bounds this
        engine (a GPU engine) or no budget is known."""
        return memory_budget() if self.peak_bytes_per_pixel else None

    def _images_within_budget(self, h: int, w: int) -> int | None:
        """How many h x w images one run may take within the memory budget: 0 when not even one
        fits; None when nothing bounds it."""
        budget = self._budget()
        return None if budget is None else budget[0] // (h * w * self.peak_bytes_per_pixel)

    def _tile_for_memory(self, h: int, w: int) -> int | None:
        """The tile size that keeps one h x w image within the memory budget, or None when it fits whole."""
        known = self._budget()
        if known is None or h * w * self.peak_bytes_per_pixel <= known[0]:
            return None
        budget, source = known
        tile = tile_within(budget, self.peak_bytes_per_pixel, h, w)
        if h * w * TILED_IMAGE_BYTES_PER_PIXEL > budget:
            log.warning("%s: even tiled, a %dx%d image holds about %.1f GB whole (its output and buffers), over the "
                        "memory budget of %.1f GB (%s)", self.backend, h, w,
                        h * w * TILED_IMAGE_BYTES_PER_PIXEL / 2**30, budget / 2**30, source)
        if tile >= h and tile >= w:
            return None
        log.info("%s: a %dx%d image needs about %.1f GB whole, over the memory budget of %.1f GB (%s): "
                 "tiling at %d LR px (tiles see MSN's whole-image statistics slightly differently: 50-60 dB PSNR "
                 "vs the whole image, docs/BENCHMARKS.md; %s sets the budget in MB)",
                 self.backend, h, w, h * w * self.peak_bytes_per_pixel / 2**30, budget / 2**30, source, tile,
                 BUDGET_ENV)
        return tile

    def _infer_tiled(self, image: Array, plan: TilePlan) -> Array:
        """One CHW image through overlapping tiles, blended in float32 where the image lives."""
        xp, device = array_namespace(image), device_of(image)
        s, c = self.scale, image.shape[0]
        acc = xp.zeros((c, plan.height * s, plan.width * s), dtype=xp.float32, device=device)
        weight = xp.zeros((plan.height * s, plan.width * s), dtype=xp.float32, device=device)
        for t in plan.tiles():
            sr = xp.astype(self._run(image[None, :, t.y : t.y + t.h, t.x : t.x + t.w])[0], xp.float32)
            wt = xp.asarray(tile_weight(plan, t, s), device=device)
            acc[:, t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += sr * wt
            weight[t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += wt
        acc /= weight  # in place: the output has scale^2 times the input's pixels
        return xp.astype(acc, getattr(xp, self.io_dtype.name), copy=False)
