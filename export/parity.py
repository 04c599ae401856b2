"""How close an output must be to the eager FP32 model: the floors every layer shares.

The exporter's verification, the engines' tests and the validator all judge with these, so they
live below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msn_deploy.msn import metrics

# The FP16 floor everywhere (exporter, validator, tests): above 8-bit quantisation noise (58.9 dB),
# below what the FP16 graph measures on photos (67-77 dB vs float64).
FP16_MIN_PSNR_DB = 60.0
# ncnn in FP16 on Vulkan computes in float16 throughout (convolutions accumulate in it; only the
# statistics are kept FP32): measured 58-64 dB vs float64 on lavapipe, so its own floor, set by #33.
NCNN_FP16_MIN_PSNR_DB = 50.0
# OpenVINO's bf16 on a CPU (an FP32 graph on AVX512_BF16/AMX units) rounds activations and the
# output to bfloat16's 8-bit mantissa: measured 51.1 dB (astronaut, worst pixel 19 levels) and
# 55.5 dB (chelsea) vs float64 with the official weights, 47.4 dB with random-init weights on the
# validator's synthetic image; marking statistics or end convolutions to stay FP32 changed nothing
# (OpenVINO 2026.4, docs/BENCHMARKS.md). Its floor sits below the lowest of these.
OPENVINO_BF16_MIN_PSNR_DB = 45.0
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


@dataclass(frozen=True)
class Tolerance:
    """The numbers of the one pass rule, as data: an output computed in FP32 is within
    atol + rtol * |expected| of the expected one everywhere; one computed in half precision has a
    PSNR vs expected of at least min_psnr_db; NaN/Inf always fails. The exporter's checks use the
    defaults; the validator passes its --atol/--rtol/--min-psnr, and a backend its own FP16 floor."""

    atol: float = FP32_MAX_ABS
    rtol: float = 0.0
    min_psnr_db: float = FP16_MIN_PSNR_DB

    def judge(self, out: np.ndarray, expected: np.ndarray, precision: str) -> ParityResult:
        out64, exp64 = np.asarray(out, np.float64), np.asarray(expected, np.float64)
        if not np.isfinite(out64).all():
            return ParityResult(float("inf"), float("-inf"), False, "finite output")
        error = metrics.max_abs(out64, exp64)
        psnr_db = metrics.psnr(out64, exp64)
        if precision != "fp32":
            return ParityResult(error, psnr_db, psnr_db >= self.min_psnr_db, f"PSNR >= {self.min_psnr_db:g} dB")
        passed = bool(np.all(np.abs(out64 - exp64) <= self.atol + self.rtol * np.abs(exp64)))
        criterion = f"max abs <= {self.atol:g}" + (f" + {self.rtol:g} x |expected|" if self.rtol else "")
        return ParityResult(error, psnr_db, passed, criterion)
