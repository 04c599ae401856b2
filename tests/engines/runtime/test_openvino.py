"""The OpenVINO backend: parity with eager PyTorch, the per-shape compile caches (in memory, on\ndisk), bf16 on the CPU's BF16 units, options, dispatch."""

from __future__ import annotations

import locale
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.engines.runtime import openvino_engine
from msn_deploy.engines.runtime.openvino_engine import BLOB_SUFFIX, OpenVINOEngine, cpu_has_bf16
from msn_deploy.engines.runtime.targets import auto_backend
from msn_deploy.export import to_onnx
from msn_deploy.msn import InputError, UsageError
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


COMPILE = """
import logging, sys
import numpy as np
from msn_deploy.engines.runtime.openvino_engine import OpenVINOEngine
from msn_deploy.msn.sample_images import smooth_test_image
logging.basicConfig(level=logging.INFO, format="%(message)s")
engine = OpenVINOEngine(sys.argv[1], bf16=sys.argv[2] == "bf16")
np.save(sys.argv[3], engine(smooth_test_image(1, 36, 44).numpy()))
"""


def compile_in_a_process(graph, out, precision: str = "fp32") -> str:
    """How a fresh process got its compiled shape: "compiled" or "loaded from the disk cache"."""
    done = subprocess.run([sys.executable, "-c", COMPILE, str(graph), precision, str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.search(r"openvino: (compiled|loaded from the disk cache) for 1x3x36x44", done.stderr).group(1)


def test_a_compiled_shape_is_loaded_by_the_next_process_and_a_changed_graph_is_not(random_graph, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path / "cache"))
    graph = tmp_path / "msn.onnx"
    shutil.copy(random_graph, graph)
    assert compile_in_a_process(graph, tmp_path / "first.npy") == "compiled"
    assert compile_in_a_process(graph, tmp_path / "second.npy") == "loaded from the disk cache"
    assert np.array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "second.npy"))
    # The same file name with one weight changed: a graph of its own.
    model = onnx.load(graph)
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    onnx.save(model, graph)
    assert compile_in_a_process(graph, tmp_path / "changed.npy") == "compiled"
    assert not np.array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "changed.npy"))
    if cpu_has_bf16():  # OpenVINO's own key would hand a bf16 compile the f32 blob (measured)
        assert compile_in_a_process(graph, tmp_path / "bf16.npy", "bf16") == "compiled"


def test_a_shape_compiled_after_the_file_is_gone(random_graph, tmp_path, monkeypatch):
    """A Serve replica opens its engine on a temporary copy of the graph that is deleted at once;
    the first shape is compiled later, from the bytes read at the start (it read the path: HTTP 500)."""
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "copy.onnx"
    shutil.copy(random_graph, copy)
    engine = OpenVINOEngine(copy)
    copy.unlink()
    x = smooth_test_image(1, 36, 44).numpy()
    assert np.array_equal(engine(x), OpenVINOEngine(random_graph, disk_cache=False)(x))


@pytest.mark.parametrize("damage", ["cut", "foreign"])
def test_a_damaged_blob_is_compiled_again_and_replaced(random_graph, tmp_path, monkeypatch, damage):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path / "cache"))
    assert compile_in_a_process(random_graph, tmp_path / "first.npy") == "compiled"
    (blob,) = (tmp_path / "cache").rglob(f"1x3x36x44{BLOB_SUFFIX}")
    kept = blob.read_bytes()
    blob.write_bytes(kept[: len(kept) // 2] if damage == "cut" else b"not a compiled model" * 100)
    assert compile_in_a_process(random_graph, tmp_path / "again.npy") == "compiled"
    assert np.array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "again.npy"))
    assert compile_in_a_process(random_graph, tmp_path / "third.npy") == "loaded from the disk cache"


def test_two_threads_compiling_at_once_leave_the_locale_alone(random_graph, tmp_path, monkeypatch):
    """OpenVINO switches the C locale while it writes a cached blob; two compiles at once left
    LC_CTYPE at "C" for the rest of the process (Python then read UTF-8 files as ASCII)."""
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path / "cache"))
    before = locale.setlocale(locale.LC_CTYPE)
    for h in (33, 34, 35):
        shapes = [np.zeros((1, 3, h, w), np.float32) for w in (40, 41)]
        pair = [OpenVINOEngine(random_graph, threads=1) for _ in shapes]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda engine, x: engine(x), pair, shapes))
        assert locale.setlocale(locale.LC_CTYPE) == before


# The official weights measure 51.1 dB (astronaut) and 55.5 dB (chelsea) in bf16: closer than the
# validator's floor for any weights (OPENVINO_BF16_MIN_PSNR_DB, which random-init weights need).
OFFICIAL_BF16_MIN_PSNR_DB = 50.5
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no BF16 units (AVX512_BF16 or AMX)")


@needs_bf16
def test_bf16_on_the_reference_photos(official_graph, reference_cases):
    bf16 = engines.load(official_graph, "openvino", precision="bf16")
    fp32 = engines.load(official_graph, "openvino")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    for case in reference_cases:
        x = case.input_tensor().numpy()
        out = to_hwc(bf16(x))
        assert psnr(out, case.sr) >= OFFICIAL_BF16_MIN_PSNR_DB, case.name
        assert np.abs(out - to_hwc(fp32(x))).max() > 1e-3, "bf16 computed as fp32"


@needs_bf16
def test_bf16_from_a_checkpoint_runs_its_fp32_graph(random_ckpt, random_graph):
    engine = engines.load(random_ckpt, precision="bf16")
    assert isinstance(engine, OpenVINOEngine) and engine.precision == "bf16" and engine.path == random_graph


def test_bf16_is_refused_where_the_cpu_lacks_it(random_graph, photo, tmp_path, monkeypatch, caplog):
    """No CPU here lacks BF16 on demand: OpenVINO's capability list is what the engine asks."""
    monkeypatch.setattr(openvino_engine, "cpu_has_bf16", lambda core=None: False)
    with pytest.raises(engines.DeviceError, match="this CPU has no BF16 units.*use fp32"):
        engines.load(random_graph, "openvino", precision="bf16")
    out = tmp_path / "out.png"
    assert upscale.main([str(photo), "-o", str(out), "--model", str(random_graph), "--precision", "bf16"]) == 2
    assert "this CPU has no BF16 units" in caplog.text and not out.exists()


def test_bf16_runs_an_fp32_graph_on_openvino_only(random_graph, random_fp16_graph, random_ckpt):
    for backend, artifact in (("onnxruntime", random_graph), ("torch", random_ckpt)):
        with pytest.raises(UsageError, match=f"--backend {backend} computes in fp32, fp16, not bf16; bf16 runs on "
                                             "--backend openvino"):
            engines.load(artifact, backend, precision="bf16")
    with pytest.raises(UsageError, match="bf16 runs an FP32 graph.* is FP16"):
        engines.load(random_fp16_graph, "openvino", precision="bf16")
