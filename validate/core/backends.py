"""What the validators compare: candidates, each a `Target` (engines.runtime.targets) on one
artifact, opened through `engines.load` like every engine, and named by the target's label.

    eager-fp32                      the baseline: the training form as published
    torch-cpu-fp32                  the inference form; torch-cuda-fp16-cuda-graphs and the other GPU variants
    onnxruntime-cpu-fp16            a graph on a backend and device, in the graph's precision
    ncnn-vulkan-fp16, tensorrt-cuda-fp16-cudagraph ...
    openvino-cpu-fp16:b/msn_fp16    the artifact's name follows where two of one label are compared

Old spellings (ort-cpu-fp32, torch-fp16, tensorrt_rtx-fp16) are accepted in --backends.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy import engines
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.targets import BACKENDS, Target
from msn_deploy.export.parity import NCNN_FP16_MIN_PSNR_DB, OPENVINO_BF16_MIN_PSNR_DB
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.msn.formats.ncnn_net import vulkan_devices
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS, DEFAULT_PRECISION
from msn_deploy.validate.core.variants import BASELINE, TORCH_VARIANTS

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    name: str  # the target's label, with the artifact's name after ":" where two share a label
    target: Target
    artifact: Path | str
    options: dict[str, object] = field(default_factory=dict)  # engines.load's, for this backend
    skip_reason: str | None = None  # a decision of the plan (not measured here), never a load failure
    timed: bool = True  # False: parity only (with the reason in speed_note)
    speed_note: str | None = None
    graph: Path | None = None  # the ONNX graph it runs, for a layerwise look when it fails
    min_psnr_db: float | None = None  # a half-precision floor of its own (None: the validator's --min-psnr)

    @property
    def precision(self) -> str:
        return self.target.precision or DEFAULT_PRECISION

    def load(self) -> Engine:
        return engines.load(self.artifact, target=self.target, **self.options)


def _threads(backend: str, threads: int | None) -> dict[str, object]:
    return Target(backend).thread_options(threads)


def torch_candidates(checkpoint: str | Path, device: str) -> list[Candidate]:
    """The PyTorch variants (validate.variants) on `device`: FP16 is timed on a GPU only, and the
    GPU paths (CUDA graphs, torch.compile) are skipped, with the reason, on a CPU."""
    cuda = device.startswith("cuda")
    fp16_cpu_note = None if cuda else "float16 convolutions on CPU are emulated (seconds per frame); timed on GPU only"
    gpu_only = None if cuda else "measured on GPU only (CUDA graphs; a CPU compile of ~800 small ops takes minutes)"
    return [Candidate(v.label("cuda" if v.needs_cuda else device), Target("torch", device, v.precision), checkpoint,
                      v.options,
                      skip_reason=gpu_only if v.needs_cuda else None, timed=cuda or v.precision == "fp32",
                      speed_note=None if v.precision == "fp32" else fp16_cpu_note)
            for v in TORCH_VARIANTS]


def _tagged(names: list[str], paths: list[Path]) -> list[str]:
    """`names` made unique by the artifact's name where two are alike (the stem; then the path)."""
    tags = [n if names.count(n) == 1 else f"{n}:{p.stem}" for n, p in zip(names, paths)]
    return [t if tags.count(t) == 1 else f"{n}:{p}" for t, n, p in zip(tags, names, paths)]


def _bf16_unavailable() -> str | None:
    """Why OpenVINO cannot compute in bf16 here, or None."""
    from msn_deploy.engines.runtime.openvino_engine import cpu_has_bf16

    return BACKENDS["openvino"].unavailable() or (None if cpu_has_bf16() else "this CPU has no BF16 units")


