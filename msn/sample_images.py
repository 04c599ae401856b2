"""Photo-like inputs for checks and benchmarks, shared by every layer and the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def smooth_test_image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A photo-like random input: coarse noise upscaled bicubically (pure pixel noise is far
    outside what MSN sees, and drives float16 activations into ranges no photo reaches)."""
    # torch on first call, not on import: commands that import this answer --help without it
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
