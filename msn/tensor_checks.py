"""The networks' own input checks, on torch tensors (msn.validation holds the rules they apply)."""

from __future__ import annotations

import torch

from msn_deploy.msn.validation import InputError, check_batch, check_values, checked_by_caller


def check_input(x: torch.Tensor, channels: int = 3) -> None:
    """Raise InputError unless x is a floating NCHW tensor batch of finite [0, 1] pixels."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected a torch.Tensor, got {type(x).__name__}")
    check_batch(x.shape, x.is_floating_point(), x.dtype, channels)
    check_values(float(x.min()), float(x.max()), bool(torch.isfinite(x).all()))


def should_check(x: torch.Tensor) -> bool:
    """Checks are Python control flow: skip them while a graph is being traced, compiled or
    captured (CUDA graphs), and where the caller has checked the input already."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False  # first: the compilers never look at the thread-local state below
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        return False
    return not checked_by_caller()
