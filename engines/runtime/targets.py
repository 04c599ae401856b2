"""The one owner of "a backend on a device in a precision": the registry of backends and `Target`.

Each `Backend` states what it is: the devices it runs on, the precisions it computes in, the kinds
of artifact it opens, whether it takes a thread budget, why it is unavailable here, and how it
opens an artifact. Everything else reads those traits: `load`, the jobs, the service, the Ray
actor and the validators carry one `Target` value, resolved once per job by `Target.resolve`,
and name it with its one label ("openvino-cpu-fp32"). Adding a backend means one entry here and
its engine module.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.memory import configured_budget
from msn_deploy.msn.errors import MissingFileError, UsageError
from msn_deploy.msn.formats.kinds import CHECKPOINT, ENGINE, GRAPH, NCNN, SAFETENSORS, ArtifactKind, artifact_kind
from msn_deploy.msn.formats.precision import (
    ARTIFACT_PRECISIONS,
    DEFAULT_PRECISION,
    PRECISIONS,
    artifact_precision,
    check_precision,
)

AUTO = "auto"  # the backend `Target.resolve` picks by artifact kind and device


@dataclass(frozen=True)
class Backend:
    """One runtime that runs MSN artifacts, described by its traits."""

    name: str
    devices: tuple[str, ...]  # device families; an index follows `device_separator` ("cuda:1", "gpu.1")
    precisions: tuple[str, ...]  # what it computes in
    opens: tuple[ArtifactKind, ...]  # checkpoints on ONNX Runtime / OpenVINO run as their cached graph
    engine: str  # "module:Class" of its Engine, imported when an artifact is opened
    requires: str | None  # the Python module it needs
    install: str  # how to get that module
    files: str  # what it runs, for messages ("TensorRT engines")
    device_separator: str | None = None
    takes_threads: bool = False
    runs_weights: bool = False  # opens a checkpoint as it is (else as its exported graph)

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (its module is not installed), or None."""
        if self.requires is None or importlib.util.find_spec(self.requires) is not None:
            return None
        return f"{self.requires} is not installed ({self.install})"

    def device_family(self, device: str) -> str:
        return (device.split(self.device_separator)[0] if self.device_separator else device).lower()

    def check_device(self, device: str) -> None:
        """UsageError unless this backend runs on `device` (whether this machine has it is the
        engine's check, when it loads)."""
        family = self.device_family(device)
        if family not in self.devices:
            note = dict(_DEVICE_NOTES).get(family, "")
            raise UsageError(f"unknown device {device!r} for --backend {self.name}, which runs on "
                             f"{', '.join(self.devices)}" + (f" ({note})" if note else ""))

    def engine_class(self) -> type[Engine]:
        module, _, name = self.engine.partition(":")
        return getattr(importlib.import_module(module), name)

    def opens_only(self) -> tuple[ArtifactKind, ...]:
        """The kinds that no other backend opens (an engine runs on TensorRT only)."""
        return tuple(k for k in self.opens if not any(k in b.opens for b in BACKENDS.values() if b is not self))


