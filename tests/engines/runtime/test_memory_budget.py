"""A photo whose whole-image run would not fit the memory budget is tiled, and said so; a batch
that would not fit runs a few images at a time; what fits runs whole (engines.runtime.memory)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.engines.runtime.memory import BUDGET_ENV, MIN_BUDGET_TILE, available_bytes, memory_budget, tile_within
from msn_deploy.msn import UsageError
from msn_deploy.msn.metrics import psnr
from msn_deploy.msn.sample_images import smooth_test_image

pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[cpu]')")


def budget_mb(engine, pixels: float) -> str:
    """The budget (MB) of a run of `pixels` LR pixels on this engine."""
    return str(pixels * engine.peak_bytes_per_pixel / 2**20)


def test_an_image_over_the_budget_is_tiled_and_one_within_runs_whole(random_graph, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    engine = engines.load(random_graph, "openvino")
    x = smooth_test_image(1, 150, 190).numpy()
    monkeypatch.setenv(BUDGET_ENV, budget_mb(engine, 150 * 190))
    whole = engine(x)
    assert "memory budget" not in caplog.text
    monkeypatch.setenv(BUDGET_ENV, budget_mb(engine, 128 * 128))
    tiled = engine(x)
    assert "a 150x190 image needs about" in caplog.text and "tiling at 128 LR px" in caplog.text
    assert np.array_equal(tiled, engine(x, tile=128, overlap=32))
    assert not np.array_equal(tiled, whole) and psnr(tiled, whole) > 45


def test_a_batch_over_the_budget_runs_as_many_images_as_fit(random_graph, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    engine = engines.load(random_graph, "openvino")
    one = smooth_test_image(1, 100, 100).numpy()
    monkeypatch.setenv(BUDGET_ENV, budget_mb(engine, 2.5 * 100 * 100))
    two = engine(np.concatenate([one, one]))
    assert "memory budget" not in caplog.text
    four = engine(np.concatenate([one, one, one, one]))
    assert "4 images of 100x100 at once would exceed the memory budget: 2 at a time" in caplog.text
    assert "tiling" not in caplog.text and np.array_equal(four, np.concatenate([two, two]))


def test_gpu_engines_and_unknown_backends_are_not_bounded_by_host_memory(random_graph, monkeypatch):
    engine = engines.load(random_graph, "openvino")
    assert engine.peak_bytes_per_pixel > 0
    monkeypatch.setattr(engine, "peak_bytes_per_pixel", None)
    monkeypatch.setenv(BUDGET_ENV, "0.001")
    assert engine._tile_for_memory(150, 190) is None and engine._images_within_budget(150, 190) is None


def test_the_command_tiles_a_photo_over_the_budget(random_ckpt, tmp_path, monkeypatch, caplog):
    """The CLI, folder jobs, video and the service all run images through Engine.__call__."""
    photo = tmp_path / "big.png"
    rgb = smooth_test_image(1, 260, 300)[0].numpy().transpose(1, 2, 0)
    cv2.imwrite(str(photo), np.round(rgb * 255).astype(np.uint8))
    monkeypatch.setenv(BUDGET_ENV, "1")  # MB: below one 128 px tile
    caplog.set_level(logging.INFO)
    out = tmp_path / "out.png"
    assert upscale.main([str(photo), "-o", str(out), "--model", str(random_ckpt)]) == 0
    assert f"tiling at {MIN_BUDGET_TILE} LR px" in caplog.text and "260x300" in caplog.text
    assert cv2.imread(str(out)).shape == (1040, 1200, 3)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan", "inf"])
def test_a_budget_that_is_not_a_size_is_one_line(value, random_graph, photo, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(BUDGET_ENV, value)
    with pytest.raises(UsageError, match=f"{BUDGET_ENV} must be a number of megabytes above 0"):
        memory_budget()
    out = tmp_path / "out.png"
    assert upscale.main([str(photo), "-o", str(out), "--model", str(random_graph)]) == 2
    assert f"{BUDGET_ENV} must be" in caplog.text and not out.exists()


def test_the_default_budget_is_half_of_what_is_available(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    available = available_bytes()
    assert available is not None and available > 0
    budget, source = memory_budget()
    assert abs(budget - available / 2) < 0.1 * available and "available" in source
    assert tile_within(1, 100) == MIN_BUDGET_TILE and tile_within(2**30, 4096) == 512
