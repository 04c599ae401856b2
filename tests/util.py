"""Small numeric helpers for tests (independent of the code under test)."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path

import numpy as np
import torch

# The one FP16 floor of every test, vs the float64 references (or float32 eager): 8-bit
# quantisation noise alone is 20*log10(255*sqrt(12)) = 58.9 dB, and FP16 must stay below it. The
# code's own floor (export.parity.FP16_MIN_PSNR_DB) is checked against this one.
FP16_MIN_PSNR_DB = 60.0

# Bounds a command the tests start (a whole job, or its stop after a signal) on a busy machine: a
# healthy one takes seconds. A bound that catches hangs, never a measure of speed.
SUBPROCESS_TIMEOUT_S = 600


def to_hwc(y) -> np.ndarray:
    """1x3xHxW tensor or array -> HxWx3 float64 numpy."""
    y = y.detach().cpu().double().numpy() if hasattr(y, "detach") else np.asarray(y, np.float64)
    return y[0].transpose(1, 2, 0)


def converted(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy in another dtype: converting a shared fixture in place (to half and back) would
    round its weights for every later test."""
    return copy.deepcopy(model).to(dtype)


def exit_code(main, args: list[str]) -> int:
    """A CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def png_claiming(width: int, height: int, image_data: bytes | None = b"\0") -> bytes:
    """A tiny RGB PNG whose header claims width x height (a decompression bomb's shape); its IDAT
    holds `image_data` compressed, or is left out when None."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = chunk(b"IDAT", zlib.compress(image_data)) if image_data is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def visible_names(folder: Path) -> list[str]:
    """A folder's entries, sorted, without hidden ones (a job's manifest, temporary files)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
