"""Small numeric helpers for tests (independent of the code under test)."""

from __future__ import annotations

import copy

import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def to_hwc(y) -> np.ndarray:
    """1x3xHxW tensor or array -> HxWx3 float64 numpy."""
    y = y.detach().cpu().double().numpy() if hasattr(y, "detach") else np.asarray(y, np.float64)
    return y[0].transpose(1, 2, 0)


def converted(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy in another dtype: converting a shared fixture in place (to half and back) would
    round its weights for every later test."""
    return copy.deepcopy(model).to(dtype)
