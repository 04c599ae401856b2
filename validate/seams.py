"""Seam error of tiled inference: tiled output vs whole-image output of the same engine.

CCA normalises each tile with that tile's own statistics, so no tiling is exact; this measures
how far it is, per tile size and overlap (LR px), in 8-bit levels.
"""

from __future__ import annotations

import numpy as np

from engines.base import Engine
from validate.metrics import psnr


def seam_error(engine: Engine, image: np.ndarray, tile: int, overlap: int, whole: np.ndarray | None = None) -> dict[str, float]:
    """image: 1x3xHxW in [0, 1]. Returns abs error in 8-bit levels (max, p99, mean, share > 1) and PSNR."""
    whole = engine(image) if whole is None else whole
    tiled = engine(image, tile=tile, overlap=overlap)
    err = np.abs(tiled.astype(np.float64) - whole.astype(np.float64)) * 255
    return {
        "tile": tile,
        "overlap": overlap,
        "max_lsb": float(err.max()),
        "mean_lsb": float(err.mean()),
        "p99_lsb": float(np.percentile(err, 99)),
        "over_1_lsb": float(np.mean(err > 1)),
        "psnr_db": psnr(tiled, whole),
    }


def main(argv: list[str] | None = None) -> int:
    """python -m validate.seams --model msn_x4_fp32.onnx --image photo.png --resize 384x256"""
    import argparse

    import cv2

    import engines
    from engines.images import read_image
    from msn.logs import setup_logging

    p = argparse.ArgumentParser(description="Seam error of tiled vs whole-image inference.")
    p.add_argument("--model", default="official", help="checkpoint, .onnx or .plan")
    p.add_argument("--image", required=True, help="image used as the LR input")
    p.add_argument("--resize", help="resize the image to WxH first")
    p.add_argument("--tiles", default="64/16,128/16,128/32,256/32", help="tile/overlap pairs (LR px)")
    args = p.parse_args(argv)
    setup_logging()
    rgb = read_image(args.image).rgb
    if args.resize:
        w, h = (int(v) for v in args.resize.split("x"))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).clip(0, 1)
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    engine = engines.load(args.model)
    whole = engine(x)
    print(f"Seams on {args.image} ({x.shape[2]}x{x.shape[3]} LR), {engine.backend} {engine.precision}")
    print("| tile | overlap | max (8-bit levels) | p99 | mean | pixels > 1 level | PSNR dB |\n|---|---|---|---|---|---|---|")
    for pair in args.tiles.split(","):
        tile, overlap = (int(v) for v in pair.split("/"))
        r = seam_error(engine, x, tile, overlap, whole)
        print(f"| {tile} | {overlap} | {r['max_lsb']:.2f} | {r['p99_lsb']:.2f} | {r['mean_lsb']:.3f} | "
              f"{100 * r['over_1_lsb']:.2f}% | {r['psnr_db']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
