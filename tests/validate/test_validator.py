"""The validator on CPU backends: report produced, numbers independently reproduced, failures caught."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from msn_deploy.msn import UsageError, read_checkpoint
from msn_deploy.msn.cli import hw_sizes
from msn_deploy.msn.formats.ncnn_net import vulkan_devices
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.backends import ncnn_candidates
from msn_deploy.validate.validator import command, runner
from tests.conftest import REFERENCE_DIR
from tests.util import exit_code

FAST = ["--sizes", "32x48", "--runs", "3", "--warmup", "0.05", "--max-seconds", "1", "--ntire-runs", "2"]


@pytest.fixture(scope="module")
def fp32_graph(official_graph):
    return official_graph


@pytest.fixture(scope="module")
def random_setup(random_ckpt, random_graph):
    """Random weights and their FP32 graph: the validator's mechanics need no particular weights."""
    return random_ckpt, random_graph


@pytest.fixture(scope="module")
def report(tmp_path_factory, official_ckpt, fp32_graph, reference_cases):
    out = tmp_path_factory.mktemp("report")
    args = ["--ckpt", str(official_ckpt), "--onnx", str(fp32_graph), "--reference", str(REFERENCE_DIR),
            "--out", str(out), *FAST]
    assert command.main(args) == 0
    return out


def test_report_files(report):
    for name in ("report.json", "report.md", "latency.png", "error_heatmap.png", "crops.png"):
        assert (report / name).stat().st_size > 0, name
    data = json.loads((report / "report.json").read_text())
    assert data["schema"] == "msn-validate/3" and data["passed"] is True
    assert data["machine"]["torch"] == torch.__version__
    assert "| onnxruntime-cpu-fp32 | astronaut |" in (report / "report.md").read_text()


def test_the_ncnn_rows_hold_the_references(report):
    data = json.loads((report / "report.json").read_text())
    rows = {(r["backend"], r["image"]): r for r in data["parity"] if r["backend"].startswith("ncnn-")}
    backends = {b["name"]: b for b in data["backends"]}
    expected = ["ncnn-cpu-fp32"] + (["ncnn-vulkan-fp32", "ncnn-vulkan-fp16"] if vulkan_devices() else [])
    assert sorted({name for name, _ in rows}) == sorted(expected)
    assert all(row["passed"] for row in rows.values())
    for image in ("astronaut", "chelsea_crop"):
        assert rows[("ncnn-cpu-fp32", image)]["vs_reference"]["max_abs"] <= 3e-5  # measured 1.2e-5
        if vulkan_devices():
            assert rows[("ncnn-vulkan-fp32", image)]["vs_reference"]["max_abs"] <= 1e-5  # measured 2.3e-6
            assert rows[("ncnn-vulkan-fp16", image)]["vs_reference"]["psnr_db"] >= 50
            assert rows[("ncnn-vulkan-fp16", image)]["min_psnr_db"] == 50  # its own floor: FP16 throughout
    if vulkan_devices() and "llvmpipe" in vulkan_devices()[0]:  # lavapipe: parity, never a speed figure
        assert "says nothing about a GPU" in backends["ncnn-vulkan-fp32"]["speed_note"]
        assert not [r for r in data["speed"] if r["backend"].startswith("ncnn-vulkan")]


