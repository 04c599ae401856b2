"""The PyTorch variants every validator and bench measures, defined once: the baseline (the
training form as published, eager FP32), the inference form, and the GPU paths. Each is a torch
target (engines.runtime.targets.Target) with options for the engine; its label is the target's
label and what the options add ("torch-cuda-fp16-cuda-graphs")."""

from __future__ import annotations

from dataclasses import dataclass, field

from msn_deploy.engines.runtime.targets import Target

BASELINE = "eager-fp32"  # what every other variant and backend is judged against


@dataclass(frozen=True)
class TorchVariant:
    suffix: str  # what the options add to the target's label ("" for the plain inference form)
    precision: str
    options: dict[str, object] = field(default_factory=dict)  # TorchEngine's, besides device and precision
    needs_cuda: bool = False
    compiled: bool = False  # torch.compile: minutes on a CPU, so measured on a GPU only
    name: str | None = None  # a name of its own (the baseline), else the label

    def label(self, device: str) -> str:
        return self.name or Target("torch", device.split(":")[0], self.precision).label + self.suffix


TORCH_VARIANTS = (
    TorchVariant("", "fp32", {"inference_form": False, "cuda_graphs": False}, name=BASELINE),
    TorchVariant("", "fp32", {"cuda_graphs": False}),
    TorchVariant("", "fp16", {"cuda_graphs": False}),
    TorchVariant("-cuda-graphs", "fp16", {"cuda_graphs": True}, needs_cuda=True),
    TorchVariant("-cuda-graphs-channels-last", "fp16", {"cuda_graphs": True, "channels_last": True}, needs_cuda=True),
    TorchVariant("-compiled", "fp16", {"compile": True, "cuda_graphs": False}, needs_cuda=True, compiled=True),
    TorchVariant("-compiled-cuda-graphs", "fp16", {"compile": True, "cuda_graphs": True}, needs_cuda=True,
                 compiled=True),
)
