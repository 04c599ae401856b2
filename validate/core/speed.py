"""One speed loop for every validator: the engines timed round-robin on one input shape (warm-up
by time, then interleaved runs, so a shared machine's slow spells fall on every backend alike),
and one row schema for what comes out:

    {"backend": label, "shape": "NxHxW", "timing": Timing.as_dict(), "device_timing": ... or None,
     "speedup_vs_eager": eager median / this median (None without the baseline), "frames_per_s",
     "out_mp_per_s", "peak_memory_mb": ... or None}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from msn_deploy.validate.core.tables import cell, markdown_table
from msn_deploy.validate.core.timing import measure_interleaved
from msn_deploy.validate.core.variants import BASELINE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedBudget:
    warmup_s: float  # per engine and shape
    runs: int  # at most, per engine and shape
    max_s: float  # timed seconds per engine and shape, once it has three runs


def time_shape(calls: Mapping[str, Callable[[], object]], shape: tuple[int, int, int], scale: int,
               budget: SpeedBudget, cuda: bool, *, device_calls: Mapping[str, Callable[[], object]] | None = None,
               peak_memory_mb: Mapping[str, float | None] | None = None) -> list[dict]:
    """One row per engine in `calls` (each runs the shape once). `device_calls`: the same engines on
    an input already on the GPU, timed apart so that the host copies can be read off."""
    timing = dict(warmup_s=budget.warmup_s, runs=budget.runs, max_s=budget.max_s)
    timings = measure_interleaved(dict(calls), **timing, cuda=cuda)
    on_device = measure_interleaved(dict(device_calls), **timing, cuda=True) if device_calls else {}
    base = timings.get(BASELINE)
    n, h, w = shape
    rows = []
    for name, t in timings.items():
        rows.append({"backend": name, "shape": f"{n}x{h}x{w}", "timing": t.as_dict(),
                     "device_timing": on_device[name].as_dict() if name in on_device else None,
                     "speedup_vs_eager": base.median_ms / t.median_ms if base else None,
                     "frames_per_s": 1000 * n / t.median_ms,
                     "out_mp_per_s": n * h * w * scale**2 / 1e6 / (t.median_ms / 1e3),
                     "peak_memory_mb": (peak_memory_mb or {}).get(name)})
        log.info("speed  %-28s %-12s median %8.2f ms  (%d runs, CV %.3f)", name, rows[-1]["shape"], t.median_ms,
                 t.runs, t.cv)
    return rows


def lr_size(row: dict) -> tuple[int, int]:
    """(H, W) of a speed row's input."""
    _, h, w = (int(v) for v in row["shape"].split("x"))
    return h, w


# The columns a speed table can show, each with its header and how a row gives its cell.
SPEED_COLUMNS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "backend": ("backend", lambda r: r["backend"]),
    "shape": ("shape (NxHxW)", lambda r: r["shape"]),
    "runs": ("runs", lambda r: str(r["timing"]["runs"])),
    "median": ("median ms", lambda r: cell(r["timing"]["median_ms"], ".2f")),
    "p95": ("p95 ms", lambda r: cell(r["timing"]["p95_ms"], ".2f")),
    "p99": ("p99 ms", lambda r: cell(r["timing"]["p99_ms"], ".2f")),
    "cv": ("CV", lambda r: f"{r['timing']['cv']:.3f}"),
    "on_device": ("on-device ms", lambda r: cell(r["device_timing"] and r["device_timing"]["median_ms"], ".2f")),
    "speedup": ("speed-up vs eager", lambda r: cell(r["speedup_vs_eager"], ".2f", "x")),
    "frames_per_s": ("frames/s", lambda r: f"{r['frames_per_s']:.2f}"),
    "out_mp_per_s": ("out MP/s", lambda r: f"{r['out_mp_per_s']:.2f}"),
    "peak_memory": ("peak MiB", lambda r: cell(r["peak_memory_mb"], ".2f")),
}


def speed_table(rows: list[dict], columns: list[str]) -> list[str]:
    """The Markdown table of speed rows (the schema above) in the chosen `columns` of SPEED_COLUMNS."""
    if not rows:
        return ["(none)"]
    return markdown_table([SPEED_COLUMNS[c][0] for c in columns], [[SPEED_COLUMNS[c][1](r) for c in columns]
                                                                    for r in rows])