_DEVICE_NOTES = (
    ("gpu", "gpu is an Intel GPU for --backend openvino; an NVIDIA GPU is cuda"),
    ("cuda", "cuda is an NVIDIA GPU for the torch, onnxruntime and tensorrt backends"),
    ("vulkan", "vulkan runs ncnn graphs (export one with msn-export-ncnn)"),
    ("cpu", "a TensorRT engine runs on an NVIDIA GPU only: use --device cuda, or run the ONNX graph on a CPU backend"),
)

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", ("cpu", "cuda"), ARTIFACT_PRECISIONS, (CHECKPOINT, SAFETENSORS),
            "msn_deploy.engines.runtime.torch_engine:TorchEngine", None, "", "checkpoints",
            device_separator=":", takes_threads=True, runs_weights=True),
    # tensorrt here is ONNX Runtime's TensorRT provider, on the GPU
    Backend("onnxruntime", ("cpu", "cuda", "tensorrt"), ARTIFACT_PRECISIONS, (GRAPH, CHECKPOINT, SAFETENSORS),
            "msn_deploy.engines.runtime.onnxruntime_engine:OnnxRuntimeEngine", "onnxruntime", "pip install onnxruntime",
            "ONNX graphs", takes_threads=True),
    # gpu, npu: an Intel GPU or NPU; bf16: an FP32 graph on a CPU's BF16 units
    Backend("openvino", ("cpu", "gpu", "npu"), PRECISIONS, (GRAPH, CHECKPOINT, SAFETENSORS),
            "msn_deploy.engines.runtime.openvino_engine:OpenVINOEngine", "openvino", "pip install -e '.[cpu]'",
            "ONNX graphs", device_separator=".", takes_threads=True),
    Backend("tensorrt", ("cuda",), ARTIFACT_PRECISIONS, (ENGINE,),
            "msn_deploy.engines.runtime.tensorrt_engine:TensorRTEngine", None, "", "TensorRT engines"),
    # vulkan: any GPU with a Vulkan driver (AMD, Intel, Apple, NVIDIA); the precision of an ncnn graph is
    # how ncnn computes, chosen when it loads
    Backend("ncnn", ("cpu", "vulkan"), ARTIFACT_PRECISIONS, (NCNN,),
            "msn_deploy.engines.runtime.ncnn_engine:NcnnEngine", "ncnn", "pip install -e '.[ncnn]'", "ncnn graphs",
            device_separator=":", takes_threads=True),
)}
BACKEND_CHOICES = (AUTO, *BACKENDS)
# Spellings users may have typed (earlier reports and the GPU suite's labels): the backend they mean.
_BACKEND_ALIASES = {"ort": "onnxruntime", "ov": "openvino", "eager": "torch", "tensorrt_rtx": "tensorrt"}


def backend_named(name: str) -> Backend:
    """The backend called `name` (or an alias of it); UsageError naming the choices otherwise."""
    backend = BACKENDS.get(_BACKEND_ALIASES.get(name, name))
    if backend is None:
        raise UsageError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_CHOICES)}")
    return backend


def auto_backend(kind: ArtifactKind, device: str) -> Backend:
    """The backend `Target.resolve` picks for a kind of artifact and a device.

    A kind that one backend alone opens goes there (an engine to TensorRT, on its GPU whatever
    `device`; an ncnn graph to ncnn). On a CPU, graphs and checkpoints alike go to OpenVINO when
    it is installed (a checkpoint runs as its graph, exported once into the cache:
    engines.runtime.graph_cache), else to ONNX Runtime: measured 3-4x eager PyTorch for OpenVINO,
    2-3x for ONNX Runtime (docs/BENCHMARKS.md), at the price of a ~1 s OpenVINO compile per new
    input shape, which the engine caches. On a GPU a graph goes to ONNX Runtime (CUDA / TensorRT
    providers) and a checkpoint to PyTorch (FP16 inference form with CUDA graphs).
    """
    for backend in BACKENDS.values():
        if kind in backend.opens_only():
            return backend
    if device != "cpu":
        return BACKENDS["onnxruntime" if kind is GRAPH else "torch"]
    return BACKENDS["openvino" if BACKENDS["openvino"].unavailable() is None else "onnxruntime"]


