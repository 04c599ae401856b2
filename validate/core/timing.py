"""Latency measurement: warm-up by time, then timed runs; CUDA events on GPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    runs: int
    median_ms: float
    mean_ms: float
    p95_ms: float
    p99_ms: float
    cv: float  # standard deviation / mean

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ms = np.asarray(seconds) * 1e3
        return cls(
            runs=len(ms),
            median_ms=float(np.median(ms)),
            mean_ms=float(ms.mean()),
            p95_ms=float(np.percentile(ms, 95)),
            p99_ms=float(np.percentile(ms, 99)),
            cv=float(ms.std() / ms.mean()) if ms.mean() > 0 else 0.0,
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _timer(cuda: bool) -> Callable[[Callable[[], object]], float]:
    if not cuda:
        def wall(fn: Callable[[], object]) -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return wall
    import torch

    def events(fn: Callable[[], object]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return events


def measure_interleaved(
    fns: dict[str, Callable[[], object]], *, warmup_s: float, runs: int, max_s: float, min_runs: int = 3,
    cuda: bool = False,
) -> dict[str, Timing]:
    """Warm each fn up for `warmup_s` (at least one call), then time them round-robin: one call of
    each per round, up to `runs` rounds. Interleaving spreads a shared machine's slow spells over
    every backend instead of whichever happened to run then, so the ratios stay fair. A fn stops
    being timed once it has used `max_s` seconds and has `min_runs` calls."""
    timer = _timer(cuda)
    for fn in fns.values():
        start = time.perf_counter()
        while True:
            fn()
            if time.perf_counter() - start >= warmup_s:
                break
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        active = [n for n in fns if len(seconds[n]) < min_runs or sum(seconds[n]) < max_s]
        if not active:
            break
        for name in active:
            seconds[name].append(timer(fns[name]))
    return {name: Timing.of(s) for name, s in seconds.items()}


def measure_cold(fn: Callable[[], object], runs: int, cuda: bool = False) -> Timing:
    """The NTIRE protocol: no warm-up, every call counted (report the mean)."""
    timer = _timer(cuda)
    return Timing.of([timer(fn) for _ in range(runs)])
