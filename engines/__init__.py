"""Run MSN artifacts (checkpoint, ONNX graph, TensorRT plan) behind one interface.

    from msn_deploy import engines
    engine = engines.load("msn_x4_fp32.onnx")       # backend chosen by file type and device
    sr = engine(lr_batch)                            # NCHW in [0, 1], numpy or torch

The package has four rooms, each importing only the ones before it: `runtime` (engines, tiling,
backends, `load`), `media` (images, target sizes, video), `jobs` (folder jobs, videos, segments,
Ray) and `serve` (the HTTP service, the Triton Python model); `upscale` is the command.
"""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

from msn_deploy.engines.runtime import (
    BACKEND_CHOICES,
    BACKENDS,
    DeviceError,
    Engine,
    EngineError,
    ShapeProfile,
    Target,
    load,
)
from msn_deploy.msn import MSNError

__all__ = ["BACKENDS", "BACKEND_CHOICES", "DeviceError", "Engine", "EngineError", "MSNError", "ShapeProfile",
           "Target", "load"]
