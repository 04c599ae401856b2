"""The report's metrics on small arrays whose answers are worked out by hand here."""

from __future__ import annotations

import math

import numpy as np

from msn_deploy.export.parity import FP16_MIN_PSNR_DB as CODE_FP16_FLOOR
from msn_deploy.msn.metrics import error_stats, psnr, psnr_y
from tests.util import FP16_MIN_PSNR_DB


def test_psnr():
    a, b = np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.1)
    assert math.isclose(psnr(a, b), 20.0, abs_tol=1e-9)  # mse 0.01 -> 10*log10(1/0.01)
    assert math.isclose(psnr(a, b * 255, peak=255.0), 20.0, abs_tol=1e-9)
    assert psnr(a, a) == math.inf


def test_psnr_y_rounds_y_and_crops_the_border():
    hr = np.full((12, 12, 3), 100, np.uint8)  # Y = 219/255*100 + 16 = 101.88 -> 102
    sr = np.full((12, 12, 3), 101 / 255)  # 8-bit 101: Y = 102.74 -> 103, one level off everywhere
    expected = 10 * math.log10(255**2 / 1.0)  # 48.1308 dB; without rounding Y it would be 49.45 dB
    assert math.isclose(psnr_y(sr, hr), expected, abs_tol=1e-9)
    sr[0, :, :] = 0.0  # inside the 4-pixel border: ignored
    assert math.isclose(psnr_y(sr, hr), expected, abs_tol=1e-9)
    sr[4, 4, :] = 0.0  # inside the crop: Y 16 vs 102 at one of 16 pixels
    crop_mse = (15 * 1.0 + 86.0**2) / 16
    assert math.isclose(psnr_y(sr, hr), 10 * math.log10(255**2 / crop_mse), abs_tol=1e-9)


def test_error_stats():
    ref = np.full(100, 0.5)
    err = (np.arange(100) / 1000) ** 2  # i^2 / 1e6: skewed, so mean, median and p99 all differ
    stats = error_stats(ref + err, ref)
    assert math.isclose(stats["max_abs"], 9.801e-3, abs_tol=1e-12)
    assert math.isclose(stats["mean_abs"], 3.2835e-3, abs_tol=1e-12)  # sum i^2 = 328350 (the median is 2.4505e-3)
    assert math.isclose(stats["p99_abs"], 9.60597e-3, abs_tol=1e-12)  # 98^2 + 0.01 * (99^2 - 98^2), / 1e6
    # ref is 8-bit 128 (round(127.5), half to even); more than one level off from e >= 2/255 = 7.843e-3,
    # that is from i = 89 (89^2 = 7921): 11 of 100 values.
    assert math.isclose(stats["over_1_lsb"], 0.11, abs_tol=1e-12)
    assert math.isclose(stats["psnr_db"], 10 * math.log10(1 / np.mean(err**2)), abs_tol=1e-9)
    assert stats["nonfinite"] == 0


def test_error_stats_counts_nonfinite_values():
    out = np.array([0.5, np.nan, np.inf, 0.25])
    stats = error_stats(out, np.full(4, 0.25))
    assert stats["nonfinite"] == 2
    assert math.isclose(stats["max_abs"], 0.25, abs_tol=1e-12)  # non-finite values count as 0 here


def test_code_fp16_floor_is_not_below_the_tests():
    assert CODE_FP16_FLOOR >= FP16_MIN_PSNR_DB
