"""Error and quality metrics, one definition each, for every layer: the exporter's parity check,
the engines' tests, the validator, the layer-by-layer search and the GPU suite.

Images are HxWx3 floats in [0, 1] unless said otherwise; 8-bit levels are what a saved image holds.
"""

from __future__ import annotations

import numpy as np

from msn_deploy.msn.errors import UsageError


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


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


def tensor_error(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, int]:
    """(max abs, PSNR against the reference's peak, non-finite count) of a candidate tensor."""
    ref = np.asarray(reference, np.float64)
    out = np.asarray(candidate, np.float64)
    finite = np.isfinite(out)
    nonfinite = int(out.size - finite.sum())
    if not np.isfinite(ref).all():  # the reference itself overflowed: nothing to hold the candidate to
        return float("nan"), float("nan"), nonfinite
    err = np.abs(np.where(finite, out, 0.0) - ref)
    max_abs = float(err.max()) if err.size else 0.0
    # The tensor's own peak, but at least 1 (the scale of the pixels): a tensor of near-zero values
    # (a mean, a small gate) is not held to a relative precision no float format has.
    peak = max(float(np.abs(ref).max()) if ref.size else 0.0, 1.0)
    mse = float(np.mean(err**2)) if err.size else 0.0
    psnr_db = float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))
    return max_abs, psnr_db, nonfinite
