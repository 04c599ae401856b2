"""Seam error of tiled inference: tiled output vs whole-image output of the same engine.

CCA normalises each tile with that tile's own statistics, so no tiling is exact; this measures
how far it is, per tile size and overlap (LR px), in 8-bit levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from msn_deploy import engines
from msn_deploy.engines.media.images import read_image
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.tiling import check_tiling
from msn_deploy.msn import MissingFileError
from msn_deploy.msn.cli import hw_size, non_negative_int, positive_int, run_cli
from msn_deploy.msn.metrics import psnr
from msn_deploy.validate.core.tables import markdown_table


def seam_error(engine: Engine, image: np.ndarray, tile: int, overlap: int,
               whole: np.ndarray | None = None) -> dict[str, float]:
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


def parse_tiles(text: str) -> list[tuple[int, int]]:
    """Comma-separated TILE/OVERLAP pairs in LR px, e.g. 64/16,256/32."""
    pairs = []
    for part in text.split(","):
        tile, sep, overlap = part.strip().partition("/")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected TILE/OVERLAP pairs such as 64/16,256/32, got {text!r}")
        pairs.append((positive_int(tile), non_negative_int(overlap)))
    return pairs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-seams", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="checkpoint, .onnx or .plan")
    p.add_argument("--image", type=Path, required=True, help="image used as the LR input")
    p.add_argument("--resize", type=hw_size, metavar="HxW", help="resize the image to HxW (LR px) first")
    p.add_argument("--tiles", type=parse_tiles, default=parse_tiles("64/16,128/16,128/32,256/32"),
                   help="tile/overlap pairs in LR px (default 64/16,128/16,128/32,256/32)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """python -m msn_deploy.validate.benches.seams --model msn_x4_fp32.onnx --image photo.png --resize 256x384"""
    args = parse_args(argv)
    return run_cli(lambda: print_seams(args), verbose=args.verbose)


def print_seams(args: argparse.Namespace) -> None:
    for tile, overlap in args.tiles:
        check_tiling(tile, overlap)
    if not args.image.is_file():
        raise MissingFileError(f"--image {args.image} does not exist")
    rgb = read_image(args.image).rgb
    if args.resize:
        h, w = args.resize
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).clip(0, 1)
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    engine = engines.load(args.model)
    whole = engine(x)
    print(f"Seams on {args.image} ({x.shape[2]}x{x.shape[3]} LR), {engine.backend} {engine.precision}")
    rows = []
    for tile, overlap in args.tiles:
        r = seam_error(engine, x, tile, overlap, whole)
        rows.append((tile, overlap, f"{r['max_lsb']:.2f}", f"{r['p99_lsb']:.2f}", f"{r['mean_lsb']:.3f}",
                     f"{100 * r['over_1_lsb']:.2f}%", f"{r['psnr_db']:.1f}"))
    columns = ["tile", "overlap", "max (8-bit levels)", "p99", "mean", "pixels > 1 level", "PSNR dB"]
    print("\n".join(markdown_table(columns, rows)))


if __name__ == "__main__":
    sys.exit(main())
