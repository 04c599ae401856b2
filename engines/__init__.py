"""Run MSN artifacts (checkpoint, ONNX graph, TensorRT plan) behind one interface.

    import engines
    engine = engines.load("msn_x4_fp32.onnx")       # backend chosen by file type and device
    sr = engine(lr_batch)                            # NCHW in [0, 1], numpy or torch
"""

from __future__ import annotations

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn.threads  # noqa: F401

# isort: split

import importlib.util
from pathlib import Path

from engines.base import DeviceError, Engine, EngineError, ShapeProfile
from msn import MissingFileError, MSNError, UsageError

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")


GRAPH_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine")


def is_checkpoint(artifact: str | Path) -> bool:
    """A checkpoint file or known name, as opposed to a graph or engine (judged by the name)."""
    return Path(artifact).suffix.lower() not in GRAPH_SUFFIXES + ENGINE_SUFFIXES


def auto_backend(suffix: str, device: str) -> str:
    """The backend `load` picks for a file type and device.

    On a CPU, graphs and checkpoints alike go to OpenVINO when it is installed (a checkpoint runs
    as its graph, exported once into the cache: engines.graph_cache), else to ONNX Runtime:
    measured 3-4x eager PyTorch for OpenVINO, 2-3x for ONNX Runtime (docs/BENCHMARKS.md), at the
    price of a ~1 s OpenVINO compile per new input shape, which the engine caches. On a GPU a
    graph goes to ONNX Runtime (CUDA / TensorRT providers) and a checkpoint to PyTorch (FP16
    inference form with CUDA graphs).
    """
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if device != "cpu":
        return "onnxruntime" if suffix in GRAPH_SUFFIXES else "torch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def resolve_backend(backend: str, artifact: str | Path, device: str) -> str:
    """The backend `load` runs `artifact` on: `backend`, or for "auto" the one `auto_backend` picks."""
    return auto_backend(Path(artifact).suffix.lower(), device) if backend == "auto" else backend


def thread_options(backend: str, threads: int | None) -> dict[str, int]:
    """The `load` option that gives an engine a thread budget, for the backends that take one
    (PyTorch, OpenVINO, ONNX Runtime); empty for the others or without a budget."""
    return {"threads": threads} if threads and backend in ("torch", "openvino", "onnxruntime") else {}


def load(artifact: str | Path, backend: str = "auto", *, device: str = "cpu", precision: str | None = None,
         **options) -> Engine:
    """Load a checkpoint (.pth, .safetensors or known name), ONNX graph (.onnx) or engine (.plan/.engine).

    `backend="auto"` picks by file type and device (see `auto_backend`): on a CPU a checkpoint
    runs as its ONNX graph on OpenVINO (exported into the cache on first use); `backend="torch"`
    runs it in eager PyTorch. `precision` ("fp32" or "fp16") picks the checkpoint's precision
    (default fp32); a graph or engine has the precision it was exported with, and asking it for
    another is a UsageError.

    `options` go to the backend: e.g. `threads`, `hint`, `cache_size` for OpenVINO; `threads` for
    ONNX Runtime; `threads`, `cuda_graphs`, `compile`, `channels_last`, `cache_size` for torch (on a
    CUDA device `precision="fp16"` is the fastest path: see engines.torch_engine); `cuda_graph` for
    TensorRT. Raises UsageError subclasses for unknown backends, missing or foreign files and
    devices this machine lacks."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    path = Path(artifact)
    backend = resolve_backend(backend, path, device)
    if backend == "torch":
        from engines.torch_engine import TorchEngine

        return TorchEngine(str(artifact), device=device, precision=precision or "fp32", **options)
    if is_checkpoint(path) and backend in ("onnxruntime", "openvino"):
        from engines.graph_cache import cached_graph

        path = cached_graph(artifact, precision or "fp32")
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


__all__ = ["BACKENDS", "DeviceError", "Engine", "EngineError", "MSNError", "ShapeProfile", "auto_backend",
           "is_checkpoint", "load", "resolve_backend", "thread_options"]