@dataclass(frozen=True)
class Target:
    """A backend on a device in a precision: what the user asked for ("auto", precision None: the
    artifact's own) until `resolve` makes it concrete for one artifact."""

    backend: str = AUTO
    device: str = "cpu"
    precision: str | None = None

    @property
    def label(self) -> str:
        """The one name of a target in logs, reports and the CLI: backend-device[-precision]."""
        return "-".join(p for p in (self.backend, self.device, self.precision) if p)

    @property
    def spec(self) -> Backend:
        return backend_named(self.backend)

    def check(self) -> Target:
        """This target with its backend's canonical name, checked by name alone (before any file is
        read): the backend exists, runs on the device, computes in the precision; and the memory
        budget that the environment may set (engines.runtime.memory) is a size."""
        configured_budget()
        if self.precision is not None:
            check_precision(self.precision)
        if self.backend == AUTO:
            if not any(b.device_family(self.device) in b.devices for b in BACKENDS.values()):
                known = sorted({d for b in BACKENDS.values() for d in b.devices})
                raise UsageError(f"unknown device {self.device!r}; the backends run on {', '.join(known)}")
            return self
        backend = backend_named(self.backend)
        backend.check_device(self.device)
        if self.precision is not None and self.precision not in backend.precisions:
            others = [b.name for b in BACKENDS.values() if self.precision in b.precisions]
            raise UsageError(f"--backend {backend.name} computes in {', '.join(backend.precisions)}, not "
                             f"{self.precision}; {self.precision} runs on --backend {' or '.join(others)}")
        return replace(self, backend=backend.name)

    def resolve(self, artifact: str | Path) -> Target:
        """The concrete target for `artifact`: "auto" becomes the backend `auto_backend` picks, and a
        backend that cannot open this kind of artifact, or does not run on the device, is a UsageError."""
        kind = artifact_kind(artifact)
        if self.backend == AUTO:
            self.check()
            backend = auto_backend(kind, self.device)
            if backend.devices == ("cuda",):  # an engine runs on the GPU it was built for
                return replace(self, backend=backend.name, device="cuda").check()
            return replace(self, backend=backend.name).check()
        backend = backend_named(self.backend)
        if kind not in backend.opens:
            owner = next(b for b in BACKENDS.values() if kind in b.opens)
            if kind in owner.opens_only():
                raise UsageError(f"{artifact} is {kind.description}: it runs on --backend {owner.name} (or auto), "
                                 f"not {backend.name}")
            kinds = [k for k in backend.opens if k in backend.opens_only()]
            raise UsageError(f"--backend {backend.name} runs {backend.files} "
                             f"({', '.join(s for k in kinds for s in k.suffixes)}), not {artifact}; "
                             f"{kinds[0].how_to_make}")
        return self.check()

    def thread_options(self, threads: int | None) -> dict[str, int]:
        """The `load` option that gives an engine a thread budget, for the backends that take one;
        empty for the others or without a budget."""
        return {"threads": threads} if threads and self.spec.takes_threads else {}

    def runnable(self, artifact: str | Path) -> str | Path:
        """What this (resolved) target runs for `artifact`: the artifact itself, or for a checkpoint
        on a graph runtime its graph, exported once into the cache (engines.runtime.graph_cache).
        MissingFileError for a graph or engine that is not there."""
        if not artifact_kind(artifact).weights:
            if not Path(artifact).is_file():
                raise MissingFileError(f"{artifact} does not exist")
            return Path(artifact)
        if self.spec.runs_weights:
            return artifact
        from msn_deploy.engines.runtime.graph_cache import cached_graph

        return cached_graph(artifact, artifact_precision(self.precision or DEFAULT_PRECISION))

    def open(self, artifact: str | Path, **options) -> Engine:
        """Load `artifact` on this (resolved) target; `options` go to the backend's engine. A
        checkpoint given to a graph runtime runs as its graph, exported once into the cache."""
        source = self.runnable(artifact)
        engine = self.spec.engine_class().open_on(source, self.device, self.precision, **options)
        if self.precision is not None and self.precision != engine.precision:
            export = "python export/to_onnx.py" + (" --fp16" if self.precision == "fp16" else " (no --fp16)")
            raise UsageError(f"{source} is an {engine.precision.upper()} artifact, not {self.precision.upper()}; "
                             f"precision applies to checkpoints (export an {self.precision.upper()} graph with "
                             f"{export}, or leave out --precision)")
        return engine

