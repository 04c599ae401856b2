"""Run MSN artifacts (checkpoint, ONNX graph, TensorRT plan) behind one interface.

    import engines
    engine = engines.load("msn_x4_fp32.onnx")       # backend chosen by file type
    sr = engine(lr_batch)                            # NCHW in [0, 1], numpy or torch
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engines.base import DeviceError, Engine, EngineError, ShapeProfile
from msn import MissingFileError, MSNError, UsageError

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")


def auto_backend(suffix: str, device: str) -> str:
    """The backend `load` picks for a file type and device.

    `.onnx` on a CPU goes to OpenVINO when it is installed: measured 1.3-1.5x faster than ONNX
    Runtime on MSN's FP32 graph (docs/BENCHMARKS.md), at the price of a ~1 s compile per new input
    shape, which the engine caches. Other devices go to ONNX Runtime (CUDA / TensorRT providers).
    """
    if suffix in (".plan", ".engine"):
        return "tensorrt"
    if suffix != ".onnx":
        return "torch"
    if device == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "onnxruntime"


def resolve_backend(backend: str, artifact: str | Path, device: str) -> str:
    """The backend `load` runs `artifact` on: `backend`, or for "auto" the one `auto_backend` picks."""
    return auto_backend(Path(artifact).suffix.lower(), device) if backend == "auto" else backend


def thread_options(backend: str, threads: int | None) -> dict[str, int]:
    """The `load` option that gives an engine a thread budget, for the backends that take one
    (OpenVINO, ONNX Runtime); empty for the others or without a budget."""
    return {"threads": threads} if threads and backend in ("openvino", "onnxruntime") else {}


def load(artifact: str | Path, backend: str = "auto", *, device: str = "cpu", precision: str | None = None,
         **options) -> Engine:
    """Load a checkpoint (.pth or known name), ONNX graph (.onnx) or engine (.plan/.engine).

    `precision` ("fp32" or "fp16") picks the checkpoint's precision (default fp32); a graph or
    engine has the precision it was exported with, and asking it for another is a UsageError.

    `options` go to the backend: e.g. `threads`, `hint`, `cache_size` for OpenVINO; `threads` for
    ONNX Runtime; `cuda_graphs`, `compile`, `channels_last`, `cache_size` for torch (on a CUDA device
    `precision="fp16"` is the fastest path: see engines.torch_engine); `cuda_graph` for TensorRT.
    Raises UsageError subclasses for unknown backends, missing or foreign files and devices this
    machine lacks."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    path = Path(artifact)
    backend = resolve_backend(backend, path, device)
    if backend == "torch":
        from engines.torch_engine import TorchEngine

        return TorchEngine(str(artifact), device=device, precision=precision or "fp32", **options)
    engine = _load_artifact(path, backend, device, options)
    if precision is not None and precision != engine.precision:
        raise UsageError(f"{path} is an {engine.precision.upper()} artifact, not {precision.upper()}; precision "
                         "applies to checkpoints (export an FP16 graph with python export/to_onnx.py --fp16)")
    return engine


def _load_artifact(path: Path, backend: str, device: str, options: dict) -> Engine:
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    if backend == "onnxruntime":
        from engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, **options)
    if backend == "openvino":
        from engines.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(path, device=device, **options)
    from engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(path, **options)


__all__ = ["BACKENDS", "DeviceError", "Engine", "EngineError", "MSNError", "ShapeProfile", "auto_backend", "load",
           "resolve_backend", "thread_options"]
