"""Input checks shared by both forms of the network and every engine, on shapes and statistics
(no torch here: the graph runtimes check their numpy batches with these; msn.tensor_checks
holds the checks on torch tensors)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from msn_deploy.msn.config import MIN_INPUT_SIZE
from msn_deploy.msn.errors import UsageError


class InputError(UsageError, ValueError):
    """An input the network cannot process, with what to do about it (a ValueError too)."""


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


# Pixels are [0, 1]; a little overshoot from resampling or colour conversion is fine, 0-255 is not.
VALUE_RANGE = (-1.0, 2.0)


def check_values(low: float, high: float, finite: bool) -> None:
    """Raise InputError for NaN/Inf pixels or values clearly outside [0, 1] (e.g. 0-255 floats):
    both would come out as a silently wrong image, since CCA normalises over the whole image."""
    if not finite:
        raise InputError("input contains NaN or Inf pixels; MSN's whole-image statistics would spread them "
                         "over the entire output. Replace them (e.g. numpy.nan_to_num) first")
    if low < VALUE_RANGE[0] or high > VALUE_RANGE[1]:
        hint = "; it looks like 0-255 data: divide by 255" if high > 2.0 else ""
        raise InputError(f"input values span [{low:.4g}, {high:.4g}] but MSN expects [0, 1]{hint}")


_checked_by_caller = threading.local()


@contextmanager
def inputs_checked() -> Iterator[None]:
    """For callers that have checked the input already (the engines do, on the input's device):
    the models skip their own check, which would wait for the GPU and copy statistics to the host."""
    before = getattr(_checked_by_caller, "active", False)
    _checked_by_caller.active = True
    try:
        yield
    finally:
        _checked_by_caller.active = before


def checked_by_caller() -> bool:
    """Whether this thread runs inside `inputs_checked`."""
    return getattr(_checked_by_caller, "active", False)
