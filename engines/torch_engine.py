"""PyTorch backend: MSN's inference form, eager or compiled, on CPU or CUDA."""

from __future__ import annotations

import copy

import numpy as np
import torch

from engines.base import DeviceError, Engine, ShapeProfile
from msn import MSN, MSNInference, load_model, to_inference_form


def check_torch_device(device: str) -> None:
    """Raise DeviceError for a device name torch cannot use here, before any loading."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
                          "use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible")


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        model: MSN | MSNInference | str,
        *,
        device: str = "cpu",
        fp16: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        inference_form: bool = True,
    ) -> None:
        """`inference_form=False` runs the training form as loaded (the eager reference).
        `cuda_graphs` compiles in "reduce-overhead" mode, which replays CUDA graphs per shape."""
        check_torch_device(device)
        if isinstance(model, str) or hasattr(model, "__fspath__"):
            model = load_model(model, deploy=inference_form)
        elif isinstance(model, MSN) and inference_form:
            model = to_inference_form(model)
        else:
            model = copy.deepcopy(model)  # .to(dtype) below must not change the caller's model
        dtype = torch.float16 if fp16 else torch.float32
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype
        if cuda_graphs:
            self.forward = torch.compile(self.model, mode="reduce-overhead")
        elif compile:
            self.forward = torch.compile(self.model, dynamic=True)
        else:
            self.forward = self.model
        self.form = "inference" if isinstance(model, MSNInference) else "training"
        super().__init__(model.config.upscale, np.float16 if fp16 else np.float32, ShapeProfile(),
                         "fp16" if fp16 else "fp32")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            return self.forward(x).cpu().numpy()
