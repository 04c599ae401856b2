"""Real TensorRT-RTX engine builds (CPU-only AOT build works without a GPU)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from msn_deploy.engines.runtime.base import DeviceError
from msn_deploy.engines.runtime.tensorrt_engine import TensorRTEngine, compatibility_problems
from msn_deploy.export import build_trt, to_onnx
from msn_deploy.export.trt_build import BuildError, BuildSettings, Profile, build_engine
from msn_deploy.msn import UsageError
from msn_deploy.msn.formats.sidecar import EngineSidecar, TensorIO
from msn_deploy.msn.formats.tensorrt import import_tensorrt
from tests.util import exit_code

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed (pip install .[rtx])")
SMALL_PROFILE = ["--min", "1x29x29", "--opt", "1x64x64", "--max", "2x128x128"]


@pytest.fixture(scope="module")
def fp16_graph(random_fp16_graph):
    return random_fp16_graph


@pytest.fixture(scope="module")
def built(fp16_graph, tmp_path_factory):
    engine = tmp_path_factory.mktemp("engine") / "msn.plan"
    args = ["--onnx", str(fp16_graph), "-o", str(engine), "--backend", "tensorrt_rtx", *SMALL_PROFILE]
    assert build_trt.main(args) == 0
    return engine


def test_engine_and_sidecar(built, fp16_graph):
    sidecar = json.loads(built.with_name(built.name + ".json").read_text())
    plan = built.read_bytes()
    assert len(plan) > 100_000
    assert sidecar["format"] == "msn-engine/2"
    assert sidecar["tensorrt"] == {"flavour": "tensorrt_rtx", "version": trt_rtx.__version__}
    assert sidecar["precision"] == "fp16" and sidecar["scale"] == 4
    assert sidecar["profile"] == {"min": [1, 29, 29], "opt": [1, 64, 64], "max": [2, 128, 128]}
    assert sidecar["onnx"]["sha256"] == hashlib.sha256(fp16_graph.read_bytes()).hexdigest()
    assert sidecar["engine_sha256"] == hashlib.sha256(plan).hexdigest()
    io = {t["mode"]: t for t in sidecar["io"]}
    assert io["input"]["name"] == "input" and io["input"]["dtype"] == "float32"  # float32 I/O by default
    assert io["output"]["name"] == "output" and io["input"]["shape"] == [-1, 3, -1, -1]
    assert "export/build_trt.py" in sidecar["command"] and sidecar["build_seconds"] > 0


def test_engine_deserialises_or_is_refused_clearly(built):
    """Without a GPU the runtime refuses before touching TensorRT; with one it must load."""
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="need an NVIDIA GPU"):
            TensorRTEngine(built)
    else:
        engine = TensorRTEngine(built)
        assert engine.scale == 4


def test_default_path_names_what_invalidates(fp16_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    trt = import_tensorrt("tensorrt_rtx")
    settings = BuildSettings(Profile((1, 29, 29), (1, 48, 48), (1, 64, 64)), opt_level=1, compute_capabilities=("sm86",),
                             backend="tensorrt_rtx")
    result = build_engine(fp16_graph, None, settings)
    sha = result.sidecar.onnx_sha256[:12]
    assert result.path.parent == tmp_path / "engines"
    assert result.path.name == f"msn_x4_fp16_tensorrt_rtx-{trt.version}_sm86_1x29x29_1x48x48_1x64x64_O1_{sha}.plan"
    assert result.sidecar.compute_capabilities == ["SM86"] and EngineSidecar.read(result.path) == result.sidecar


def test_timing_cache_is_written(fp16_graph, tmp_path):
    cache = tmp_path / "msn.timing-cache"
    settings = BuildSettings(Profile((1, 29, 29), (1, 32, 32), (1, 48, 48)), opt_level=0, backend="tensorrt_rtx",
                             timing_cache=cache)
    build_engine(fp16_graph, tmp_path / "e.plan", settings)
    assert cache.is_file() and cache.stat().st_size > 0


def test_garbage_onnx_fails_clearly(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model")
    assert build_trt.main(["--onnx", str(bad), "-o", str(tmp_path / "e.plan"), "--backend", "tensorrt_rtx"]) == 2
    assert not (tmp_path / "e.plan").exists()


def test_parser_error_names_the_node(tmp_path):
    node = helper.make_node("NoSuchOp", ["input"], ["output"], name="the_bad_node")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
    )
    path = tmp_path / "foreign.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"model_name": "MSN", "scale": "4"})  # MSN-shaped on the outside only
    onnx.save(model, path)
    settings = BuildSettings(Profile((1, 32, 32), (1, 32, 32), (1, 32, 32)), backend="tensorrt_rtx")
    with pytest.raises(BuildError, match="the_bad_node"):
        build_engine(path, tmp_path / "e.plan", settings)


@pytest.mark.parametrize(
    "profile, message",
    [
        (["--min", "1x16x16"], "below MSN's minimum"),
        (["--opt", "1x64x64", "--max", "1x32x32"], "min <= opt <= max"),
        (["--max", "1x128"], "expected NxHxW"),
    ],
)
def test_bad_profiles_fail_clearly(fp16_graph, tmp_path, caplog, capsys, profile, message):
    args = ["--onnx", str(fp16_graph), "-o", str(tmp_path / "e.plan"), "--backend", "tensorrt_rtx", *profile]
    assert exit_code(build_trt.main, args) == 2
    assert message in caplog.text + capsys.readouterr().err
    assert not (tmp_path / "e.plan").exists()


@pytest.mark.build
def test_profile_outside_a_static_graph(tmp_path, random_msn):
    ckpt = tmp_path / "w.pth"
    torch.save(random_msn.state_dict(), ckpt)
    graph = tmp_path / "static.onnx"
    assert to_onnx.main(["--ckpt", str(ckpt), "--static", "32x32", "--batch", "1", "-o", str(graph), "--no-verify"]) == 0
    settings = BuildSettings(Profile((1, 29, 29), (1, 32, 32), (1, 64, 64)), backend="tensorrt_rtx")
    with pytest.raises(UsageError, match="fixes axis 2 to 32"):
        build_engine(graph, tmp_path / "e.plan", settings)


SIDECAR = EngineSidecar(
    flavour="tensorrt_rtx", version="1.7.1.116", compute_capabilities=["SM86", "SM89"], gpu=None, precision="fp16",
    scale=4, profile={"min": [1, 29, 29], "opt": [1, 64, 64], "max": [1, 128, 128]}, opt_level=3, workspace_mib=2048,
    io=[TensorIO("input", "input", "float32", [-1, 3, -1, -1]), TensorIO("output", "output", "float32", [-1, 3, -1, -1])],
    onnx_path="msn_fp16.onnx", onnx_sha256="0" * 64,
)


class FakeTRT:  # only the fields compatibility_problems reads; no TensorRT behaviour is faked
    def __init__(self, flavour: str, version: str) -> None:
        self.flavour, self.version, self.label = flavour, version, f"{flavour}-{version}"


@pytest.mark.parametrize(
    "trt, gpu, expected",
    [
        (FakeTRT("tensorrt_rtx", "1.7.1.116"), {"name": "RTX 4090", "compute_capability": "SM89"}, []),
        (FakeTRT("tensorrt_rtx", "1.8.0.1"), {"name": "RTX 4090", "compute_capability": "SM89"}, ["has 1.8.0.1"]),
        (FakeTRT("tensorrt", "10.9.0"), {"name": "RTX 4090", "compute_capability": "SM89"}, ["this machine has tensorrt-10.9.0"]),
        (None, {"name": "RTX 4090", "compute_capability": "SM89"}, ["no TensorRT module"]),
        (FakeTRT("tensorrt_rtx", "1.7.1.116"), {"name": "H100", "compute_capability": "SM90"}, ["targets ['SM86', 'SM89']"]),
        (FakeTRT("tensorrt_rtx", "1.7.1.116"), None, ["need an NVIDIA GPU"]),
    ],
)
def test_compatibility_problems(trt, gpu, expected):
    problems = compatibility_problems(SIDECAR, trt, gpu)
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected):
        assert fragment in problem
    if expected and gpu is not None and trt is not None:
        assert "python export/build_trt.py --onnx msn_fp16.onnx" in problems[0]


@pytest.mark.gpu
def test_gpu_execution_matches_onnxruntime(built, fp16_graph):
    from msn_deploy.engines.runtime.onnxruntime_engine import OnnxRuntimeEngine

    x = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    out = TensorRTEngine(built)(x)
    expected = OnnxRuntimeEngine(fp16_graph)(x)
    assert np.abs(out - expected).max() < 1e-2


# no output replaces an input of the same command.
def test_build_trt_refuses_to_replace_its_graph(random_fp16_graph, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    copy = tmp_path / "v.onnx"  # FP16: a graph TensorRT-RTX really builds here, so the check is what saves it
    copy.write_bytes(random_fp16_graph.read_bytes())
    assert build_trt.main(["--onnx", str(copy), "-o", str(copy)]) == 2
    assert copy.read_bytes() == random_fp16_graph.read_bytes()


# only MSN-shaped graphs are built; runtimes check the real output shape.
def test_build_trt_refuses_a_foreign_graph(tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False)
    assert build_trt.main(["--onnx", str(path), "-o", str(tmp_path / "conv.plan")]) == 2
    assert "not an MSN graph" in caplog.text and not (tmp_path / "conv.plan").exists()


# build_trt checks its paths and its graph before building.
def test_build_trt_path_problems_before_building(random_graph, tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    empty = tmp_path / "empty.onnx"
    empty.touch()
    folder = tmp_path / "dir.plan"
    folder.mkdir()
    cases = [(["--onnx", str(random_graph), "-o", str(folder)], "is a directory"),
             (["--onnx", str(random_graph), "-o", str(tmp_path / "x.plan"),
               "--timing-cache", str(tmp_path / "no" / "t.cache")], "does not exist"),
             (["--onnx", str(empty), "-o", str(tmp_path / "e.plan")], "is empty"),
             (["--onnx", str(random_graph), "--workspace", "0"], None)]
    for args, message in cases:
        caplog.clear()
        assert exit_code(build_trt.main, args) == 2
        assert message is None or (message in caplog.text and "building" not in caplog.text), caplog.text


# FP32 TensorRT-RTX builds without a GPU fail (exit 1) with a clear message.
def test_fp32_rtx_build_without_gpu_says_why(random_graph, tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    if torch.cuda.is_available():
        pytest.skip("measures the no-GPU case")
    assert build_trt.main(["--onnx", str(random_graph), "-o", str(tmp_path / "fp32.plan")]) == 1  # the build failed
    assert "cannot build FP32 engines without a GPU" in caplog.text and not (tmp_path / "fp32.plan").exists()
