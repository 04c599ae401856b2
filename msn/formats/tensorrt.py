"""The one place that knows how `tensorrt` (10.x/11.x) and `tensorrt_rtx` differ.

Both are strongly typed: precision comes from the ONNX graph's own types, so no FP16 builder
flag is ever set. What differs is which module exists, whether the STRONGLY_TYPED creation
flag still exists (TensorRT 11 and TensorRT-RTX make it the only mode), and whether compute
capabilities can be targeted ahead of time (TensorRT-RTX only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from msn_deploy.msn.errors import UsageError

FLAVOURS = ("tensorrt", "tensorrt_rtx")


class TensorRTUnavailable(UsageError):
    """No TensorRT module of the asked-for flavour can be imported here."""


@dataclass(frozen=True)
class TensorRT:
    module: ModuleType
    flavour: str  # "tensorrt" or "tensorrt_rtx"

    @property
    def version(self) -> str:
        return self.module.__version__

    @property
    def label(self) -> str:
        return f"{self.flavour}-{self.version}"

    @property
    def supports_aot_targets(self) -> bool:
        return hasattr(self.module, "ComputeCapability")

    def logger(self, verbose: bool = False):
        trt = self.module
        return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)

    def create_network(self, builder):
        flag = getattr(self.module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return builder.create_network(0 if flag is None else 1 << int(flag))

    def set_workspace(self, config, nbytes: int) -> None:
        config.set_memory_pool_limit(self.module.MemoryPoolType.WORKSPACE, nbytes)

    def set_compute_capabilities(self, config, targets: list[str]) -> None:
        """AOT targets such as ["SM86", "SM89"] (TensorRT-RTX); plain TensorRT builds for this GPU."""
        if not targets:
            return
        if not self.supports_aot_targets:
            raise UsageError(f"{self.flavour} builds for the GPU it runs on; --compute-capability needs tensorrt_rtx")
        known = [c for c in dir(self.module.ComputeCapability) if c.startswith("SM")]
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise UsageError(f"{self.label} cannot target {unknown}; it knows {known}")
        config.num_compute_capabilities = len(targets)
        for i, target in enumerate(targets):
            config.set_compute_capability(getattr(self.module.ComputeCapability, target), i)

    def aot_targets(self) -> list[str]:
        """The compute capabilities this flavour can target ahead of time (empty for plain TensorRT)."""
        if not self.supports_aot_targets:
            return []
        return sorted(c for c in dir(self.module.ComputeCapability) if c.startswith("SM"))


def import_tensorrt(backend: str = "auto") -> TensorRT:
    """`auto` prefers the data-center `tensorrt` and falls back to `tensorrt_rtx`."""
    candidates = FLAVOURS if backend == "auto" else (backend,)
    if backend not in (*FLAVOURS, "auto"):
        raise UsageError(f"backend must be auto, tensorrt or tensorrt_rtx, not {backend!r}")
    errors = []
    for name in candidates:
        try:
            return TensorRT(importlib.import_module(name), name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise TensorRTUnavailable(
        "no TensorRT module could be imported (" + "; ".join(errors) + "). Install `pip install msn-deploy[rtx]` "
        "(TensorRT-RTX, builds without a GPU) or `pip install msn-deploy[trt]` on a GPU server"
    )


def current_gpu() -> dict[str, str] | None:
    """Name and compute capability (SMxy) of the CUDA GPU here, None without one (what an engine
    is built for and checked against)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return {"name": torch.cuda.get_device_name(), "compute_capability": f"SM{major}{minor}"}
    except ImportError:
        pass
    return None
