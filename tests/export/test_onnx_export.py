"""ONNX export through the CLI, judged on ONNX Runtime against the float64 references."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from msn_deploy.engines.runtime.onnxruntime_engine import OnnxRuntimeEngine
from msn_deploy.export import onnx_export, to_onnx
from msn_deploy.export.onnx_graph import default_opset
from msn_deploy.export.parity import FP16_MIN_PSNR_DB as VERIFY_FP16_FLOOR
from msn_deploy.export.parity import Tolerance
from msn_deploy.export.trt_ops import unsupported_ops
from msn_deploy.msn.formats.graph import GraphMetadata
from msn_deploy.msn.metrics import psnr
from msn_deploy.msn.sample_images import smooth_test_image
from tests.conftest import REPO
from tests.util import FP16_MIN_PSNR_DB, converted, to_hwc

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def exported(tmp_path_factory, official_ckpt, official_graph, official_fp16_graph) -> dict[str, Path]:
    """The official weights with each kind of option; FP32 and FP16 with the defaults are the
    session's graphs (the same export_onnx calls that to_onnx makes)."""
    static = tmp_path_factory.mktemp("onnx") / "static.onnx"
    args = ["--ckpt", str(official_ckpt), "-o", str(static), "--fp16", "--io-dtype", "float16", "--static", "37x53",
            "--batch", "1"]
    assert to_onnx.main(args) == 0
    return {"fp32": official_graph, "fp16": official_fp16_graph, "fp16-io16-static": static}


