"""ncnn backend: an ncnn graph (msn-export-ncnn) on ncnn's CPU path or a Vulkan device, the runtime
of the apps that reach AMD, Intel, Apple and NVIDIA GPUs alike (upscayl, Video2X, chaiNNer).

ncnn runs one image at a time, so a batch is run image by image; the graph takes any size from
MSN's minimum up, so tiling is the base class's, as for every backend. `precision="fp16"` turns
on ncnn's fp16 storage and arithmetic, which Vulkan devices have and most CPUs lack (ncnn then
computes in FP32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msn_deploy.engines.runtime.base import DeviceError, Engine, ShapeProfile
from msn_deploy.engines.runtime.memory import cpu_peak_bytes_per_pixel
from msn_deploy.engines.runtime.targets import BACKENDS
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.msn.formats.ncnn_net import NcnnNet, NcnnSettings, NoVulkanDevice
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS, DEFAULT_PRECISION, check_precision
from msn_deploy.msn.threads import check_threads


class NcnnEngine(Engine):
    backend = "ncnn"

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> NcnnEngine:
        return cls(artifact, device, precision=precision or DEFAULT_PRECISION, **options)

    def __init__(self, path: str | Path, device: str = "cpu", *, precision: str = DEFAULT_PRECISION,
                 threads: int | None = None) -> None:
        """`device` is "cpu" or "vulkan" (or "vulkan:N", the N-th Vulkan device ncnn lists);
        `threads` caps ncnn's CPU threads."""
        check_precision(precision, ARTIFACT_PRECISIONS)
        check_threads(threads)
        kind, _, index = device.partition(":")
        if kind not in BACKENDS["ncnn"].devices or (index and (kind == "cpu" or not index.isdigit())):
            raise DeviceError(f"unknown device {device!r} for ncnn; use cpu, vulkan or vulkan:N")
        path = Path(path)
        header = read_artifact_header(path, precision)
        settings = NcnnSettings(vulkan=kind == "vulkan", fp16=precision == "fp16", threads=threads,
                                gpu_index=int(index or 0))
        try:
            self.net = NcnnNet(path, settings)
        except NoVulkanDevice as exc:
            raise DeviceError(str(exc)) from None
        super().__init__(header.scale, np.dtype(np.float32), ShapeProfile(), precision)
        self.peak_bytes_per_pixel = cpu_peak_bytes_per_pixel(self.backend, kind)
        self.path, self.device = path, device

    def describe(self) -> dict[str, object]:
        return super().describe() | {"device": self.device}

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([self.net.run(image) for image in batch])
