"""Error and quality metrics on HxWx3 images (float in [0, 1] unless said otherwise)."""

from __future__ import annotations

import numpy as np

from export.parity import psnr
from msn import UsageError

# ITU-R BT.601 luma on [0, 255] RGB. The NTIRE evaluation rounds Y of uint8 images to integers.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to 8 bits, as when the output is saved as an image."""
    return np.round(np.clip(np.asarray(img, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """PSNR on the Y channel (NTIRE protocol): output clamped and rounded to 8 bits, Y rounded,
    `border` pixels cropped."""
    def luma(img_u8: np.ndarray) -> np.ndarray:
        return np.round(img_u8.astype(np.float64) @ _Y_WEIGHTS + 16.0)

    y_sr, y_hr = luma(to_uint8(sr)), luma(np.asarray(hr, np.uint8))
    if border:
        y_sr, y_hr = y_sr[border:-border, border:-border], y_hr[border:-border, border:-border]
    return psnr(y_sr, y_hr, peak=255.0)


def error_stats(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """How far `out` is from `ref`: abs-error quantiles, PSNR, 8-bit disagreement, non-finite count."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise UsageError(f"output shape {out.shape} differs from reference shape {ref.shape}")
    finite = np.isfinite(out)
    err = np.abs(np.where(finite, out, 0.0) - ref)
    level_diff = np.abs(to_uint8(np.where(finite, out, 0.0)).astype(np.int16) - to_uint8(ref).astype(np.int16))
    return {
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "p99_abs": float(np.percentile(err, 99)),
        "psnr_db": psnr(np.where(finite, out, 0.0), ref),
        "over_1_lsb": float(np.mean(level_diff > 1)),
        "nonfinite": int((~finite).sum()),
    }