def float64_reference(official_model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = converted(official_model, torch.float64)(x.double()).numpy()
    return out


def test_graphs_are_clean(exported):
    for name, path in exported.items():
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        assert unsupported_ops(model) == [], name
        assert [i.name for i in model.graph.input] == ["input"]
        assert [o.name for o in model.graph.output] == ["output"]
        # Far below the training form's ~1,600 nodes (see the closing note for exact counts).
        assert len(model.graph.node) < 1000, (name, len(model.graph.node))


def test_dynamic_axes_and_dtypes(exported):
    dims = onnx.load(exported["fp32"]).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    static = onnx.load(exported["fp16-io16-static"]).graph.input[0].type
    assert [d.dim_value for d in static.tensor_type.shape.dim] == [1, 3, 37, 53]
    assert static.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_fp16_graph_keeps_statistics_in_float32(exported):
    model = onnx.load(exported["fp16"])
    typed = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    reductions = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    assert reductions and all(typed[n.output[0]] == onnx.TensorProto.FLOAT for n in reductions)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    float32_convs = [n for n in convs if typed[n.output[0]] == onnx.TensorProto.FLOAT]
    # Only LayerNorm's two channel-mean convs per block stay float32; everything else is half.
    assert len(float32_convs) == 2 * 8 and len(convs) > 250


def test_metadata(exported, official_ckpt):
    meta = GraphMetadata.read(onnx.load(exported["fp16"])).to_props()
    assert meta["model_name"] == "MSN" and meta["scale"] == "4" and meta["min_input_size"] == "29"
    assert meta["precision"] == "fp16" and meta["opset"] == "20" and meta["torch_version"] == torch.__version__
    assert meta["checkpoint_sha256"] == "5cbe6074c9c041f9894fa697f179c4deea4e91f0d0e06106c20ba24bcaeb6609"
    assert meta["input_range"].startswith("[0, 1]") and "exporter" in meta


def test_reference_images(exported, reference_cases):
    fp32, fp16 = OnnxRuntimeEngine(exported["fp32"]), OnnxRuntimeEngine(exported["fp16"])
    for case in reference_cases:
        x = case.input_tensor().numpy()
        assert np.abs(to_hwc(fp32(x)) - case.sr).max() < 1e-5, case.name
        out16 = to_hwc(fp16(x))
        assert np.isfinite(out16).all() and psnr(out16, case.sr) >= FP16_MIN_PSNR_DB, case.name


def test_static_fp16_io_graph(exported, reference_cases):
    case = next(c for c in reference_cases if c.lr.shape[:2] == (37, 53))
    engine = OnnxRuntimeEngine(exported["fp16-io16-static"])
    assert engine.io_dtype == np.float16
    out = engine(case.input_tensor().numpy().astype(np.float16))
    assert out.dtype == np.float16 and psnr(to_hwc(out), case.sr) >= FP16_MIN_PSNR_DB


@pytest.mark.parametrize("shape", [(1, 3, 29, 29), (1, 3, 33, 47), (1, 3, 61, 30), (2, 3, 40, 52)])
def test_shapes_against_float64(exported, official_model, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = float64_reference(official_model, x)
    # Pixel noise drives activations higher than photos do: float32 rounding reaches ~2e-5 here.
    assert np.abs(OnnxRuntimeEngine(exported["fp32"])(x.numpy()) - expected).max() < 2e-4
    # FP16 on a photo-like input of the same shape (pixel noise is far outside what MSN sees).
    photo = smooth_test_image(*[shape[i] for i in (0, 2, 3)], seed=sum(shape))
    out16 = OnnxRuntimeEngine(exported["fp16"])(photo.numpy())
    assert psnr(out16, float64_reference(official_model, photo)) >= FP16_MIN_PSNR_DB


def run_cli(args: list[str]) -> int:
    try:
        return to_onnx.main(args)
    except SystemExit as exc:  # argparse rejects bad options this way
        return int(exc.code)


def test_missing_checkpoint_leaves_nothing(tmp_path):
    assert run_cli(["--ckpt", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_bad_opset(tmp_path, random_msn):
    ckpt = tmp_path / "w.pth"
    torch.save(random_msn.state_dict(), ckpt)
    assert run_cli(["--ckpt", str(ckpt), "--opset", "13", "-o", str(tmp_path / "m.onnx")]) == 2
    assert not (tmp_path / "m.onnx").exists()


def test_unwritable_output(tmp_path, random_msn):
    ckpt = tmp_path / "w.pth"
    torch.save(random_msn.state_dict(), ckpt)
    assert run_cli(["--ckpt", str(ckpt), "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    if os.geteuid() != 0:  # root writes anywhere, so a read-only folder proves nothing there
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert run_cli(["--ckpt", str(ckpt), "-o", str(locked / "m.onnx")]) == 2


def test_foreign_checkpoint_leaves_nothing(tmp_path):
    ckpt = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, ckpt)
    assert run_cli(["--ckpt", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet.pth"]


def test_verifier_judges_against_its_thresholds():
    expected = np.full((1, 3, 8, 8), 0.5, np.float32)
    assert Tolerance().judge(expected + 1e-6, expected, "fp32").passed
    assert not Tolerance().judge(expected + 3e-4, expected, "fp32").passed  # just past the 2e-4 FP32 limit
    # FP16: a shift of 10**(-61/20) is 61 dB, of 10**(-59/20) is 59 dB, against the 60 dB floor.
    assert Tolerance().judge(expected + 10 ** (-61 / 20), expected, "fp16").passed
    assert not Tolerance().judge(expected + 10 ** (-59 / 20), expected, "fp16").passed
    nan = expected.copy()
    nan[0, 0, 0, 0] = np.nan
    assert not Tolerance().judge(nan, expected, "fp16").passed
    # The relative term: 1e-4 + 1e-3 x 0.5 allows 6e-4.
    assert Tolerance(atol=1e-4, rtol=1e-3).judge(expected + 5e-4, expected, "fp32").passed
    assert not Tolerance(atol=1e-4, rtol=1e-3).judge(expected + 7e-4, expected, "fp32").passed
    assert VERIFY_FP16_FLOOR >= FP16_MIN_PSNR_DB


def test_a_wrong_inference_form_fails_the_export(tmp_path, random_ckpt, monkeypatch):
    """The exporter checks the graph against the training form, so a wrong fusion (here the
    upsampler bias off by 3e-4, as a wrong mean fold would be) stops the export, writing nothing."""
    real = onnx_export.to_inference_form

    def subtly_wrong(model, **kwargs):
        fused = real(model, **kwargs)
        with torch.no_grad():
            fused.upsample.bias += 3e-4
        return fused

    monkeypatch.setattr(onnx_export, "to_inference_form", subtly_wrong)
    assert run_cli(["--ckpt", str(random_ckpt), "-o", str(tmp_path / "m.onnx"), "--static", "32x40"]) == 1  # failed
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    ["--opset", "18", "--fold-pointwise", "--no-verify"], ["--opset", "19", "--no-simplify", "--no-verify"],
    ["--opset", "21", "--static", "40x48", "--batch", "2"],  # verified: runs without the shared checkpoint
])
def test_export_option_matrix(tmp_path, random_ckpt, random_msn, options):
    """Each option (three exports for five options): the opset really in the graph, and accuracy
    against the training form."""
    path = tmp_path / "m.onnx"
    assert run_cli(["--ckpt", str(random_ckpt), "-o", str(path), *options]) == 0
    graph = onnx.load(path)
    opset = int(options[1])
    assert default_opset(graph) == opset and GraphMetadata.read(graph).opset == opset
    x = smooth_test_image(2, 40, 48)
    with torch.no_grad():
        expected = random_msn(x).numpy()
    assert np.abs(OnnxRuntimeEngine(path)(x.numpy()) - expected).max() < 2e-5
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ([2, 3, 40, 48] if "--static" in options else [0, 3, 0, 0])  # 0: a named, dynamic dim
    strips = GraphMetadata.read(graph).strip_convs
    assert strips == ("dense 3x3" if "--fold-pointwise" in options else "1x1 + depthwise 3x3")


def test_opset_17_is_refused_not_mislabelled(tmp_path, random_ckpt):
    assert run_cli(["--ckpt", str(random_ckpt), "-o", str(tmp_path / "m.onnx"), "--opset", "17"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_to_onnx_refuses_to_replace_its_checkpoint(random_ckpt, tmp_path, caplog):
    copy = tmp_path / "v.pth"
    copy.write_bytes(random_ckpt.read_bytes())
    assert to_onnx.main(["--ckpt", str(copy), "-o", str(copy)]) == 2
    assert copy.read_bytes() == random_ckpt.read_bytes()
    assert "would replace the input" in caplog.text


# SIGTERM during an export leaves no temporary file.
def test_sigterm_during_export_leaves_nothing(random_ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    command = [sys.executable, "export/to_onnx.py", "--ckpt", str(random_ckpt), "-o", str(out), "--static", "32x40"]
    proc = subprocess.Popen(command, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.onnx.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".m.onnx.*.tmp")), "the export never reached its temporary file"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []
