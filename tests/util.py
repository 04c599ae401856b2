"""Small numeric helpers for tests (independent of the code under test)."""

from __future__ import annotations

import copy

import numpy as np
import torch

# The one FP16 floor of every test, vs the float64 references (or float32 eager): 8-bit
# quantisation noise alone is 20*log10(255*sqrt(12)) = 58.9 dB, and FP16 must stay below it. The
# code's own floor (export.parity.FP16_MIN_PSNR_DB) is checked against this one.
FP16_MIN_PSNR_DB = 60.0


def to_hwc(y) -> np.ndarray:
    """1x3xHxW tensor or array -> HxWx3 float64 numpy."""
    y = y.detach().cpu().double().numpy() if hasattr(y, "detach") else np.asarray(y, np.float64)
    return y[0].transpose(1, 2, 0)


def converted(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy in another dtype: converting a shared fixture in place (to half and back) would
    round its weights for every later test."""
    return copy.deepcopy(model).to(dtype)


def exit_code(main, args: list[str]) -> int:
    """A CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code
