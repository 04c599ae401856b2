"""Which backend runs an artifact, and loading it: `load` (re-exported as `engines.load`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from engines.runtime.base import Engine
from export.artifacts import ENGINE, GRAPH, NCNN, ArtifactKind, artifact_kind
from msn import MissingFileError, UsageError

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt", "ncnn")
# The devices each backend runs on; "cuda" also as "cuda:N" for torch, "gpu" as "gpu.N" for OpenVINO.
DEVICES = {
    "torch": ("cpu", "cuda"),
    "onnxruntime": ("cpu", "cuda", "tensorrt"),  # tensorrt: ONNX Runtime's TensorRT provider, on the GPU
    "openvino": ("cpu", "gpu", "npu"),  # gpu, npu: an Intel GPU or NPU
    "tensorrt": ("cuda",),
    "ncnn": ("cpu", "vulkan"),  # vulkan: any GPU with a Vulkan driver (AMD, Intel, Apple, NVIDIA); also vulkan:N
}
_DEVICE_HINTS = {"gpu": "gpu is an Intel GPU for --backend openvino; an NVIDIA GPU is cuda",
                 "cuda": "cuda is an NVIDIA GPU for the torch, onnxruntime and tensorrt backends",
                 "vulkan": "vulkan runs ncnn graphs (export one with msn-export-ncnn)",
                 "cpu": "a TensorRT engine runs on an NVIDIA GPU only: use --device cuda, or run the ONNX graph "
                        "on a CPU backend"}


def auto_backend(kind: ArtifactKind, device: str) -> str:
    """The backend `load` picks for a kind of artifact (export.artifacts) and a device.

    On a CPU, graphs and checkpoints alike go to OpenVINO when it is installed (a checkpoint runs
    as its graph, exported once into the cache: engines.runtime.graph_cache), else to ONNX Runtime:
    measured 3-4x eager PyTorch for OpenVINO, 2-3x for ONNX Runtime (docs/BENCHMARKS.md), at the
    price of a ~1 s OpenVINO compile per new input shape, which the engine caches. On a GPU a
    graph goes to ONNX Runtime (CUDA / TensorRT providers) and a checkpoint to PyTorch (FP16
    inference form with CUDA graphs). An engine runs on TensorRT (on its GPU, whatever `device`).
    """
    if kind is ENGINE:
        return "tensorrt"
    if kind is NCNN:
        return "ncnn"
    if device != "cpu":
        return "onnxruntime" if kind is GRAPH else "torch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def check_device(backend: str, device: str) -> None:
    """UsageError unless `backend` runs on `device` (whether this machine has it is the backend's
    check, when it loads)."""
    separator = {"torch": ":", "ncnn": ":", "openvino": "."}.get(backend)
    family = device.split(separator)[0] if separator else device
    if family.lower() not in DEVICES[backend]:
        hint = _DEVICE_HINTS.get(family.lower(), "")
        raise UsageError(f"unknown device {device!r} for --backend {backend}, which runs on "
                         f"{', '.join(DEVICES[backend])}" + (f" ({hint})" if hint else ""))


def resolve_backend(backend: str, artifact: str | Path, device: str) -> str:
    """The backend `load` runs `artifact` on: `backend`, or for "auto" the one `auto_backend`
    picks; a backend that does not exist, or does not run on `device`, is a UsageError."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        chosen = auto_backend(artifact_kind(artifact), device)
        if chosen == "tensorrt":  # an engine runs on the GPU it was built for
            return chosen
    else:
        chosen = backend
        kind = artifact_kind(artifact)
        for runtime, own_kind, files, how in (("tensorrt", ENGINE, "TensorRT engines", "build one with msn-build-trt"),
                                              ("ncnn", NCNN, "ncnn graphs", "export one with msn-export-ncnn")):
            if kind is own_kind and chosen != runtime:
                raise UsageError(f"{artifact} is {'a TensorRT engine' if runtime == 'tensorrt' else 'an ncnn graph'}: "
                                 f"it runs on --backend {runtime} (or auto), not {chosen}")
            if chosen == runtime and kind is not own_kind:
                raise UsageError(f"--backend {runtime} runs {files} ({', '.join(own_kind.suffixes)}), not {artifact}; "
                                 f"{how}")
    check_device(chosen, device)
    return chosen


def share_of_cores(workers: int) -> int:
    """Threads for each of `workers` engines that run side by side on this process's cores (the
    folder job's workers, the video segment processes): at least one."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def thread_options(backend: str, threads: int | None) -> dict[str, int]:
    """The `load` option that gives an engine a thread budget, for the backends that take one
    (PyTorch, OpenVINO, ONNX Runtime, ncnn); empty for the others or without a budget."""
    return {"threads": threads} if threads and backend in ("torch", "openvino", "onnxruntime", "ncnn") else {}


def load(artifact: str | Path, backend: str = "auto", *, device: str = "cpu", precision: str | None = None,
         **options) -> Engine:
    """Load a checkpoint (.pth, .safetensors or known name), ONNX graph (.onnx), engine (.plan/.engine)
    or ncnn graph (.param, with its .bin beside it).

    `backend="auto"` picks by file type and device (see `auto_backend`): on a CPU a checkpoint
    runs as its ONNX graph on OpenVINO (exported into the cache on first use); `backend="torch"`
    runs it in eager PyTorch. `precision` ("fp32" or "fp16") picks the checkpoint's precision
    (default fp32); a graph or engine has the precision it was exported with, and asking it for
    another is a UsageError.

    `options` go to the backend: e.g. `threads`, `hint`, `cache_size` for OpenVINO; `threads` for
    ONNX Runtime; `threads`, `cuda_graphs`, `compile`, `channels_last`, `cache_size` for torch (on a
    CUDA device `precision="fp16"` is the fastest path: see engines.runtime.torch_engine); `cuda_graph` for
    TensorRT; `threads` for ncnn (device "cpu" or "vulkan", precision "fp16" for its half-precision
    arithmetic). Raises UsageError subclasses for unknown backends, missing or foreign files and
    devices this machine lacks."""
    path = Path(artifact)
    backend = resolve_backend(backend, path, device)
    if backend == "torch":
        from engines.runtime.torch_engine import TorchEngine

        return TorchEngine(str(artifact), device=device, precision=precision or "fp32", **options)
    if backend == "ncnn":  # the precision of an ncnn graph is how ncnn computes, chosen when it loads
        from engines.runtime.ncnn_engine import NcnnEngine

        if not path.is_file():
            raise MissingFileError(f"{path} does not exist")
        return NcnnEngine(path, device, precision=precision or "fp32", **options)
    if artifact_kind(path).weights and backend in ("onnxruntime", "openvino"):
        from engines.runtime.graph_cache import cached_graph

        path = cached_graph(artifact, precision or "fp32")
    engine = _load_artifact(path, backend, device, options)
    if precision is not None and precision != engine.precision:
        export = "python export/to_onnx.py --fp16" if precision == "fp16" else "python export/to_onnx.py (no --fp16)"
        raise UsageError(f"{path} is an {engine.precision.upper()} artifact, not {precision.upper()}; precision "
                         f"applies to checkpoints (export an {precision.upper()} graph with {export}, or leave out "
                         "--precision)")
    return engine


def _load_artifact(path: Path, backend: str, device: str, options: dict) -> Engine:
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    if backend == "onnxruntime":
        from engines.runtime.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, **options)
    if backend == "openvino":
        from engines.runtime.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(path, device=device, **options)
    from engines.runtime.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(path, **options)

