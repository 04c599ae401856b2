"""Run MSN artifacts (checkpoint, ONNX graph, TensorRT plan) behind one interface.

    import engines
    engine = engines.load("msn_x4_fp32.onnx")       # backend chosen by file type
    sr = engine(lr_batch)                            # NCHW in [0, 1], numpy or torch
"""

from __future__ import annotations

from pathlib import Path

from engines.base import Engine, EngineError, ShapeProfile

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def load(artifact: str | Path, backend: str = "auto", *, device: str = "cpu", **options) -> Engine:
    """Load a checkpoint (.pth or known name), ONNX graph (.onnx) or engine (.plan/.engine)."""
    path = Path(artifact)
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}.get(suffix, "torch")
    if backend == "torch":
        from engines.torch_engine import TorchEngine

        return TorchEngine(str(artifact), device=device, **options)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if backend == "onnxruntime":
        from engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, **options)
    if backend == "tensorrt":
        from engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path, **options)
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


__all__ = ["BACKENDS", "Engine", "EngineError", "ShapeProfile", "load"]
