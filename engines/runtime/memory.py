"""How much memory a whole-image run may take, and the tile size that keeps a run within it.

MSN's peak memory grows with the image: its activations are full resolution, and the output has
16x the input's pixels. Measured per LR pixel for each CPU runtime (docs/BENCHMARKS.md), a
2000x1500 photo takes about 9 GB and a 4000x3000 one would not fit a 24 GB machine. So a photo
whose whole-image run would exceed the budget is tiled, at the largest tile that fits it. The
budget is a share of the memory available when the image arrives (MemAvailable: what the machine
can give without swapping, other processes counted), or `$MSN_MEMORY_BUDGET_MB`.
"""

from __future__ import annotations

import math
import os

from msn_deploy.msn.errors import UsageError

BUDGET_ENV = "MSN_MEMORY_BUDGET_MB"
AVAILABLE_SHARE = 0.5  # of MemAvailable: room for the decoded image, the encoder and the neighbours
MIN_BUDGET_TILE = 128  # LR px: smaller tiles cost more seams than the memory they save

# Peak host memory of a whole-image FP32 run on the CPU, bytes per LR pixel: the slope between a
# 400x400 and an 800x600 run (msn-memory-bench, docs/BENCHMARKS.md), rounded up. Output buffers
# are counted; the decoded photo and its encoder are what the budget's other half is for.
CPU_PEAK_BYTES_PER_PIXEL = {"openvino": 1700, "onnxruntime": 2650, "ncnn": 2750, "torch": 1250}
# What a tiled photo still holds whole, bytes per LR pixel: the decoded input, the float32 output
# and its blend weights, the 8-bit copy and the encoder's buffer. Measured: a 2000x1500 photo
# tiled at 526 px peaked 2.1 GB above its tile's run (msn-upscale, /usr/bin/time).
TILED_IMAGE_BYTES_PER_PIXEL = 700


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def configured_budget() -> tuple[int, str] | None:
    """The budget `$MSN_MEMORY_BUDGET_MB` sets (bytes, and that source), or None when it is unset;
    UsageError for a value that is not a size."""
    text = os.environ.get(BUDGET_ENV)
    if not text:
        return None
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes > 0):
        raise UsageError(f"{BUDGET_ENV} must be a number of megabytes above 0, got {text!r}")
    return int(megabytes * 2**20), f"{BUDGET_ENV}={text}"


def memory_budget() -> tuple[int, str] | None:
    """The bytes a whole-image run may take and where that figure comes from, or None (unknown)."""
    configured = configured_budget()
    if configured is not None:
        return configured
    available = available_bytes()
    if available is None:
        return None
    return int(available * AVAILABLE_SHARE), f"{AVAILABLE_SHARE:.0%} of the {available / 2**30:.1f} GB available"


def cpu_peak_bytes_per_pixel(backend: str, device: str) -> int | None:
    """What a whole-image run takes per LR pixel in host memory, or None off the CPU (a GPU's own
    memory is not what this budget bounds)."""
    return CPU_PEAK_BYTES_PER_PIXEL[backend] if device == "cpu" else None


def tile_within(budget: int, bytes_per_pixel: int, h: int = 0, w: int = 0) -> int:
    """The largest square tile (LR px) whose run fits `budget` beside what an h x w photo holds
    whole while it is tiled (TILED_IMAGE_BYTES_PER_PIXEL), and never below MIN_BUDGET_TILE."""
    left = budget - h * w * TILED_IMAGE_BYTES_PER_PIXEL
    return max(MIN_BUDGET_TILE, math.isqrt(max(left, 0) // bytes_per_pixel))
