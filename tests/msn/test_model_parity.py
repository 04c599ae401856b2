"""Both forms of MSN against the float64 outputs of the authors' code (shared/reference)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msn_deploy.msn import to_inference_form
from msn_deploy.msn.metrics import psnr, psnr_y
from tests.conftest import REFERENCE_DIR
from tests.util import FP16_MIN_PSNR_DB, converted, to_hwc


def run(model, case, dtype):
    with torch.no_grad():
        return to_hwc(model(case.input_tensor(dtype)))


@pytest.mark.parametrize("form", ["training", "inference", "inference-folded"])
def test_float64_matches_reference(official_model, reference_cases, form):
    model = converted(official_model, torch.float64)
    if form != "training":
        model = to_inference_form(model, fold_pointwise=form == "inference-folded")
    for case in reference_cases:
        # The reference is float64 stored as float32: agreement up to float32 storage precision.
        assert np.abs(run(model, case, torch.float64) - case.sr).max() <= 1e-6, case.name


@pytest.mark.parametrize("form", ["training", "inference", "inference-folded"])
def test_float32_matches_reference(official_model, reference_cases, form):
    model = official_model
    if form != "training":
        model = to_inference_form(model, fold_pointwise=form == "inference-folded")
    for case in reference_cases:
        # A faithful float32 MSN is within ~4e-6; 1e-5 or more would mean a bug, not rounding.
        assert np.abs(run(model, case, torch.float32) - case.sr).max() < 1e-5, case.name


def test_float16_inference_form_is_finite_and_close(official_model, reference_cases):
    model = to_inference_form(official_model).half()
    for case in reference_cases:
        out = run(model, case, torch.float16)
        assert np.isfinite(out).all(), case.name
        assert psnr(out, case.sr) >= FP16_MIN_PSNR_DB, case.name


def test_reference_quality_vs_ground_truth(official_model, reference_cases):
    """The manifest's Y-PSNR vs HR (rounded to 0.01 dB there) is reproduced in float32."""
    manifest = json.loads((REFERENCE_DIR / "manifest.json").read_text())
    for case in reference_cases:
        out = run(official_model, case, torch.float32)
        assert psnr_y(out, case.hr) == pytest.approx(manifest[case.name]["psnr_y_vs_hr"], abs=0.006), case.name
