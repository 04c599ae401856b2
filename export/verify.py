"""Run an exported graph on ONNX Runtime against the PyTorch training form, and judge it.

The reference is the training form (the eager model as the authors wrote it), not the module
that was traced, so a wrong inference form fails here too, not only a wrong export of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engines.onnxruntime_engine import OnnxRuntimeEngine
from msn import MSN
from validate.metrics import FP16_MIN_PSNR_DB, psnr

log = logging.getLogger(__name__)

FP32_MAX_ABS = 2e-4  # measured: about 2e-6 on random and official weights


class VerificationError(RuntimeError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class VerifyResult:
    max_abs: float
    psnr_db: float
    passed: bool
    criterion: str

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict} ({self.criterion}): max abs {self.max_abs:.2e}, PSNR {self.psnr_db:.1f} dB"


def smooth_test_image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A photo-like random input: coarse noise upscaled bicubically (pure pixel noise is far
    outside what MSN sees, and drives float16 activations into ranges no photo reaches)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def judge(out: np.ndarray, expected: np.ndarray, fp16: bool) -> VerifyResult:
    out64, exp64 = out.astype(np.float64), expected.astype(np.float64)
    if not np.isfinite(out64).all():
        return VerifyResult(float("inf"), float("-inf"), False, "finite output")
    max_abs = float(np.abs(out64 - exp64).max())
    psnr_db = psnr(out64, exp64)
    if fp16:
        return VerifyResult(max_abs, psnr_db, psnr_db >= FP16_MIN_PSNR_DB, f"PSNR >= {FP16_MIN_PSNR_DB:g} dB")
    return VerifyResult(max_abs, psnr_db, max_abs <= FP32_MAX_ABS, f"max abs <= {FP32_MAX_ABS:g}")


def verify_onnx(path: Path, model: MSN, fp16: bool, shape: tuple[int, int, int]) -> VerifyResult:
    """Compare ONNX Runtime (CPU) with the float32 PyTorch training form on one input."""
    x = smooth_test_image(*shape)
    with torch.no_grad():
        expected = model.float()(x).numpy()
    out = OnnxRuntimeEngine(path)(x.numpy())
    result = judge(out, expected, fp16)
    log.info("verification on %s: %s", "x".join(map(str, shape)), result)
    return result
