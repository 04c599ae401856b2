"""The one per-shape cache of the engines (OpenVINO compiles, torch and TensorRT CUDA graphs)."""

from __future__ import annotations

import pytest

from msn_deploy.engines.runtime.shape_cache import ShapeCache
from msn_deploy.msn import UsageError


def test_each_shape_is_built_once_and_the_least_recently_used_goes_first():
    built = []
    cache: ShapeCache[str] = ShapeCache(2, "thing")

    def get(shape):
        return cache.get(shape, lambda: built.append(shape) or f"for {shape}")

    assert get((1, 3, 8, 8)) == "for (1, 3, 8, 8)"
    get((1, 3, 8, 16))
    get((1, 3, 8, 8))  # used again: now the most recent
    get((1, 3, 16, 16))  # evicts (1, 3, 8, 16)
    assert cache.shapes() == [(1, 3, 8, 8), (1, 3, 16, 16)]
    get((1, 3, 8, 16))
    assert built == [(1, 3, 8, 8), (1, 3, 8, 16), (1, 3, 16, 16), (1, 3, 8, 16)]


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "2"])
def test_a_size_that_is_not_a_count_is_a_usage_error(size):
    with pytest.raises(UsageError, match="cache_size must be >= 1"):
        ShapeCache(size, "thing")
