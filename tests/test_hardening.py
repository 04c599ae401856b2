"""Bad input as a new user types it: clear errors before any work, nothing of theirs lost.

Each test names the defect it guards (issue "Hardening: 23 defects").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

import engines
from engines import upscale
from engines.base import EngineError
from engines.tensorrt_engine import read_sidecar
from engines.torch_engine import TorchEngine
from export import build_trt, to_onnx
from export.verify import smooth_test_image
from msn import MSN, CheckpointError, InputError, MSNConfig, read_checkpoint, to_inference_form
from msn import checkpoint as checkpoint_module
from tests.conftest import REPO
from validate import run as validate_run


@pytest.fixture(scope="module")
def ckpt(random_ckpt):
    return random_ckpt


@pytest.fixture(scope="module")
def graph(random_graph):
    return random_graph


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    rgb = smooth_test_image(1, 40, 48)[0].numpy().transpose(1, 2, 0)
    cv2.imwrite(str(path), np.round(rgb[..., ::-1] * 255).astype(np.uint8))
    return path


def snapshot(path):
    return path.read_bytes()


# 1, 2: no output replaces an input of the same command.
def test_build_trt_refuses_to_replace_its_graph(random_fp16_graph, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    copy = tmp_path / "v.onnx"  # FP16: a graph TensorRT-RTX really builds here, so the check is what saves it
    copy.write_bytes(random_fp16_graph.read_bytes())
    assert build_trt.main(["--onnx", str(copy), "-o", str(copy)]) == 2
    assert copy.read_bytes() == random_fp16_graph.read_bytes()


def test_to_onnx_refuses_to_replace_its_checkpoint(ckpt, tmp_path, caplog):
    copy = tmp_path / "v.pth"
    copy.write_bytes(ckpt.read_bytes())
    assert to_onnx.main(["--ckpt", str(copy), "-o", str(copy)]) == 2
    assert copy.read_bytes() == ckpt.read_bytes()
    assert "would replace the input" in caplog.text


# 3: NaN weights are refused at load, naming the tensor; non-finite output is an error.
def test_nan_weight_is_named_at_load(tmp_path, random_msn, photo, caplog):
    state = {k: v.clone() for k, v in random_msn.state_dict().items()}
    state["B4.c5.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    assert upscale.main([str(photo), "-o", str(tmp_path / "out.png"), "--model", str(bad)]) == 2
    assert "B4.c5.weight" in caplog.text and not (tmp_path / "out.png").exists()
    assert to_onnx.main(["--ckpt", str(bad), "-o", str(tmp_path / "nan.onnx")]) == 2
    assert not (tmp_path / "nan.onnx").exists()


def test_nonfinite_output_raises(random_msn):
    broken = to_inference_form(random_msn)
    with torch.no_grad():
        broken.upsample.weight[0, 0, 0, 0] = float("inf")  # as if an FP16 engine had overflowed
    with pytest.raises(EngineError, match="NaN or Inf"):
        TorchEngine(broken)(smooth_test_image(1, 32, 32).numpy())


# 4: only MSN-shaped graphs are built; runtimes check the real output shape.
def test_build_trt_refuses_a_foreign_graph(tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False)
    assert build_trt.main(["--onnx", str(path), "-o", str(tmp_path / "conv.plan")]) == 2
    assert "not an MSN graph" in caplog.text and not (tmp_path / "conv.plan").exists()


def test_runtime_checks_the_real_output_shape(tmp_path):
    """An x2 graph whose metadata claims x4: the runtime sees the real shape and refuses."""
    torch.manual_seed(0)
    x2 = tmp_path / "x2.pth"
    torch.save(MSN(MSNConfig.from_width(upscale=2)).state_dict(), x2)
    graph = tmp_path / "x2.onnx"
    assert to_onnx.main(["--ckpt", str(x2), "-o", str(graph), "--no-verify"]) == 0
    model = onnx.load(graph)
    next(p for p in model.metadata_props if p.key == "scale").value = "4"
    onnx.save(model, graph)
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(EngineError, match="not an x4 MSN"):
            engines.load(graph, backend=backend)(smooth_test_image(1, 32, 32).numpy())


# 5: static batch graphs run batches of any size (padded), on every ONNX backend.
def test_static_batch_graph_runs_any_batch(ckpt, tmp_path, random_msn):
    path = tmp_path / "b3.onnx"
    assert to_onnx.main(["--ckpt", str(ckpt), "-o", str(path), "--static", "32x32", "--batch", "3", "--no-verify"]) == 0
    x = smooth_test_image(4, 32, 32).numpy()
    with torch.no_grad():
        expected = random_msn(torch.from_numpy(x)).numpy()
    for backend in ("onnxruntime", "openvino"):
        out = engines.load(path, backend=backend)(x)
        assert np.abs(out - expected).max() < 2e-5, backend


# 6: no network: one line, fast, and where to put the file.
def _stalled_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()  # accepts, never answers
    return server


@pytest.mark.parametrize("kind", ["refused", "stalled"])
def test_offline_official_fails_fast_with_instructions(tmp_path, monkeypatch, kind, caplog):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MSN_DOWNLOAD_TIMEOUT", "1")
    server = _stalled_server()
    port = server.getsockname()[1]
    if kind == "refused":
        server.close()
    known = checkpoint_module.KNOWN_CHECKPOINTS["official"]
    monkeypatch.setitem(checkpoint_module.KNOWN_CHECKPOINTS, "official",
                        known.__class__(known.filename, f"http://127.0.0.1:{port}/x.pth", known.sha256, ""))
    started = time.monotonic()
    assert to_onnx.main(["--ckpt", "official", "-o", str(tmp_path / "m.onnx")]) == 2
    assert time.monotonic() - started < 10
    assert str(tmp_path / "checkpoints" / "team28_MSN.pth") in caplog.text and "--ckpt PATH" in caplog.text
    assert "Traceback" not in caplog.text and len(caplog.records[-1].getMessage().splitlines()) == 1
    assert not list((tmp_path / "checkpoints").glob(".*part"))
    server.close()


# 7: no verdict over nothing, or over less than was asked.
def test_validator_refuses_unknown_backends_and_missing_engines(ckpt, tmp_path):
    started = time.monotonic()
    assert validate_run.main(["--ckpt", str(ckpt), "--backends", "typo", "--out", str(tmp_path)]) == 2
    missing_engine = ["--engine", str(tmp_path / "none.plan")]
    assert validate_run.main(["--ckpt", str(ckpt), *missing_engine, "--out", str(tmp_path)]) == 2
    assert time.monotonic() - started < 5  # before any export or model run
    assert not (tmp_path / "report.json").exists()


def test_validator_fails_when_an_asked_backend_cannot_run(ckpt, graph, tmp_path):
    args = ["--ckpt", str(ckpt), "--onnx", str(graph), "--no-speed", "--out", str(tmp_path)]
    assert validate_run.main([*args, "--backends", "torch-fp32,ort-cuda-fp32"]) == 1  # no CUDA here
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False and report["missing"][0].startswith("ort-cuda-fp32")
    assert "asked for but did not run: ort-cuda-fp32" in (tmp_path / "report.md").read_text()


# 8: NaN/Inf and 0-255 inputs are refused.
@pytest.mark.parametrize(("value", "message"), [(float("nan"), "NaN or Inf"), (float("inf"), "NaN or Inf"),
                                                (255.0, "divide by 255"), (-3.0, "expects \\[0, 1\\]")])
def test_bad_pixel_values_are_refused(random_msn, graph, value, message):
    x = smooth_test_image(1, 32, 32)
    x[0, 1, 5, 7] = value
    with pytest.raises(InputError, match=message):
        random_msn(x)
    with pytest.raises(InputError, match=message):
        engines.load(graph, backend="onnxruntime")(x.numpy())


# 9, 20: tile and overlap values are checked before any work, in the CLI and the API.
def exit_code(main, args: list[str]) -> int:
    """A CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(("args", "message"), [
    (["--tile", "10"], "below MSN's minimum"), (["--tile", "28"], "below MSN's minimum"),
    (["--tile", "-5"], "expected 0 or more"), (["--overlap", "-1"], "expected 0 or more"),
    (["--tile", "64", "--overlap", "32"], "less than half"), (["--tile", "abc"], "whole number"),
])
def test_upscale_rejects_bad_tiles(photo, tmp_path, args, message, capsys, caplog):
    # "nothing.pth" would fail to load: the tile check must come first.
    assert exit_code(upscale.main, [str(photo), "-o", str(tmp_path / "o.png"), "--model", "nothing.pth", *args]) == 2
    assert message in capsys.readouterr().err + caplog.text