def graph_candidates(graphs: list[Path], threads: int | None = None) -> list[Candidate]:
    """Each ONNX graph on every device of ONNX Runtime and on OpenVINO's CPU, in the graph's own
    precision (a device this machine lacks is reported by the engine when it loads); an FP32 graph
    also on OpenVINO in bf16, judged by its own floor."""
    targets = [Target("onnxruntime", d) for d in BACKENDS["onnxruntime"].devices] + [Target("openvino", "cpu")]
    precisions = {g: read_artifact_header(g).precision for g in graphs}
    rows = [(Target(t.backend, t.device, precisions[g]), g) for g in graphs for t in targets]
    rows += [(Target("openvino", "cpu", "bf16"), g) for g in graphs if precisions[g] == "fp32"]
    names = _tagged([t.label for t, _ in rows], [g for _, g in rows])
    bf16_unavailable = _bf16_unavailable() if any(t.precision == "bf16" for t, _ in rows) else None
    return [Candidate(name, target, graph, _threads(target.backend, threads) if target.device == "cpu" else {},
                      skip_reason=bf16_unavailable if target.precision == "bf16" else target.spec.unavailable(),
                      graph=graph, min_psnr_db=OPENVINO_BF16_MIN_PSNR_DB if target.precision == "bf16" else None)
            for name, (target, graph) in zip(names, rows)]


def ncnn_candidates(params: list[Path], threads: int | None = None) -> list[Candidate]:
    """ncnn's CPU path (FP32; CPUs without fp16 arithmetic compute FP32 whatever is asked) and a
    Vulkan device in each precision. lavapipe, Debian's Vulkan on the CPU, is checked for parity
    but not timed: its speed says nothing about a GPU."""
    unavailable = BACKENDS["ncnn"].unavailable()
    devices = () if unavailable else vulkan_devices()
    no_vulkan = unavailable or (None if devices else "ncnn finds no Vulkan device here (Debian: mesa-vulkan-drivers "
                                                     "libvulkan1)")
    emulated = bool(devices) and all("llvmpipe" in name for name in devices)
    note = f"{devices[0] if devices else ''} emulates Vulkan on the CPU: its speed says nothing about a GPU"
    rows = [(Target("ncnn", "cpu", "fp32"), p) for p in params]
    rows += [(Target("ncnn", "vulkan", precision), p) for p in params for precision in ARTIFACT_PRECISIONS]
    names = _tagged([t.label for t, _ in rows], [p for _, p in rows])
    candidates = []
    for name, (target, param) in zip(names, rows):
        vulkan = target.device == "vulkan"
        candidates.append(Candidate(
            name, target, param, {} if vulkan else _threads("ncnn", threads), skip_reason=no_vulkan if vulkan
            else unavailable, timed=not (vulkan and emulated), speed_note=note if vulkan and emulated else None,
            min_psnr_db=NCNN_FP16_MIN_PSNR_DB if target.precision == "fp16" else None))
    return candidates


def tensorrt_candidates(plans: list[Path]) -> list[Candidate]:
    """Each engine, plain and with CUDA-graph replay; an engine runs on the GPU it was built for."""
    if not plans:
        return [Candidate("tensorrt-cuda", Target("tensorrt", "cuda"), "",
                          skip_reason="no --engine given (build one with export/build_trt.py)")]
    rows = [(Target("tensorrt", "cuda", read_artifact_header(p).precision), p, options)
            for p in plans for options in ({}, {"cuda_graph": True})]
    names = _tagged([t.label + ("-cudagraph" if o else "") for t, _, o in rows], [p for _, p, _ in rows])
    return [Candidate(name, target, plan, options) for name, (target, plan, options) in zip(names, rows)]


# The names earlier reports and users spelled: the label they mean now.
_OLD_SPELLINGS = ((re.compile(r"ort-(cpu|cuda|tensorrt)-"), r"onnxruntime-\1-"),
                  (re.compile(r"torch-(fp32|fp16)"), r"torch-{device}-\1"),
                  (re.compile(r"tensorrt(?:_rtx)?-(fp32|fp16)"), r"tensorrt-cuda-\1"))


def canonical_name(name: str, device: str) -> str:
    """A --backends name in today's labels (old spellings translated; `device` fills torch's)."""
    for pattern, label in _OLD_SPELLINGS:
        if pattern.match(name):
            return pattern.sub(label.replace("{device}", device), name, count=1)
    return name


def wanted_names(backends: str | None, device: str) -> set[str]:
    return {canonical_name(n.strip(), device) for n in (backends or "").split(",") if n.strip()}


def needs(names: set[str], backend: str) -> bool:
    return any(n.startswith(backend + "-") for n in names)


__all__ = ["BASELINE", "Candidate", "canonical_name", "graph_candidates", "ncnn_candidates", "needs",
           "tensorrt_candidates", "torch_candidates", "wanted_names"]
