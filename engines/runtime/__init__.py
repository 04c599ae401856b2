"""The runtime room: the Engine interface, tiling, the backends (PyTorch, ONNX Runtime, OpenVINO,
TensorRT), the graph cache and `load`, which picks a backend for an artifact and device."""

from engines.runtime.base import DeviceError, Engine, EngineError, ShapeProfile
from engines.runtime.loading import (
    BACKENDS,
    DEVICES,
    auto_backend,
    check_device,
    load,
    resolve_backend,
    share_of_cores,
    thread_options,
)

__all__ = ["BACKENDS", "DEVICES", "DeviceError", "Engine", "EngineError", "ShapeProfile",
           "auto_backend", "check_device", "load", "resolve_backend", "share_of_cores", "thread_options"]
