"""Small numeric helpers for tests (independent of the code under test)."""

from __future__ import annotations

import copy

import numpy as np
import torch


def to_hwc(y) -> np.ndarray:
    """1x3xHxW tensor or array -> HxWx3 float64 numpy."""
    y = y.detach().cpu().double().numpy() if hasattr(y, "detach") else np.asarray(y, np.float64)
    return y[0].transpose(1, 2, 0)


def converted(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy in another dtype: converting a shared fixture in place (to half and back) would
    round its weights for every later test."""
    return copy.deepcopy(model).to(dtype)
