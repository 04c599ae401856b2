"""The prepared GPU suite: its --smoke plan runs here on the CPU (the same code paths as on a GPU,
at tiny sizes), so the suite cannot rot before a GPU comes; the take-along folder is prepared
with the real helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from msn_deploy.export.parity import FP16_MIN_PSNR_DB, FP32_MAX_ABS
from msn_deploy.msn import MissingFileError, sha256_of
from msn_deploy.msn.checkpoint import ChecksumError
from msn_deploy.validate.core.variants import BASELINE
from msn_deploy.validate.validator.gpu_suite import PLANS, goals
from msn_deploy.validate.validator.prepare_gpu_run import TooLarge, prepare
from tests.conftest import OFFICIAL_CKPT, REFERENCE_DIR, REPO, SHARED

CPU_VARIANTS = {BASELINE, "torch-cpu-fp32", "torch-cpu-fp16"}
CUDA_VARIANTS = {"torch-cuda-fp16-cuda-graphs", "torch-cuda-fp16-cuda-graphs-channels-last", "torch-cuda-fp16-compiled", "torch-cuda-fp16-compiled-cuda-graphs"}


@pytest.fixture(scope="module")
def take_along(tmp_path_factory):
    """The helper's folder from ../shared (checkpoint, references, graphs; no wheel: PyAV is
    installed here), or an empty one (random weights) where ../shared is absent."""
    folder = tmp_path_factory.mktemp("take-along")
    if OFFICIAL_CKPT.is_file() and REFERENCE_DIR.is_dir():
        prepare(SHARED, folder, wheels=False, graphs=True)
    return folder


def run_suite(out, take_along, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSN_GPU_RUN_DIR": str(take_along), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "validate" / "validator" / "gpu_suite.sh"), "--smoke", str(out), *options],
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_smoke_plan_runs_every_section(tmp_path, take_along):
    # A budget far above the plan's, so that a loaded machine skips nothing the test looks at.
    done = run_suite(tmp_path / "out", take_along, "--budget-s", "900")
    assert done.returncode == 0, done.stdout[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_suite.json", "gpu_suite.md", "suite.log"]
    report = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
    assert report["skipped"] == [] and set(report["unavailable"]) == CUDA_VARIANTS

    with_checkpoint = (take_along / "checkpoints").is_dir()
    images = {r["image"] for r in report["parity"]}
    graphs = {"onnxruntime-cpu-fp32", "onnxruntime-cpu-fp16"} if with_checkpoint else set()
    assert {(r["backend"], r["image"]) for r in report["parity"]} == {(v, i) for v in CPU_VARIANTS | graphs
                                                                      for i in images}
    assert all(r["vs_eager"]["nonfinite"] == 0 for r in report["parity"])
    assert min(r["vs_eager"]["psnr_db"] for r in report["parity"] if r["precision"] == "fp16") >= FP16_MIN_PSNR_DB
    if with_checkpoint:
        assert images == {"astronaut", "chelsea_crop"}
        assert max(r["vs_reference"]["max_abs"] for r in report["parity"] if r["backend"] == "torch-cpu-fp32") \
            < FP32_MAX_ABS

    plan = PLANS["smoke"]
    assert {(r["backend"], r["shape"]) for r in report["speed"]} == {(v, f"1x{h}x{w}") for v in CPU_VARIANTS
                                                                     for h, w in plan.sizes}
    assert all(r["timing"]["median_ms"] > 0 and r["timing"]["runs"] >= 3 for r in report["speed"] + report["batches"])
    assert len(report["ntire"]) == len(plan.ntire_sizes)
    assert [r["lr"] for r in report["end_to_end"]] == [f"{h}x{w}" for h, w in plan.sizes]
    assert {r["encoder"].split()[0] for r in report["video"]} == {"libx264", "ffv1"}
    assert all(r["frames"] == plan.video[2] and r["pipeline_fps"] > 0 for r in report["video"])
    page = (tmp_path / "out" / "gpu_suite.md").read_text()
    assert "Machine: " in page and "TensorRT: " in page and "## Goals" in page


def test_an_exhausted_budget_still_writes_the_report_and_names_what_it_skipped(tmp_path):
    done = run_suite(tmp_path / "out", tmp_path, "--budget-s", "0")
    assert done.returncode == 0, done.stdout[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
    assert report["parity"] == report["speed"] == report["video"] == []
    skipped = " ".join(report["skipped"])
    for section in ("parity of", "NTIRE protocol", "speed at", "end-to-end", "video pipeline"):
        assert section in skipped


def test_bad_suite_arguments(tmp_path):
    assert run_suite("--budget-s", tmp_path).returncode == 2  # no OUT before the options
    done = run_suite(tmp_path / "out", tmp_path, "--budget-s", "-1")
    assert done.returncode == 2 and "expected a finite number >= 0" in done.stdout


def test_goals_are_judged_from_the_measured_rows():
    def speed(variant, shape, median_ms, fps=None):
        return {"backend": variant, "shape": shape, "timing": {"median_ms": median_ms}, "frames_per_s": fps or 1000 / median_ms}

    report = {
        "fastest_fp16": "torch-cuda-fp16-cuda-graphs",
        "speed": [speed(BASELINE, "1x360x640", 30.0), speed("torch-cuda-fp16-cuda-graphs", "1x360x640", 2.4),
                  speed("torch-cuda-fp16-cuda-graphs", "1x1080x1920", 40.0)],
        "end_to_end": [{"lr": "360x640", "numpy_over_device": 1.7}],
        "parity": [{"precision": "fp16", "vs_eager": {"psnr_db": 61.0}},
                   {"precision": "fp32", "vs_eager": {"psnr_db": 1.0}}],
        "video": [{"encoder": "libx264 preset=veryfast", "pipeline_share": 0.95}],
    }
    judged = {g["goal"]: (g["value"], g["met"]) for g in goals(report)}
    assert judged == {
        "fastest FP16 >= 12x eager FP32 at 360x640": (12.5, True),
        "fastest FP16 <= 2 ms per frame on-device at 360x640": (2.4, False),
        "1080x1920 LR (8K out) >= 30 fps": (25.0, False),
        "FP16 >= 60 dB vs eager FP32 on every photo": (61.0, True),
        "numpy in/out within 1.5x of on-device at 360x640": (1.7, False),
        "video pipeline >= 90% of inference fps (x264 veryfast)": (0.95, True),
    }
    assert all(g["value"] is None and g["met"] is None for g in goals({**report, "speed": [], "end_to_end": [],
                                                                       "parity": [], "video": []}))


@pytest.mark.skipif(not OFFICIAL_CKPT.is_file(), reason=f"needs the official checkpoint at {OFFICIAL_CKPT}")
def test_prepare_copies_what_the_run_needs_and_lists_it(take_along):
    manifest = json.loads((take_along / "MANIFEST.json").read_text())
    files = manifest["files"]
    assert {"checkpoints/team28_MSN.pth", "reference/astronaut_lr.png", "reference/astronaut_sr_fp64.npz",
            "graphs/msn_x4_fp32.onnx", "graphs/msn_x4_fp16.onnx"} <= set(files)
    assert files["checkpoints/team28_MSN.pth"]["sha256"] == sha256_of(OFFICIAL_CKPT)
    assert 0 < manifest["with_source_tree_mb"] < 64


@pytest.mark.skipif(not OFFICIAL_CKPT.is_file(), reason=f"needs the official checkpoint at {OFFICIAL_CKPT}")
def test_prepare_refuses_what_would_not_travel_before_downloading(tmp_path):
    with pytest.raises(TooLarge, match="over the 1 MiB that travels"):
        prepare(SHARED, tmp_path / "take", wheels=True, graphs=False, limit_mb=1)
    assert not (tmp_path / "take").exists()  # checked before anything is copied (hardening round 3, #16)


def test_prepare_refuses_a_checkpoint_that_is_not_the_official_one(tmp_path):
    """Hardening round 3, #16: a garbage team28_MSN.pth was copied and the suite would have run on it."""
    shared = tmp_path / "shared"
    (shared / "checkpoints").mkdir(parents=True)
    (shared / "checkpoints" / "team28_MSN.pth").write_bytes(b"not the weights")
    (shared / "reference").mkdir()
    with pytest.raises(ChecksumError, match="is not the official MSN checkpoint"):
        prepare(shared, tmp_path / "take", wheels=False, graphs=False)
    assert not (tmp_path / "take").exists()


def test_prepare_names_a_missing_shared_folder(tmp_path):
    with pytest.raises(MissingFileError, match="pass --shared"):
        prepare(tmp_path / "nowhere", tmp_path / "take")
