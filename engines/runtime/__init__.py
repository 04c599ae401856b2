"""The runtime room: the Engine interface, tiling, the backends (PyTorch, ONNX Runtime, OpenVINO,
TensorRT, ncnn) and their registry, the graph cache and `load`, which opens an artifact on a
`Target` (a backend on a device in a precision)."""

from msn_deploy.engines.runtime.base import DeviceError, Engine, EngineError, ShapeProfile
from msn_deploy.engines.runtime.loading import load, share_of_cores
from msn_deploy.engines.runtime.targets import (
           AUTO,
           BACKEND_CHOICES,
           BACKENDS,
           Backend,
           Target,
           auto_backend,
           backend_named,
)

__all__ = ["AUTO", "BACKENDS", "BACKEND_CHOICES", "Backend", "DeviceError", "Engine", "EngineError",
           "ShapeProfile", "Target", "auto_backend", "backend_named", "load", "share_of_cores"]
