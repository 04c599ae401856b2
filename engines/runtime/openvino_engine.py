"""OpenVINO backend: the fastest CPU runtime for MSN's FP32 graph, one compiled model per shape.

OpenVINO's CPU plugin runs a graph compiled for one static shape about twice as fast as the same
graph left dynamic (measured on MSN), and a static compile takes about a second. So the engine
reshapes and compiles once per input shape and keeps the most recent ones in a bounded LRU cache.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.base import DeviceError, Engine, ShapeProfile
from msn_deploy.engines.runtime.shape_cache import ShapeCache
from msn_deploy.msn import UsageError
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.threads import check_threads

log = logging.getLogger(__name__)

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class OpenVINOEngine(Engine):
    backend = "openvino"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        *,
        threads: int | None = None,
        hint: str = "LATENCY",
        cache_size: int = 4,
    ) -> None:
        """`device` is an OpenVINO device name ("cpu", "gpu" for Intel GPUs); `cache_size` bounds
        how many shapes stay compiled; `threads` caps the CPU plugin's inference threads (and
        leaves them unpinned, for engines that share the machine)."""
        import openvino as ov

        self._requests: ShapeCache[object] = ShapeCache(cache_size, "OpenVINO model compiled")
        if hint.upper() not in HINTS:
            raise UsageError(f"hint must be one of {HINTS}, got {hint!r}")
        check_threads(threads)
        path = Path(path)
        graph = MSNGraph.read(path)
        self.core = ov.Core()
        self.ov_device = device.upper()
        if self.ov_device not in self.core.available_devices:
            raise DeviceError(f"OpenVINO has no device {device!r} here (has {self.core.available_devices})")
        self.model = self.core.read_model(str(path))
        self.config: dict[str, object] = {"PERFORMANCE_HINT": hint.upper()}
        if self.ov_device == "CPU":
            # Some CPUs default to bf16 execution, which would break FP32 parity.
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = threads
                # A thread budget means other engines share the machine (workers, replicas). OpenVINO
                # would pin each engine's threads from the first core, so two one-thread engines in
                # two processes ran on one core at half speed each (measured); leave placement to the OS.
                self.config["ENABLE_CPU_PINNING"] = False
        self.cache_size = cache_size
        super().__init__(graph.scale, np.dtype(graph.io_dtype), ShapeProfile.of_graph(graph), graph.precision)
        self.path, self.device, self.metadata = path, device, graph.metadata

    def describe(self) -> dict[str, object]:
        return super().describe() | {"device": self.ov_device, "compiled_shapes": self._requests.shapes()}

    def _request_for(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for `shape`, compiling (and evicting) as needed."""
        return self._requests.get(shape, lambda: self._compile(shape))

    def _compile(self, shape: tuple[int, ...]):
        started = time.perf_counter()
        model = self.model.clone()
        model.reshape({model.input(0).get_any_name(): list(shape)})
        compiled = self.core.compile_model(model, self.ov_device, self.config)
        log.info("openvino: compiled for %s in %.2f s", "x".join(map(str, shape)), time.perf_counter() - started)
        return compiled.create_infer_request()

    def _infer(self, batch: torch.Tensor) -> torch.Tensor:
        request = self._request_for(tuple(batch.shape))
        request.infer({0: batch.numpy()})  # a view of the tensor's memory, not a copy
        # The output tensor is the request's own buffer, reused by the next call: copy it out.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))
