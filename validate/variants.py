"""The PyTorch variants every validator and bench measures, defined once: the baseline (the
training form as published, eager FP32), the inference form, and the GPU paths."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.runtime.torch_engine import TorchEngine
from msn import MSN

BASELINE = "eager-fp32"  # what every other variant and backend is judged against


@dataclass(frozen=True)
class TorchVariant:
    name: str
    precision: str
    options: dict[str, object] = field(default_factory=dict)  # TorchEngine's, besides device
    needs_cuda: bool = False
    compiled: bool = False  # torch.compile: minutes on a CPU, so measured on a GPU only

    def make(self, model: MSN, device: str) -> TorchEngine:
        return TorchEngine(model, device=device, **self.options)


TORCH_VARIANTS = (
    TorchVariant(BASELINE, "fp32", {"inference_form": False, "cuda_graphs": False}),
    TorchVariant("torch-fp32", "fp32", {"cuda_graphs": False}),
    TorchVariant("torch-fp16", "fp16", {"precision": "fp16", "cuda_graphs": False}),
    TorchVariant("torch-fp16-cuda-graphs", "fp16", {"precision": "fp16", "cuda_graphs": True}, needs_cuda=True),
    TorchVariant("torch-fp16-cuda-graphs-channels-last", "fp16",
                 {"precision": "fp16", "cuda_graphs": True, "channels_last": True}, needs_cuda=True),
    TorchVariant("torch-fp16-compiled", "fp16", {"precision": "fp16", "compile": True, "cuda_graphs": False},
                 needs_cuda=True, compiled=True),
    TorchVariant("torch-fp16-compiled-cuda-graphs", "fp16", {"precision": "fp16", "compile": True, "cuda_graphs": True},
                 needs_cuda=True, compiled=True),
)
