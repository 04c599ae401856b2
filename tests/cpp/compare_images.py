"""Compare two images pixel by pixel (same size, channels and bit depth); exit 1 if they differ.

    python tests/cpp/compare_images.py A.png B.png --max-diff 1
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--max-diff", type=int, default=0, help="largest allowed difference in levels")
    args = p.parse_args(argv)
    a, b = (cv2.imread(path, cv2.IMREAD_UNCHANGED) for path in (args.a, args.b))
    if a is None or b is None:
        print(f"cannot read {args.a if a is None else args.b}")
        return 1
    if a.shape != b.shape or a.dtype != b.dtype:
        print(f"{a.shape} {a.dtype} vs {b.shape} {b.dtype}")
        return 1
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    print(f"max diff {diff.max()} levels, {np.count_nonzero(diff)} of {diff.size} samples differ")
    return 0 if diff.max() <= args.max_diff else 1


if __name__ == "__main__":
    sys.exit(main())
