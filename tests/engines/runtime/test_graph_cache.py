"""Fast by default: a checkpoint on a CPU runs as its ONNX graph on OpenVINO, exported once into
the cache (engines.runtime.graph_cache), verified, and shared by every later load and process."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.engines.runtime.graph_cache import cached_graph, cached_graph_name, graph_cache_dir
from msn_deploy.engines.runtime.openvino_engine import OpenVINOEngine
from msn_deploy.msn import CheckpointError, random_model, sha256_of
from msn_deploy.msn.checkpoint import cache_root
from msn_deploy.msn.sample_images import smooth_test_image


def test_a_checkpoint_runs_as_its_cached_graph_on_openvino(random_ckpt, caplog):
    caplog.set_level(logging.INFO)
    engine = engines.load(random_ckpt)
    assert isinstance(engine, OpenVINOEngine)
    assert engine.path.parent == graph_cache_dir() and engine.path.parent.parent == cache_root()
    assert engine.metadata.checkpoint_sha256 == sha256_of(random_ckpt)
    x = smooth_test_image(1, 40, 48).numpy()
    eager = engines.load(random_ckpt, "torch")(x)
    assert np.abs(engine(x) - eager).max() < 1e-4
    caplog.clear()
    assert engines.load(random_ckpt).path == engine.path  # the second load reuses it
    assert "ONNX graph for the fast CPU runtimes" not in caplog.text
    assert isinstance(engines.load(random_ckpt, "onnxruntime"), engines.runtime.base.Engine)


@pytest.mark.build
def test_a_damaged_cached_graph_is_exported_again_once_between_loaders(tmp_path, caplog):
    """Two loaders at once (threads here; the lock is a file lock, as for processes) export once."""
    ckpt = tmp_path / "seed3.pth"
    torch.save(random_model(seed=3).state_dict(), ckpt)
    path = graph_cache_dir() / cached_graph_name(sha256_of(ckpt), "fp32")  # where its graph goes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a graph")
    caplog.set_level(logging.INFO)
    results: list = []
    loaders = [threading.Thread(target=lambda: results.append(cached_graph(ckpt))) for _ in range(2)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join(timeout=600)
    assert results == [path, path]
    assert caplog.text.count("ONNX graph for the fast CPU runtimes") == 1 and caplog.text.count("is unusable") == 1
    assert engines.load(ckpt).metadata.checkpoint_sha256 == sha256_of(ckpt)


@pytest.mark.build
def test_a_foreign_checkpoint_is_refused_and_nothing_is_cached(tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, foreign)
    with pytest.raises(CheckpointError):
        engines.load(foreign)
    assert not list(graph_cache_dir().glob(f"msn-{sha256_of(foreign)[:20]}*.onnx"))


@pytest.mark.build
def test_the_fp16_checkpoint_graph(random_ckpt):
    engine = engines.load(random_ckpt, precision="fp16")
    assert isinstance(engine, OpenVINOEngine) and engine.precision == "fp16"
    assert engine.path != engines.load(random_ckpt).path
