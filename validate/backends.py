"""Which backends the validator compares, and why any of them is skipped on this machine."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engines.runtime.base import Engine
from export.parity import NCNN_FP16_MIN_PSNR_DB
from msn import MSN, MSNError
from msn.formats.precision import PRECISIONS
from validate.variants import TORCH_VARIANTS

log = logging.getLogger(__name__)

# Every name a Candidate can have (graph-tagged ONNX names end in -<graph stem>): lets a typo in
# --backends fail before anything is exported or loaded.
NAME_PATTERN = re.compile(
    r"eager-fp32|torch-fp(32|16)(-compiled)?(-cuda-graphs)?(-channels-last)?"
    r"|(ort-(cpu|cuda|tensorrt)|openvino-cpu)-fp(32|16)(-.+)?|tensorrt(_rtx)?(-fp(32|16)(-cudagraph)?)?(:.+)?"
    r"|ncnn-(cpu-fp32|vulkan-fp(32|16))(-.+)?"
)


def needs_graphs(names: set[str]) -> bool:
    return any(n.startswith(("ort-", "openvino-")) for n in names)


def needs_ncnn(names: set[str]) -> bool:
    return any(n.startswith("ncnn-") for n in names)


@dataclass
class Candidate:
    name: str
    precision: str
    factory: Callable[[], Engine] | None = None
    skip_reason: str | None = None
    timed: bool = True  # False: parity only (with the reason in speed_note)
    speed_note: str | None = None
    graph: Path | None = None  # the ONNX graph it runs, for a layerwise look when it fails
    min_psnr_db: float | None = None  # an FP16 floor of its own (None: the validator's --min-psnr)


def _cuda_reason() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


def _ort_provider_reason(provider: str) -> str | None:
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return f"ONNX Runtime here has no {provider} (install onnxruntime-gpu on a GPU machine)"
    return _cuda_reason()


def torch_candidates(model: MSN) -> list[Candidate]:
    """The PyTorch variants (validate.variants): FP16 is timed on a GPU only, and the GPU paths
    (CUDA graphs, torch.compile) are skipped, with the reason, on a CPU."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    fp16_cpu_note = None if cuda else "float16 convolutions on CPU are emulated (seconds per frame); timed on GPU only"
    gpu_only = None if cuda else "measured on GPU only (CUDA graphs; a CPU compile of ~800 small ops takes minutes)"
    return [Candidate(v.name, v.precision, lambda v=v: v.make(model, device),
                      skip_reason=gpu_only if v.needs_cuda else None,
                      timed=cuda or v.precision == "fp32", speed_note=None if v.precision == "fp32" else fp16_cpu_note)
            for v in TORCH_VARIANTS]


def _openvino_reason() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install -e '.[cpu]')"
    return None


def onnx_candidates(graphs: list[Path]) -> list[Candidate]:
    from engines.runtime.onnxruntime_engine import OnnxRuntimeEngine
    from engines.runtime.openvino_engine import OpenVINOEngine

    candidates = []
    loaded = []
    for graph in graphs:
        try:
            loaded.append((graph, OnnxRuntimeEngine(graph).precision))
        except MSNError as exc:
            candidates.append(Candidate(f"ort-cpu:{graph.name}", "fp32", skip_reason=str(exc)))
    precisions = [p for _, p in loaded]
    for graph, precision in loaded:
        tag = f"-{graph.stem}" if precisions.count(precision) > 1 else ""  # two graphs of one precision
        candidates.append(Candidate(f"ort-cpu-{precision}{tag}", precision,
                                    lambda g=graph: OnnxRuntimeEngine(g, threads=torch.get_num_threads()),
                                    graph=graph))
        candidates.append(Candidate(f"openvino-cpu-{precision}{tag}", precision,
                                    lambda g=graph: OpenVINOEngine(g, threads=torch.get_num_threads()),
                                    skip_reason=_openvino_reason(), graph=graph))
        for device, provider in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
            candidates.append(Candidate(f"ort-{device}-{precision}{tag}", precision,
                                        lambda g=graph, d=device: OnnxRuntimeEngine(g, device=d),
                                        skip_reason=_ort_provider_reason(provider), graph=graph))
    return candidates


def ncnn_candidates(params: list[Path]) -> list[Candidate]:
    """ncnn's CPU path (FP32; CPUs without fp16 arithmetic compute FP32 whatever is asked) and a
    Vulkan device in FP32 and FP16. lavapipe, Debian's Vulkan on the CPU, is checked for parity
    but not timed: its speed says nothing about a GPU."""
    from engines.runtime.ncnn_engine import NcnnEngine
    from msn.formats.ncnn_net import vulkan_devices

    devices = vulkan_devices()
    no_vulkan = None if devices else "ncnn finds no Vulkan device here (Debian: mesa-vulkan-drivers libvulkan1)"
    emulated = devices and all("llvmpipe" in name for name in devices)
    note = f"{devices[0] if devices else ''} emulates Vulkan on the CPU: its speed says nothing about a GPU"
    candidates = []
    for param in params:
        tag = f"-{param.stem}" if len(params) > 1 else ""
        candidates.append(Candidate(f"ncnn-cpu-fp32{tag}", "fp32",
                                    lambda p=param: NcnnEngine(p, threads=torch.get_num_threads())))
        for precision in PRECISIONS:
            candidates.append(Candidate(f"ncnn-vulkan-{precision}{tag}", precision,
                                        lambda p=param, q=precision: NcnnEngine(p, "vulkan", precision=q),
                                        skip_reason=no_vulkan, timed=not emulated,
                                        speed_note=note if emulated else None,
                                        min_psnr_db=NCNN_FP16_MIN_PSNR_DB if precision == "fp16" else None))
    return candidates


def tensorrt_candidates(engine_paths: list[Path]) -> list[Candidate]:
    if not engine_paths:
        return [Candidate("tensorrt", "fp16", skip_reason="no --engine given (build one with export/build_trt.py)")]
    from engines.runtime.tensorrt_engine import TensorRTEngine

    candidates = []
    for path in engine_paths:
        try:
            engine = TensorRTEngine(path)
        except MSNError as exc:
            candidates.append(Candidate(f"tensorrt:{path.name}", "fp16", skip_reason=str(exc)))
            continue
        label = f"{engine.flavour}-{engine.precision}"
        candidates.append(Candidate(label, engine.precision, lambda e=engine: e))
        candidates.append(Candidate(f"{label}-cudagraph", engine.precision,
                                    lambda p=path: TensorRTEngine(p, cuda_graph=True)))
    return candidates
