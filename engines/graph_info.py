"""What an exported MSN graph declares about itself: scale, I/O dtype, shape profile, precision.

Shared by every backend that runs `.onnx` files, so that they agree on what a graph accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from engines.base import EngineError, ShapeProfile
from export.metadata import read_metadata
from msn import MIN_INPUT_SIZE

_ONNX_TO_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}


@dataclass(frozen=True)
class GraphInfo:
    scale: int
    io_dtype: np.dtype
    profile: ShapeProfile
    precision: str
    metadata: dict[str, str]


def read_graph_info(path: Path) -> GraphInfo:
    """Read an msn-deploy ONNX graph's header (weights are not loaded)."""
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises several types for foreign or truncated files
        raise EngineError(f"{path} is not a readable ONNX model: {exc}") from exc
    meta = read_metadata(model)
    if meta.get("model_name") != "MSN":
        raise EngineError(f"{path} is not an MSN graph exported by msn-deploy (metadata model_name missing)")
    tensor_type = model.graph.input[0].type.tensor_type
    if tensor_type.elem_type not in _ONNX_TO_NUMPY:
        raise EngineError(f"{path} has input type {tensor_type.elem_type}; expected float32 or float16")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    n, h, w = dims[0], dims[2], dims[3]
    profile = ShapeProfile((n or 1, h or MIN_INPUT_SIZE, w or MIN_INPUT_SIZE), (n, h, w))
    return GraphInfo(int(meta["scale"]), np.dtype(_ONNX_TO_NUMPY[tensor_type.elem_type]), profile,
                     meta.get("precision", "fp32"), meta)
