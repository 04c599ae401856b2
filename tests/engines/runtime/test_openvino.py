"""The OpenVINO backend: parity with eager PyTorch, the per-shape compile cache, options, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.engines.runtime.openvino_engine import OpenVINOEngine
from msn_deploy.engines.runtime.targets import auto_backend
from msn_deploy.export import to_onnx
from msn_deploy.msn import InputError
from msn_deploy.msn.formats.kinds import CHECKPOINT, ENGINE, GRAPH, SAFETENSORS
from msn_deploy.msn.formats.precision import ArtifactError
from msn_deploy.msn.metrics import psnr
from msn_deploy.msn.sample_images import smooth_test_image
from tests.util import FP16_MIN_PSNR_DB, to_hwc

pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[cpu]')")

FP32_MAX_ABS = 2e-5  # the same contract as ONNX Runtime


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, random_ckpt, random_graph, random_fp16_graph):
    out = tmp_path_factory.mktemp("ov")
    paths = {"fp32": random_graph, "static": out / "static.onnx", "fp16": random_fp16_graph}
    assert to_onnx.main(["--ckpt", str(random_ckpt), "-o", str(paths["static"]), "--static", "40x40", "--batch", "2",
                         "--no-verify"]) == 0
    return paths


def eager(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_fp32_matches_eager_on_random_weights(graphs, random_msn):
    engine = OpenVINOEngine(graphs["fp32"])
    x = smooth_test_image(2, 45, 61).numpy()
    out = engine(x)
    assert out.shape == (2, 3, 180, 244) and out.dtype == np.float32
    assert np.abs(out - eager(random_msn, x)).max() <= FP32_MAX_ABS


def test_fp16_graph_runs_with_float32_io(graphs, random_msn):
    engine = OpenVINOEngine(graphs["fp16"])
    x = smooth_test_image(1, 40, 40).numpy()
    out = engine(x)
    assert engine.precision == "fp16" and np.isfinite(out).all()
    assert psnr(out, eager(random_msn, x)) >= FP16_MIN_PSNR_DB


def test_reference_parity(official_graph, reference_cases):
    engine = OpenVINOEngine(official_graph)
    for case in reference_cases:
        assert np.abs(to_hwc(engine(case.input_tensor().numpy())) - case.sr).max() < 1e-5, case.name


def test_compile_cache_is_bounded_lru(graphs):
    engine = OpenVINOEngine(graphs["fp32"], cache_size=2)
    shapes = [(1, 3, 32, 32), (1, 3, 33, 32), (1, 3, 32, 33)]
    first = engine(smooth_test_image(*[shapes[0][i] for i in (0, 2, 3)]).numpy())
    for n, _, h, w in shapes[1:]:
        engine(smooth_test_image(n, h, w).numpy())
    assert engine.describe()["compiled_shapes"] == [shapes[1], shapes[2]]  # the oldest was evicted
    engine(smooth_test_image(1, 33, 32).numpy())  # a hit moves it to the most recent end
    assert engine.describe()["compiled_shapes"] == [shapes[2], shapes[1]]
    again = engine(smooth_test_image(1, 32, 32).numpy())  # recompiled after eviction, same result
    assert np.array_equal(first, again)


def test_static_graph_profile_batches_and_tiles(graphs, random_msn):
    engine = OpenVINOEngine(graphs["static"])
    assert engine.profile.min == (2, 40, 40) and engine.profile.max == (2, 40, 40)
    x = smooth_test_image(2, 40, 40).numpy()
    assert np.abs(engine(x) - eager(random_msn, x)).max() <= FP32_MAX_ABS
    # Three images go as two batches of the graph's fixed batch of two, the last one padded.
    x3 = smooth_test_image(3, 40, 40).numpy()
    out3 = engine(x3)
    assert out3.shape == (3, 3, 160, 160)
    assert np.array_equal(out3[:2], engine(x3[:2]))
    assert np.abs(out3[2:] - eager(random_msn, x3[2:])).max() <= FP32_MAX_ABS
    # A larger image is tiled at the graph's size, each tile padded to the batch of two.
    big = smooth_test_image(1, 70, 90).numpy()
    assert engine(big, tile=40, overlap=8).shape == (1, 3, 280, 360)
    with pytest.raises(InputError, match="profile"):
        engine(smooth_test_image(1, 50, 40).numpy(), tile=48)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("cache_size", 0, "cache_size"), ("hint", "FAST", "hint"), ("threads", 0, "threads"),
    ("device", "npu", "no device"),
])
def test_bad_options_are_named(graphs, option, value, message):
    with pytest.raises(engines.MSNError, match=message):
        OpenVINOEngine(graphs["fp32"], **{option: value})


def test_foreign_file_is_rejected(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        OpenVINOEngine(bad)


def test_auto_picks_openvino_for_onnx_on_cpu(graphs):
    assert auto_backend(GRAPH, "cpu").name == "openvino"
    assert auto_backend(GRAPH, "cuda").name == "onnxruntime"
    assert auto_backend(ENGINE, "cpu").name == "tensorrt"
    assert auto_backend(CHECKPOINT, "cpu").name == "openvino"  # as its cached graph
    assert auto_backend(SAFETENSORS, "cuda").name == "torch"
    assert isinstance(engines.load(graphs["fp32"]), OpenVINOEngine)
    # Options reach the backend.
    assert engines.load(graphs["fp32"], backend="openvino", cache_size=1).cache_size == 1


def test_a_thread_budget_leaves_the_threads_unpinned(random_graph):
    """Engines given a thread budget share the machine: pinned, two one-thread engines in two
    processes both ran on the first core (half speed each, measured)."""
    shared = OpenVINOEngine(random_graph, threads=1)
    shared(np.zeros((1, 3, 32, 32), np.float32))
    compiled = shared._requests.values()[0].get_compiled_model()
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
