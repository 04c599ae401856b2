"""Loading an artifact on a target: `load` (re-exported as `engines.load`), the one way an engine
is built; and how many threads each of several engines side by side gets."""

from __future__ import annotations

import os
from pathlib import Path

from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.targets import AUTO, Target


def share_of_cores(workers: int) -> int:
    """Threads for each of `workers` engines that run side by side on this process's cores (the
    folder job's workers, the video segment processes): at least one."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def load(artifact: str | Path, backend: str = AUTO, *, device: str = "cpu", precision: str | None = None,
         target: Target | None = None, **options) -> Engine:
    """Load a checkpoint (.pth, .safetensors or known name), ONNX graph (.onnx), engine (.plan/.engine)
    or ncnn graph (.param, with its .bin beside it).

    The run target is `target` (engines.runtime.targets.Target), else `backend`, `device` and
    `precision`. `backend="auto"` picks by file type and device (see `targets.auto_backend`): on
    a CPU a checkpoint runs as its ONNX graph on OpenVINO (exported into the cache on first use);
    `backend="torch"` runs it in eager PyTorch. `precision` ("fp32" or "fp16") picks the
    checkpoint's precision (default fp32); a graph or engine has the precision it was exported
    with, and asking it for another is a UsageError.

    `options` go to the backend: e.g. `threads`, `hint`, `cache_size` for OpenVINO; `threads` for
    ONNX Runtime; `threads`, `cuda_graphs`, `compile`, `channels_last`, `cache_size` for torch (on a
    CUDA device `precision="fp16"` is the fastest path: see engines.runtime.torch_engine); `cuda_graph` for
    TensorRT; `threads` for ncnn (device "cpu" or "vulkan", precision "fp16" for its half-precision
    arithmetic). Raises UsageError subclasses for unknown backends, missing or foreign files and
    devices this machine lacks."""
    target = target or Target(backend, device, precision)
    return target.resolve(artifact).open(artifact, **options)