def test_parity_numbers_match_an_independent_computation(report, official_model, fp32_graph, reference_cases):
    data = json.loads((report / "report.json").read_text())
    rows = {(r["backend"], r["image"]): r for r in data["parity"]}
    for case in reference_cases:
        x = case.input_tensor()
        with torch.no_grad():
            eager = official_model(x)[0].permute(1, 2, 0).double().numpy()
        session = ort.InferenceSession(str(fp32_graph), providers=["CPUExecutionProvider"])
        onnx_out = session.run(None, {"input": x.numpy()})[0][0].transpose(1, 2, 0).astype(np.float64)
        row = rows[("onnxruntime-cpu-fp32", case.name)]
        # ORT's optimisation level may change the last bits; the report must agree to ~1e-6.
        assert row["vs_eager"]["max_abs"] == pytest.approx(np.abs(onnx_out - eager).max(), abs=1e-6)
        assert row["vs_reference"]["max_abs"] == pytest.approx(np.abs(onnx_out - case.sr).max(), abs=1e-6)
        mse = np.mean((onnx_out - eager) ** 2)
        assert row["vs_eager"]["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), abs=0.5)
        assert rows[(runner.BASELINE, case.name)]["vs_eager"]["max_abs"] == 0.0


def test_speed_rows_and_ratios(report):
    data = json.loads((report / "report.json").read_text())
    speed = {r["backend"]: r for r in data["speed"]}
    assert speed[runner.BASELINE]["speedup_vs_eager"] == 1.0
    ort_row = speed["onnxruntime-cpu-fp32"]
    expected = speed[runner.BASELINE]["timing"]["median_ms"] / ort_row["timing"]["median_ms"]
    assert ort_row["speedup_vs_eager"] == pytest.approx(expected)
    assert ort_row["timing"]["runs"] >= 3 and data["ntire_protocol"][0]["runs"] == 2


def test_skipped_backends_are_reported_with_reasons(tmp_path, random_setup):
    ckpt, graph = random_setup
    args = ["--ckpt", str(ckpt), "--onnx", str(graph), "--out", str(tmp_path), "--no-speed"]
    assert command.main(args) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    status = {b["name"]: b for b in data["backends"]}
    assert status["tensorrt-cuda"]["status"] == "skipped" and "--engine" in status["tensorrt-cuda"]["reason"]
    if not torch.cuda.is_available():
        assert "GPU" in status["torch-cuda-fp16-compiled"]["reason"]
        assert status["onnxruntime-cuda-fp32"]["status"] == "skipped"
        assert "float16 convolutions on CPU" in status["torch-cpu-fp16"]["speed_note"]
    assert "## Skipped" in (tmp_path / "report.md").read_text()


def test_broken_artifact_fails(tmp_path, random_setup):
    ckpt, graph = random_setup
    model = onnx.load(graph)
    conv_weights = [i for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 48]  # the upsampler
    weights = numpy_helper.to_array(conv_weights[0]).copy()
    weights *= 1.01
    conv_weights[0].CopyFrom(numpy_helper.from_array(weights, conv_weights[0].name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    args = ["--ckpt", str(ckpt), "--onnx", str(broken), "--out", str(tmp_path / "r"), "--no-speed",
            "--backends", "onnxruntime-cpu-fp32"]
    assert command.main(args) == 1
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["passed"] is False
    assert [r["passed"] for r in data["parity"] if r["backend"] == "onnxruntime-cpu-fp32"] == [False]
    # The reported error is the real one, computed here independently on the same input.
    x = smooth_test_image(1, 96, 120)
    with torch.no_grad():
        eager = random_model_output(ckpt, x)
    session = ort.InferenceSession(str(broken), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    row = next(r for r in data["parity"] if r["backend"] == "onnxruntime-cpu-fp32")
    assert row["vs_eager"]["max_abs"] == pytest.approx(float(np.abs(out - eager).max()), rel=1e-3)
    assert row["vs_eager"]["max_abs"] > 1e-3  # far past the 1e-4 tolerance: the verdict is earned


def test_a_model_that_gives_nan_is_a_failed_row_in_a_whole_report(tmp_path, random_setup, caplog):
    """Hardening round 4, F: NaN out of a candidate ended the run with one line and no report. Now
    its rows fail with the engine's words, the other candidates are compared and timed, it is not
    timed, and report.json/md are written; exit 1."""
    ckpt, graph = random_setup
    model = onnx.load(graph)
    upsampler = next(i for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 48)
    weights = numpy_helper.to_array(upsampler).copy()
    weights.flat[0] = np.nan
    upsampler.CopyFrom(numpy_helper.from_array(weights, upsampler.name))
    poisoned = tmp_path / "nan.onnx"
    onnx.save(model, poisoned)
    out = tmp_path / "r"
    args = ["--ckpt", str(ckpt), "--onnx", str(poisoned), "--out", str(out), *FAST,
            "--backends", "onnxruntime-cpu-fp32,torch-cpu-fp32"]
    assert command.main(args) == 1
    data = json.loads((out / "report.json").read_text())
    rows = {r["backend"]: r for r in data["parity"]}
    assert rows["onnxruntime-cpu-fp32"]["passed"] is False and "NaN" in rows["onnxruntime-cpu-fp32"]["error"]
    assert rows["torch-cpu-fp32"]["passed"] is True and data["passed"] is False
    assert {r["backend"] for r in data["speed"]} == {"eager-fp32", "torch-cpu-fp32"}
    noted = next(b for b in data["backends"] if b["name"] == "onnxruntime-cpu-fp32")["speed_note"]
    assert "NaN" in noted
    page = (out / "report.md").read_text()
    assert "**FAIL**" in page and "NO: onnxruntime" in page


def random_model_output(ckpt, x: torch.Tensor) -> np.ndarray:
    from msn_deploy.msn import build_model

    with torch.no_grad():
        return build_model(read_checkpoint(ckpt))(x).numpy()


def test_intact_artifact_passes(tmp_path, random_setup):
    """The same check on the unmodified graph passes, so the failure above is the perturbation's."""
    ckpt, graph = random_setup
    args = ["--ckpt", str(ckpt), "--onnx", str(graph), "--out", str(tmp_path), "--no-speed", "--backends", "onnxruntime-cpu-fp32"]
    assert command.main(args) == 0


# no verdict over nothing, or over less than was asked.
def test_validator_refuses_unknown_backends_and_missing_engines(random_ckpt, tmp_path):
    started = time.monotonic()
    assert command.main(["--ckpt", str(random_ckpt), "--backends", "typo", "--out", str(tmp_path)]) == 2
    missing_engine = ["--engine", str(tmp_path / "none.plan")]
    assert command.main(["--ckpt", str(random_ckpt), *missing_engine, "--out", str(tmp_path)]) == 2
    assert time.monotonic() - started < 5  # before any export or model run
    assert not (tmp_path / "report.json").exists()


def test_validator_fails_when_an_asked_backend_cannot_run(random_ckpt, random_graph, tmp_path):
    args = ["--ckpt", str(random_ckpt), "--onnx", str(random_graph), "--no-speed", "--out", str(tmp_path)]
    assert command.main([*args, "--backends", "torch-fp32,ort-cuda-fp32"]) == 1  # no CUDA here
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False and report["missing"][0].startswith("onnxruntime-cuda-fp32")
    assert "asked for but did not run: onnxruntime-cuda-fp32" in (tmp_path / "report.md").read_text()


# validator input problems are usage errors (exit 2), found before any model runs.
def test_validator_bad_reference_and_sizes(random_ckpt, tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    base = ["--ckpt", str(random_ckpt), "--out", str(tmp_path / "r"), "--no-speed", "--backends", "torch-fp32"]
    assert command.main([*base, "--reference", str(tmp_path / "missing")]) == 2
    assert command.main([*base, "--reference", str(ref)]) == 2  # empty
    cv2.imwrite(str(ref / "a_lr.png"), np.zeros((32, 32, 3), np.uint8))
    np.savez(ref / "a_sr_fp64.npz", other=np.zeros(3))
    assert command.main([*base, "--reference", str(ref)]) == 2  # no "sr"
    np.savez(ref / "a_sr_fp64.npz", sr=np.zeros((100, 128, 3)))
    assert command.main([*base, "--reference", str(ref)]) == 2  # wrong shape
    for sizes in ("abc", "10x10", "0x0", "64x64,"):
        assert exit_code(command.main, [*base, "--sizes", sizes]) == 2
    assert hw_sizes("64X48, 32x40") == [(64, 48), (32, 40)]


@pytest.mark.parametrize("backends", [[], ["--backends", "eager-fp32,torch-fp32"]])
def test_an_artifact_that_cannot_run_is_never_a_pass(random_ckpt, tmp_path, caplog, backends):
    """--onnx garbage.onnx was once skipped and the run called passed; with --backends that leave
    it out it was never read (hardening round 3, #15). A named artifact is read before any work."""
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00 not a graph")
    args = ["--ckpt", str(random_ckpt), "--onnx", str(garbage), "--no-speed", "--out", str(tmp_path / "r"), *backends]
    assert exit_code(command.main, args) == 2
    assert "garbage.onnx" in caplog.text and not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", [["--atol", "-1"], ["--rtol", "nan"], ["--min-psnr", "-5"], ["--max-seconds", "0"]])
def test_nonsense_tolerances_are_usage_errors(random_ckpt, tmp_path, flag, capsys):
    assert exit_code(command.main, ["--ckpt", str(random_ckpt), "--out", str(tmp_path), *flag]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_api_refuses_what_the_command_line_refuses(random_ckpt):
    with pytest.raises(UsageError, match="--atol must be a finite number >= 0"):
        runner.run(runner.ValidationSettings(ckpt=random_ckpt, atol=-1.0, no_speed=True))


def test_two_artifacts_with_one_file_name_are_both_compared(tmp_path, random_setup):
    """Hardening round 4, B: candidates were keyed by file stem, so `--ncnn a/msn_x4.param --ncnn
    b/msn_x4.param` (the exporter's default name) compared one of them and said PASS."""
    ckpt, graph = random_setup
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / "msn_x4.onnx")
        copies[-1].write_bytes(graph.read_bytes())
    names = [f"onnxruntime-cpu-fp32:{p}" for p in copies]
    args = ["--ckpt", str(ckpt), "--onnx", str(copies[0]), "--onnx", str(copies[1]), "--no-speed",
            "--backends", ",".join(["eager-fp32", *names]), "--out", str(tmp_path / "r")]
    assert command.main(args) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert sorted({row["backend"] for row in data["parity"]} - {"eager-fp32"}) == sorted(names)
    params = [tmp_path / f / "msn_x4.param" for f in ("a", "b")]
    candidates = ncnn_candidates(params)
    assert len({c.name for c in candidates}) == len(candidates) == 6
    assert {c.artifact for c in candidates if c.target.device == "cpu"} == set(params)
