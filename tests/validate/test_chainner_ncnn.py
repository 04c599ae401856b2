"""The ncnn export in chaiNNer's own ncnn build (ncnn-vulkan==2023.6.18, run as chaiNNer's NCNN Upscale
Image node runs it), on its CPU path and on a Vulkan device (lavapipe here), against the float64
references at their own sizes; and a layer it lacks, planted, is refused there as the app table says."""

from __future__ import annotations

import numpy as np
import pytest

from msn_deploy import export
from msn_deploy.export.ncnn_apps import known_apps, what_stops
from msn_deploy.export.parity import NCNN_FP16_MIN_PSNR_DB
from msn_deploy.msn import UsageError
from msn_deploy.msn.formats.ncnn_net import runtime_form, vulkan_devices
from msn_deploy.msn.formats.ncnn_param import NcnnParam
from msn_deploy.msn.metrics import max_abs, psnr
from msn_deploy.validate.core.chainner_ncnn import (
    CHAINNER_NCNN_ENV,
    ChainnerNcnnMissing,
    ChainnerNcnnRefused,
    chainner_ncnn_missing,
    graph_is_fp16,
    run_like_chainner,
)

needs_chainner = pytest.mark.skipif(chainner_ncnn_missing() is not None, reason=str(chainner_ncnn_missing()))
needs_vulkan = pytest.mark.skipif(not vulkan_devices(), reason="ncnn finds no Vulkan device here (Debian: "
                                  "mesa-vulkan-drivers gives lavapipe, a Vulkan device on the CPU)")
# Measured vs float64 (chelsea_crop, astronaut): CPU 1.1e-6 / 2.6e-6, lavapipe FP32 8.6e-7 / 2.7e-6, lavapipe
# with the FP16-weights export (statistics in FP16 there: no per-layer flags in the apps' form) 64.0 / 59.9 dB.
CPU_MAX_ABS_VS_FP64 = 3e-5
VULKAN_FP32_MAX_ABS_VS_FP64 = 1e-5


@pytest.fixture(scope="module")
def official_ncnn_fp16(tmp_path_factory, official_ckpt):
    return export.export_ncnn(official_ckpt, tmp_path_factory.mktemp("fp16_ncnn") / "msn_x4.param",
                              export.NcnnExportOptions(fp16=True))


@needs_chainner
def test_official_export_on_chainners_cpu_path(official_ncnn, reference_cases):
    assert not graph_is_fp16(official_ncnn.param)  # FP32 weights: chaiNNer runs it in FP32
    for case in reference_cases:
        out = run_like_chainner(official_ncnn.param, case.lr)
        assert out.shape == case.sr.shape and max_abs(out, case.sr) <= CPU_MAX_ABS_VS_FP64, case.name


@needs_chainner
@needs_vulkan
def test_official_export_on_chainners_vulkan_fp32(official_ncnn, reference_cases):
    for case in reference_cases:
        out = run_like_chainner(official_ncnn.param, case.lr, vulkan=True)
        assert out.shape == case.sr.shape and max_abs(out, case.sr) <= VULKAN_FP32_MAX_ABS_VS_FP64, case.name


@needs_chainner
@needs_vulkan
@pytest.mark.slow
def test_half_precision_export_runs_fp16_on_chainners_vulkan(official_ncnn_fp16, reference_cases):
    assert graph_is_fp16(official_ncnn_fp16.param)  # FP16 weights: chaiNNer turns FP16 arithmetic on
    for case in reference_cases:
        out = run_like_chainner(official_ncnn_fp16.param, case.lr, vulkan=True)
        assert np.isfinite(out).all() and psnr(out, case.sr) >= NCNN_FP16_MIN_PSNR_DB, case.name


@needs_chainner
def test_a_planted_erf_is_refused_there_as_the_table_says(random_ncnn, tmp_path, reference_cases):
    graph = runtime_form(NcnnParam.read(random_ncnn.param))  # GELUs written with Erf, as this runtime loads it
    planted = tmp_path / "erf.param"
    planted.write_text(graph.text())
    planted.with_suffix(".bin").write_bytes(random_ncnn.weights.read_bytes())
    chainner = next(app for app in known_apps() if app.name == "chaiNNer")
    assert "Erf (89)" in what_stops(chainner, graph)
    with pytest.raises(ChainnerNcnnRefused, match="Erf not exists"):
        run_like_chainner(planted, reference_cases[0].lr)
    run_like_chainner(random_ncnn.param, reference_cases[0].lr)  # the file as exported loads


def test_a_folder_without_chainners_ncnn_is_one_clear_error(random_ncnn, tmp_path, monkeypatch):
    monkeypatch.setenv(CHAINNER_NCNN_ENV, str(tmp_path))
    with pytest.raises(ChainnerNcnnMissing, match=f"not installed in {tmp_path}: run .ci/setup.sh, or pip install"):
        run_like_chainner(random_ncnn.param, np.zeros((32, 32, 3), np.uint8))


@needs_chainner
def test_an_image_chainner_would_not_feed_ncnn_is_refused(random_ncnn):
    for image in (np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8)):
        with pytest.raises(UsageError, match="chaiNNer feeds ncnn 8-bit RGB images"):
            run_like_chainner(random_ncnn.param, image)
