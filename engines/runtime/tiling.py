"""Tiled inference for images larger than an engine's profile or memory budget.

The rule (shared with the C++ library, which must produce the same plans and weights):

* Tiles are `tile` LR pixels square (clamped to the image), overlapping by `overlap` LR pixels
  on each shared edge. Along an axis of length L, the tile starts are 0, stride, 2*stride, ...
  with stride = tile - overlap, and the last start is clamped to L - tile so that every tile is
  full-size (no tile smaller than MSN's 29x29 minimum is ever produced).
* Each tile's SR output is weighted by a separable ramp: 1 in the tile's interior, rising
  linearly over the `overlap * scale` SR pixels next to an edge that is shared with another
  tile (edges on the image border keep weight 1). Outputs are accumulated and divided by the
  summed weights.

CCA normalises with whole-tile statistics, so tiled output is never bit-equal to whole-image
output; the overlap hides the seams (measured in tests and the validator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msn_deploy.msn import MIN_INPUT_SIZE, InputError

TILE_OVERLAP = 32  # LR px each tile shares with its neighbours, by default


def check_tiling(tile: int, overlap: int) -> None:
    """Raise InputError (a ValueError) for a tile size or overlap that no plan can use."""
    if tile < MIN_INPUT_SIZE:
        raise InputError(f"tile {tile} is below MSN's minimum input of {MIN_INPUT_SIZE} px; "
                         f"use --tile {MIN_INPUT_SIZE} "
                         "or more (256 is a good default), or no --tile for whole images")
    if not 0 <= overlap < tile // 2:
        raise InputError(f"overlap {overlap} must be in [0, {tile // 2 - 1}] for tile {tile} (less than half a tile)")


@dataclass(frozen=True)
class Tile:
    y: int  # LR px, top
    x: int  # LR px, left
    h: int
    w: int


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis (LR px)."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class TilePlan:
    height: int  # LR px
    width: int  # LR px
    tile: int  # LR px
    overlap: int  # LR px

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        if min(self.height, self.width) < MIN_INPUT_SIZE:
            raise InputError(f"image {self.height}x{self.width} is below MSN's minimum "
                             f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")

    def tiles(self) -> list[Tile]:
        th, tw = min(self.tile, self.height), min(self.tile, self.width)
        return [
            Tile(y, x, th, tw)
            for y in axis_starts(self.height, self.tile, self.overlap)
            for x in axis_starts(self.width, self.tile, self.overlap)
        ]


def ramp(length: int, ramp_len: int, rise_start: bool, rise_end: bool) -> np.ndarray:
    """1-D blend weight over `length` SR px: linear ramps of `ramp_len` at the chosen ends.

    The ramp is (i + 0.5) / ramp_len for i in [0, ramp_len): it never reaches 0, so every
    output pixel keeps a positive total weight.
    """
    w = np.ones(length, np.float32)
    if ramp_len > 0:
        rise = (np.arange(ramp_len, dtype=np.float32) + 0.5) / ramp_len
        if rise_start:
            w[:ramp_len] = np.minimum(w[:ramp_len], rise)
        if rise_end:
            w[length - ramp_len :] = np.minimum(w[length - ramp_len :], rise[::-1])
    return w


def tile_weight(plan: TilePlan, tile: Tile, scale: int) -> np.ndarray:
    """(h*scale) x (w*scale) blend weight of one tile."""
    r = plan.overlap * scale
    wy = ramp(tile.h * scale, r, tile.y > 0, tile.y + tile.h < plan.height)
    wx = ramp(tile.w * scale, r, tile.x > 0, tile.x + tile.w < plan.width)
    return wy[:, None] * wx[None, :]