def test_tile_zero_means_whole_image_and_api_rejects_wide_overlap(photo, tmp_path, ckpt, graph):
    assert upscale.main([str(photo), "-o", str(tmp_path / "o.png"), "--model", str(ckpt), "--tile", "0"]) == 0
    with pytest.raises(InputError, match="less than half"):
        engines.load(graph, backend="onnxruntime")(smooth_test_image(1, 80, 80).numpy(), tile=40, overlap=20)


# 10: output-path problems are found before the model loads.
def test_upscale_output_problems_before_any_work(photo, tmp_path, caplog):
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        readonly = Path("/sys/kernel")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    cases = [([str(photo), str(photo)], readonly, "not writable"),
             ([str(photo)], tmp_path / "missing" / "out.png", "does not exist"),
             ([str(photo), str(photo)], notes, "existing file, not a folder")]
    for inputs, out, message in cases:
        caplog.clear()
        # "nothing.pth" would fail to load: these must fail earlier, on the output.
        assert upscale.main([*inputs, "-o", str(out), "--model", "nothing.pth"]) == 2
        assert message in caplog.text, (out, caplog.text)
    assert notes.read_text() == "mine"


# 11, 14: build_trt checks its paths and its graph before building.
def test_build_trt_path_problems_before_building(graph, tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    empty = tmp_path / "empty.onnx"
    empty.touch()
    folder = tmp_path / "dir.plan"
    folder.mkdir()
    cases = [(["--onnx", str(graph), "-o", str(folder)], "is a directory"),
             (["--onnx", str(graph), "-o", str(tmp_path / "x.plan"),
               "--timing-cache", str(tmp_path / "no" / "t.cache")], "does not exist"),
             (["--onnx", str(empty), "-o", str(tmp_path / "e.plan")], "is empty"),
             (["--onnx", str(graph), "--workspace", "0"], None)]
    for args, message in cases:
        caplog.clear()
        assert exit_code(build_trt.main, args) == 2
        assert message is None or (message in caplog.text and "building" not in caplog.text), caplog.text


# 12, 13: validator input problems are usage errors (exit 2), found before any model runs.
def test_validator_bad_reference_and_sizes(ckpt, tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    base = ["--ckpt", str(ckpt), "--out", str(tmp_path / "r"), "--no-speed", "--backends", "torch-fp32"]
    assert validate_run.main([*base, "--reference", str(tmp_path / "missing")]) == 2
    assert validate_run.main([*base, "--reference", str(ref)]) == 2  # empty
    cv2.imwrite(str(ref / "a_lr.png"), np.zeros((32, 32, 3), np.uint8))
    np.savez(ref / "a_sr_fp64.npz", other=np.zeros(3))
    assert validate_run.main([*base, "--reference", str(ref)]) == 2  # no "sr"
    np.savez(ref / "a_sr_fp64.npz", sr=np.zeros((100, 128, 3)))
    assert validate_run.main([*base, "--reference", str(ref)]) == 2  # wrong shape
    for sizes in ("abc", "10x10", "0x0", "64x64,"):
        assert exit_code(validate_run.main, [*base, "--sizes", sizes]) == 2
    assert validate_run.parse_sizes("64X48, 32x40") == [(64, 48), (32, 40)]


# 15: upscaling into the input folder twice does not upscale earlier outputs.
def test_upscale_into_the_input_folder_twice(tmp_path, photo, ckpt):
    args = [str(tmp_path), "-o", str(tmp_path), "--model", str(ckpt)]
    assert upscale.main(args) == 0
    assert upscale.main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["in.png", "in_x4.png"]


# 16: device names and sidecars.
def test_bad_devices_and_sidecars(photo, tmp_path, ckpt, graph, caplog):
    assert upscale.main([str(photo), "-o", str(tmp_path / "a.png"), "--model", str(ckpt), "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in caplog.text
    assert upscale.main([str(photo), "-o", str(tmp_path / "a.png"), "--model", str(graph), "--backend", "onnxruntime",
                         "--device", "gpu"]) == 2
    if not torch.cuda.is_available():
        assert upscale.main([str(photo), "-o", str(tmp_path / "a.png"), "--model", str(ckpt), "--device", "cuda"]) == 2
        assert "sees no CUDA GPU" in caplog.text
    plan = tmp_path / "e.plan"
    plan.write_bytes(b"x")
    (tmp_path / "e.plan.json").write_text(json.dumps({"format": "msn-engine/1", "scale": 4}))
    with pytest.raises(EngineError, match="missing tensorrt, target"):
        read_sidecar(plan)


# 19: SIGTERM during an export leaves no temporary file.
def test_sigterm_during_export_leaves_nothing(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    proc = subprocess.Popen([sys.executable, "export/to_onnx.py", "--ckpt", str(ckpt), "-o", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.onnx.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".m.onnx.*.tmp")), "the export never reached its temporary file"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


# 21: never advise weights_only=False for a file of unknown origin.
def test_random_bytes_checkpoint_gives_no_unsafe_advice(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(junk)
    assert "weights_only" not in str(info.value) and "not a readable PyTorch checkpoint" in str(info.value)


# 23: FP32 TensorRT-RTX builds without a GPU fail with a clear message.
def test_fp32_rtx_build_without_gpu_says_why(graph, tmp_path, caplog):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    if torch.cuda.is_available():
        pytest.skip("measures the no-GPU case")
    assert build_trt.main(["--onnx", str(graph), "-o", str(tmp_path / "fp32.plan")]) == 2
    assert "cannot build FP32 engines without a GPU" in caplog.text and not (tmp_path / "fp32.plan").exists()
