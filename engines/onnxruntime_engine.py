"""ONNX Runtime backend (CPU; CUDA and TensorRT execution providers where installed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from engines.base import Engine, EngineError, ShapeProfile
from export.metadata import read_metadata
from msn import MIN_INPUT_SIZE

log = logging.getLogger(__name__)

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_ONNX_TO_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}


def _profile_of(model: onnx.ModelProto) -> ShapeProfile:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    n, h, w = fixed[0], fixed[2], fixed[3]
    return ShapeProfile((n or 1, h or MIN_INPUT_SIZE, w or MIN_INPUT_SIZE), (n, h, w))


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception as exc:
            raise EngineError(f"{path} is not a readable ONNX model: {exc}") from exc
        meta = read_metadata(model)
        if meta.get("model_name") != "MSN":
            raise EngineError(f"{path} is not an MSN graph exported by msn-deploy (metadata model_name missing)")
        available = ort.get_available_providers()
        providers = [p for p in _PROVIDERS[device] if p in available]
        if _PROVIDERS[device][0] not in available:
            raise EngineError(f"ONNX Runtime here has no {_PROVIDERS[device][0]} (has {available}); install onnxruntime-gpu")
        options = ort.SessionOptions()
        if threads:
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
        io_type = model.graph.input[0].type.tensor_type.elem_type
        super().__init__(int(meta["scale"]), _ONNX_TO_NUMPY[io_type], _profile_of(model), meta.get("precision", "fp32"))
        self.path, self.device, self.metadata = path, device, meta

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
