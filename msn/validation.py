"""Input checks shared by both forms of the network."""

from __future__ import annotations

import torch

from msn.config import MIN_INPUT_SIZE


class InputError(ValueError):
    """An input the network cannot process, with what to do about it."""


def check_batch(shape: tuple[int, ...], floating: bool, dtype: object, channels: int = 3) -> None:
    """Raise InputError unless `shape` is an NCHW batch of `channels` channels with H and W >= 29
    and the elements are floating. Shared by the PyTorch models and every engine backend."""
    shape = tuple(shape)
    if len(shape) != 4:
        raise InputError(f"expected an NCHW batch (4 dims), got shape {shape}; add a batch axis with x[None]")
    if shape[1] != channels:
        raise InputError(
            f"expected {channels} channels (RGB), got {shape[1]} in shape {shape}; "
            "convert grayscale or RGBA images to RGB first"
        )
    if not floating:
        raise InputError(f"expected floats in [0, 1], got {dtype}; divide 8-bit images by 255")
    h, w = shape[2:]
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise InputError(
            f"input is {h}x{w} but MSN needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels; "
            "pad the image (reflect) or upscale it another way"
        )


def check_input(x: torch.Tensor, channels: int = 3) -> None:
    """Raise InputError unless x is a floating NCHW tensor batch that MSN can process."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected a torch.Tensor, got {type(x).__name__}")
    check_batch(x.shape, x.is_floating_point(), x.dtype, channels)


def should_check(x: torch.Tensor) -> bool:
    """Checks are Python control flow: skip them while a graph is being traced or compiled."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())
