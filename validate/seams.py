"""Seam error of tiled inference: tiled output vs whole-image output of the same engine.

CCA normalises each tile with that tile's own statistics, so no tiling is exact; this measures
how far it is, per tile size and overlap (LR px), in 8-bit levels.
"""

from __future__ import annotations

import numpy as np

from engines.base import Engine


def seam_error(engine: Engine, image: np.ndarray, tile: int, overlap: int, whole: np.ndarray | None = None) -> dict[str, float]:
    """image: 1x3xHxW in [0, 1]. Returns max/mean abs error in 8-bit levels and PSNR."""
    whole = engine(image) if whole is None else whole
    tiled = engine(image, tile=tile, overlap=overlap)
    err = np.abs(tiled.astype(np.float64) - whole.astype(np.float64)) * 255
    mse = float(np.mean((err / 255) ** 2))
    return {
        "tile": tile,
        "overlap": overlap,
        "max_lsb": float(err.max()),
        "mean_lsb": float(err.mean()),
        "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(1 / mse)),
    }
