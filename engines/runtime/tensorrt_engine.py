"""TensorRT / TensorRT-RTX engine backend. Needs an NVIDIA GPU and the module the engine was built with.

Before deserialising, the sidecar written by export/build_trt.py is checked against this machine
(TensorRT flavour and exact version, GPU or AOT compute capabilities), so a mismatch names the
rebuild command instead of failing inside TensorRT.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from msn_deploy.engines.runtime.base import DeviceError, Engine, EngineError, ShapeProfile
from msn_deploy.engines.runtime.cuda_graphs import GraphReplay
from msn_deploy.engines.runtime.shape_cache import ShapeCache
from msn_deploy.msn.formats.sidecar import EngineSidecar
from msn_deploy.msn.formats.tensorrt import TensorRT, TensorRTUnavailable, current_gpu, import_tensorrt

log = logging.getLogger(__name__)


def compatibility_problems(sidecar: EngineSidecar, trt: TensorRT | None, gpu: dict | None) -> list[str]:
    """Why this engine cannot run here (empty when it can)."""
    rebuild = f"rebuild with: {sidecar.rebuild_command()}"
    problems = []
    if trt is None or trt.flavour != sidecar.flavour:
        have = trt.label if trt else "no TensorRT module"
        problems.append(f"engine was built with {sidecar.flavour} {sidecar.version}, this machine has {have}; "
                        f"install {sidecar.flavour}=={sidecar.version} or {rebuild}")
    elif trt.version != sidecar.version:
        problems.append(f"engine was built with {trt.flavour} {sidecar.version}, this machine has {trt.version}; "
                        f"{rebuild}")
    if gpu is None:
        problems.append("TensorRT engines need an NVIDIA GPU and none is visible; use the onnxruntime or torch backend")
    else:
        targets = sidecar.compute_capabilities
        built_on = sidecar.gpu
        if targets and gpu["compute_capability"] not in targets:
            problems.append(f"engine targets {targets} but this GPU ({gpu['name']}) is {gpu['compute_capability']}; "
                            f"{rebuild}")
        elif not targets and built_on and built_on["compute_capability"] != gpu["compute_capability"]:
            problems.append(f"engine was built on {built_on.get('name')} ({built_on['compute_capability']}), this GPU "
                            f"is {gpu['name']} ({gpu['compute_capability']}); {rebuild}")
    return problems


class TensorRTEngine(Engine):
    backend = "tensorrt"

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> TensorRTEngine:
        return cls(artifact, **options)  # an engine runs on the GPU it was built for

    def __init__(self, path: str | Path, *, cuda_graph: bool = False, cache_size: int = 4) -> None:
        """cuda_graph=True captures one CUDA graph per input shape on first use and replays it
        (saves the launch overhead of MSN's ~1,000 small kernels at small sizes), keeping the
        `cache_size` most recent shapes."""
        import torch

        path = Path(path)
        sidecar = EngineSidecar.read(path)
        try:
            trt = import_tensorrt(sidecar.flavour)
        except TensorRTUnavailable:
            trt = None
        problems = compatibility_problems(sidecar, trt, current_gpu())
        if problems:
            raise DeviceError(f"cannot run {path}: " + "; ".join(problems))
        self.runtime = trt.module.Runtime(trt.logger())
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineError(f"{trt.label} could not deserialise {path} (corrupt file, or built for another GPU)")
        self.context = self.engine.create_execution_context()
        inp, out = sidecar.tensor("input"), sidecar.tensor("output")
        self.input_name, self.output_name = inp.name, out.name
        self.output_dtype = torch.float16 if out.dtype == "float16" else torch.float32
        prof = sidecar.profile
        super().__init__(sidecar.scale, np.dtype(inp.dtype), ShapeProfile(tuple(prof["min"]), tuple(prof["max"])),
                         sidecar.precision)
        self.flavour = trt.flavour  # tensorrt or tensorrt_rtx; the backend is tensorrt either way
        self.tensor_device = torch.device("cuda", torch.cuda.current_device())
        self.sidecar, self.torch = sidecar, torch
        self.cuda_graph = cuda_graph
        self.cache_size = cache_size
        self._graphs: ShapeCache[GraphReplay] = ShapeCache(cache_size, "CUDA graph")

    def _bind(self, x):
        """Bind input tensor `x` and a new output tensor to the execution context; returns the output.
        TensorRT reads and writes the tensors' device memory directly: no staging buffers."""
        n, c, h, w = x.shape
        y = self.torch.empty((n, c, h * self.scale, w * self.scale), dtype=self.output_dtype, device=x.device)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        actual = tuple(self.context.get_tensor_shape(self.output_name))
        if actual != tuple(y.shape):
            raise EngineError(f"the engine gives {actual} for input {tuple(x.shape)}, but its sidecar promises "
                              f"{tuple(y.shape)} (x{self.scale}); rebuild it from an MSN graph")
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, y.data_ptr())
        return y

    def _enqueue(self) -> None:
        # On the current stream: ordered after the caller's work on the input, and captured when
        # a CUDA graph is being recorded.
        if not self.context.execute_async_v3(self.torch.cuda.current_stream().cuda_stream):
            raise EngineError("TensorRT execution failed (see TensorRT's log above)")

    def _run(self, x):
        y = self._bind(x)
        self._enqueue()
        return y

    def describe(self) -> dict[str, object]:
        return super().describe() | {"flavour": self.flavour, "cuda_graph": self.cuda_graph}

    def _infer(self, batch):
        if not self.cuda_graph:
            return self._run(batch)
        return self._graphs.get(tuple(batch.shape), lambda: GraphReplay(self._run, batch))(batch)
