"""ONNX Runtime backend (CPU; CUDA and TensorRT execution providers where installed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from msn_deploy.engines.runtime.base import DeviceError, Engine, EngineError, ShapeProfile
from msn_deploy.engines.runtime.memory import cpu_peak_bytes_per_pixel
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.threads import check_threads

log = logging.getLogger(__name__)

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        if device not in _PROVIDERS:
            raise DeviceError(f"unknown device {device!r} for ONNX Runtime; use one of {', '.join(_PROVIDERS)}")
        path = Path(path)
        graph = MSNGraph.read(path)
        available = ort.get_available_providers()
        providers = [p for p in _PROVIDERS[device] if p in available]
        if _PROVIDERS[device][0] not in available:
            raise DeviceError(f"ONNX Runtime here has no {_PROVIDERS[device][0]} (has {available}); "
                              "install onnxruntime-gpu")
        options = ort.SessionOptions()
        if check_threads(threads):
            options.intra_op_num_threads = threads
        # Idle ORT worker threads otherwise spin and steal cores from whatever runs next in the
        # process (measured: PyTorch 1.8x slower beside an idle spinning ORT session on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        if device == "cpu":
            # ORT's NCHWc layout pass (level ALL) wraps MSN's many small ops in layout reorders:
            # measured 57 ms (BASIC) vs 74 ms (ALL) at 128x128 on 2 cores.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        if device != "cpu":  # the CUDA providers read and write torch's CUDA tensors in place
            import torch

            self.torch, self.tensor_device = torch, torch.device("cuda", 0)
        super().__init__(graph.scale, np.dtype(graph.io_dtype), ShapeProfile.of_graph(graph), graph.precision)
        self.peak_bytes_per_pixel = cpu_peak_bytes_per_pixel(self.backend, device)
        self.path, self.device, self.metadata = path, device, graph.metadata

    def _infer(self, batch):
        """Runs on the arrays' own memory through I/O binding: no staging copy on either side
        (on a GPU, ONNX Runtime reads and writes the CUDA tensors directly)."""
        n, c, h, w = batch.shape
        shape = (n, c, h * self.scale, w * self.scale)
        if self.tensor_device is None:
            out = np.empty(shape, dtype=batch.dtype)
            where, batch_ptr, out_ptr = ("cpu", 0), batch.ctypes.data, out.ctypes.data
        else:
            out = self.torch.empty(shape, dtype=batch.dtype, device=batch.device)
            where, batch_ptr, out_ptr = ("cuda", batch.device.index or 0), batch.data_ptr(), out.data_ptr()
            self.torch.cuda.current_stream(batch.device).synchronize()  # ONNX Runtime runs on its own stream
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, *where, self.io_dtype.type, list(batch.shape), batch_ptr)
        binding.bind_output(self.output_name, *where, self.io_dtype.type, list(shape), out_ptr)
        try:
            self.session.run_with_iobinding(binding)
        except RuntimeError as exc:
            if "computed output shape" not in str(exc):
                raise
            raise EngineError(f"onnxruntime: the graph does not give {shape} for {tuple(batch.shape)}: "
                              f"the artifact is not an x{self.scale} MSN; re-export it") from None
        if self.tensor_device is not None:
            binding.synchronize_outputs()  # written on ONNX Runtime's stream: done before torch reads it
        return out
