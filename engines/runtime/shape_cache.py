"""What an engine builds once per input shape (a compiled model, a captured CUDA graph), the most
recently used few kept: one cache for every backend that builds per shape."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from msn_deploy.msn import UsageError

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
Built = TypeVar("Built")


class ShapeCache(Generic[Built]):
    def __init__(self, size: int, what: str) -> None:
        """`size`: how many shapes are kept (the least recently used goes first); `what` names the
        built thing in the log."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise UsageError(f"cache_size must be >= 1, got {size}")
        self.size, self.what = size, what
        self._built: OrderedDict[Shape, Built] = OrderedDict()

    def get(self, shape: Shape, build: Callable[[], Built]) -> Built:
        """The thing built for `shape`: from the cache, else `build()`, evicting the oldest."""
        built = self._built.get(shape)
        if built is not None:
            self._built.move_to_end(shape)
            return built
        built = self._built[shape] = build()
        while len(self._built) > self.size:
            evicted, _ = self._built.popitem(last=False)
            log.debug("dropped the %s for %s", self.what, "x".join(map(str, evicted)))
        return built

    def shapes(self) -> list[Shape]:
        """The shapes held, least recently used first."""
        return list(self._built)

    def values(self) -> list[Built]:
        return list(self._built.values())
