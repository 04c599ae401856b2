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
    def of(cls, seconds: list[float]) -> "Timing":
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


def measure(
    fn: Callable[[], object], *, warmup_s: float, runs: int, max_s: float, min_runs: int = 3, cuda: bool = False
) -> Timing:
    """Call fn until `warmup_s` has passed (at least once), then time up to `runs` calls,
    stopping early after `max_s` seconds once `min_runs` calls are in."""
    timer = _timer(cuda)
    start = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - start >= warmup_s:
            break
    seconds: list[float] = []
    start = time.perf_counter()
    while len(seconds) < runs and (len(seconds) < min_runs or time.perf_counter() - start < max_s):
        seconds.append(timer(fn))
    return Timing.of(seconds)


def measure_cold(fn: Callable[[], object], runs: int, cuda: bool = False) -> Timing:
    """The NTIRE protocol: no warm-up, every call counted (report the mean)."""
    timer = _timer(cuda)
    return Timing.of([timer(fn) for _ in range(runs)])
