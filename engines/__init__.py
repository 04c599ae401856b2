"""Run MSN artifacts (checkpoint, ONNX graph, TensorRT plan) behind one interface.

    import engines
    engine = engines.load("msn_x4_fp32.onnx")       # backend chosen by file type and device
    sr = engine(lr_batch)                            # NCHW in [0, 1], numpy or torch

The package has four rooms, each importing only the ones before it: `runtime` (engines, tiling,
backends, `load`), `media` (images, target sizes, video), `jobs` (folder jobs, videos, segments,
Ray) and `serve` (the HTTP service, the Triton Python model); `upscale` is the command.
"""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn.threads  # noqa: F401

# isort: split

from engines.runtime import (
    BACKENDS,
    DEVICES,
    DeviceError,
    Engine,
    EngineError,
    ShapeProfile,
    auto_backend,
    check_device,
    load,
    resolve_backend,
    thread_options,
)
from msn import MSNError

__all__ = ["BACKENDS", "DEVICES", "DeviceError", "Engine", "EngineError", "MSNError",
           "ShapeProfile", "auto_backend", "check_device", "load", "resolve_backend", "thread_options"]
