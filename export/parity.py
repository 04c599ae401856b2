"""How close an output must be to the eager FP32 model: the floors every layer shares.

The exporter's verification, the engines' tests and the validator all judge with these, so they
live below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msn import metrics

# The FP16 floor everywhere (exporter, validator, tests): above 8-bit quantisation noise (58.9 dB),
# below what the FP16 graph measures on photos (67-77 dB vs float64).
FP16_MIN_PSNR_DB = 60.0
# ncnn in FP16 on Vulkan computes in float16 throughout (convolutions accumulate in it; only the
# statistics are kept FP32): measured 58-64 dB vs float64 on lavapipe, so its own floor, set by #33.
NCNN_FP16_MIN_PSNR_DB = 50.0
# The exporter's FP32 bound vs the eager training form; measured about 2e-6 on random and official weights.
FP32_MAX_ABS = 2e-4


@dataclass(frozen=True)
class ParityResult:
    max_abs: float
    psnr_db: float
    passed: bool
    criterion: str

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict} ({self.criterion}): max abs {self.max_abs:.2e}, PSNR {self.psnr_db:.1f} dB"


def judge(out: np.ndarray, expected: np.ndarray, fp16: bool, min_psnr_db: float = FP16_MIN_PSNR_DB,
          max_abs: float = FP32_MAX_ABS) -> ParityResult:
    """FP16: PSNR vs expected >= min_psnr_db; FP32: max abs error <= max_abs; NaN/Inf always fails."""
    out64, exp64 = np.asarray(out, np.float64), np.asarray(expected, np.float64)
    if not np.isfinite(out64).all():
        return ParityResult(float("inf"), float("-inf"), False, "finite output")
    error = metrics.max_abs(out64, exp64)
    psnr_db = metrics.psnr(out64, exp64)
    if fp16:
        return ParityResult(error, psnr_db, psnr_db >= min_psnr_db, f"PSNR >= {min_psnr_db:g} dB")
    return ParityResult(error, psnr_db, error <= max_abs, f"max abs <= {max_abs:g}")
