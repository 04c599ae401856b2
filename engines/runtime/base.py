"""One calling convention for every backend: batches in, upscaled batches out.

A backend implements `_infer` on a torch batch that already fits its profile, in its own I/O
dtype, on its own device (`tensor_device`: the CPU for host runtimes, a CUDA device for GPU ones).
`Engine.__call__` does the rest for the caller: input checks, float16/float32 conversion,
splitting batches larger than the profile, and tiling images that are larger than the profile
(or than `tile`, when the caller sets one to bound memory).

Everything between the caller and `_infer` runs in torch on the engine's device, so a torch
tensor stays where it is: a CUDA tensor given to a CUDA engine is checked, padded, tiled and
blended on the GPU and comes back as a CUDA tensor; only three scalars of the input check and one
flag of the output check reach the host. numpy in gives numpy out; a GPU engine copies host
input through a reused pinned buffer. Host runtimes (OpenVINO, ONNX Runtime on CPU) see the
tensor's memory without a copy.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.tiling import TILE_OVERLAP, TilePlan, check_tiling, tile_weight
from msn_deploy.msn import MIN_INPUT_SIZE, InputError, MSNError, UsageError
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.validation import check_batch, check_values, inputs_checked

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


TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}


def as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The caller's batch as a torch tensor, sharing memory (numpy arrays are never written to)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    array = np.asarray(x)
    check_batch(array.shape, np.issubdtype(array.dtype, np.floating), array.dtype)
    with warnings.catch_warnings():  # read-only arrays (e.g. np.broadcast_to) are only read here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(array)


def check_on_device(batch: torch.Tensor) -> None:
    """Shape, dtype, range and NaN/Inf checks where the batch lives: one sync of three scalars."""
    check_batch(tuple(batch.shape), batch.is_floating_point(), batch.dtype)
    low, high, finite = torch.stack((batch.amin().float(), batch.amax().float(),
                                     torch.isfinite(batch).all().float())).tolist()
    check_values(low, high, bool(finite))


class PinnedStaging:
    """One reused page-locked host buffer per dtype for host -> GPU copies (grown, never shrunk):
    pinned memory copies at full PCIe speed, asynchronously, without the driver's extra staging."""

    def __init__(self) -> None:
        self._buffers: dict[torch.dtype, tuple[torch.Tensor, torch.cuda.Event]] = {}

    def to_device(self, batch: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        buffer, copied = self._buffers.get(dtype, (None, None))
        if buffer is None or buffer.numel() < batch.numel():
            buffer, copied = torch.empty(batch.numel(), dtype=dtype, pin_memory=True), torch.cuda.Event()
            self._buffers[dtype] = (buffer, copied)
        else:
            copied.synchronize()  # the previous copy out of this buffer has finished: refill it
        staged = buffer[: batch.numel()].view(batch.shape)
        staged.copy_(batch)
        out = staged.to(device, non_blocking=True)
        copied.record(torch.cuda.current_stream(device))
        return out


class Engine(ABC):
    backend: str = ""
    tensor_device: torch.device = torch.device("cpu")  # where `_infer` takes and gives its tensors

    def __init__(self, scale: int, io_dtype: np.dtype, profile: ShapeProfile, precision: str) -> None:
        self.scale = scale
        self.io_dtype = np.dtype(io_dtype)
        self.torch_io_dtype = TORCH_DTYPES[self.io_dtype]
        self.profile = profile
        self.precision = precision
        self._staging = PinnedStaging()

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> Engine:
        """This backend's engine for `artifact` on `device` (engines.runtime.targets.Target.open calls
        it): a graph runtime's precision is the graph's own, so `precision` is the target's to check."""
        return cls(artifact, device=device, **options)

    @abstractmethod
    def _infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Run one contiguous NCHW batch that fits the profile, in `torch_io_dtype` on
        `tensor_device`; return NCHW on the same device (in the I/O dtype or float32). The result
        must not be a buffer the engine reuses."""

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
        self, x: np.ndarray | torch.Tensor, *, tile: int | None = None, overlap: int = TILE_OVERLAP
    ) -> np.ndarray | torch.Tensor:
        """Upscale an NCHW batch in [0, 1] (numpy or torch, any float dtype); same type, dtype and
        device back.

        `tile` (LR px) forces tiled inference with that tile size; without it, images larger
        than the profile are tiled at the largest size the profile allows. Raises EngineError
        rather than return NaN or Inf (e.g. from an overflowing FP16 engine).
        """
        as_numpy = not isinstance(x, torch.Tensor)
        given = as_tensor(x)
        check_on_device(given)
        _, _, h, w = given.shape
        plan = self._tile_plan(h, w, tile, overlap)
        batch = self._to_engine(given)
        with torch.no_grad(), inputs_checked():
            out = self._run(batch) if plan is None else torch.stack([self._infer_tiled(image, plan) for image in batch])
            if not bool(torch.isfinite(out).all()):
                raise EngineError(f"{self.backend} ({self.precision}) produced NaN or Inf for a {h}x{w} input; "
                                  "no output was written. Check the weights, or use an FP32 artifact")
            out = out.to(given.dtype)
        if as_numpy:
            return out.cpu().numpy()
        return out.to(given.device)

    def _to_engine(self, batch: torch.Tensor) -> torch.Tensor:
        """The batch on the engine's device in its I/O dtype (no copy when it is already there)."""
        device = self.tensor_device
        if batch.device.type == "cpu" and device.type == "cuda":
            return self._staging.to_device(batch, device, self.torch_io_dtype)
        return batch.to(device=device, dtype=self.torch_io_dtype).contiguous()

    def fits_hw(self, h: int, w: int) -> bool:
        """Whether an h x w image fits the profile (at any batch size it allows)."""
        return self.profile.fits(self.profile.min[0], h, w)

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
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
                part = torch.cat([part, part[-1:].expand(lo - k, -1, -1, -1)])
            out = self._infer(part.contiguous())
            expected = (len(part), c, h * self.scale, w * self.scale)
            if tuple(out.shape) != expected:
                raise EngineError(f"{self.backend} returned shape {tuple(out.shape)} for input {tuple(part.shape)}, "
                                  f"expected {expected}: the artifact is not an x{self.scale} MSN; re-export it")
            outs.append(out[:k])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

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

    def _infer_tiled(self, image: torch.Tensor, plan: TilePlan) -> torch.Tensor:
        """One CHW image through overlapping tiles, blended in float32 on the engine's device."""
        s, device = self.scale, image.device
        c = image.shape[0]
        acc = torch.zeros((c, plan.height * s, plan.width * s), dtype=torch.float32, device=device)
        weight = torch.zeros((plan.height * s, plan.width * s), dtype=torch.float32, device=device)
        for t in plan.tiles():
            sr = self._run(image[None, :, t.y : t.y + t.h, t.x : t.x + t.w])[0].float()
            wt = torch.from_numpy(tile_weight(plan, t, s)).to(device)
            acc[:, t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += sr * wt
            weight[t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s] += wt
        return (acc / weight).to(self.torch_io_dtype)
