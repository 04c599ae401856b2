"""Float16: the naive (authors') statistics overflow; the inference form's do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from msn_deploy.msn import stats, to_inference_form
from msn_deploy.msn.metrics import psnr
from tests.conftest import REFERENCE_DIR
from tests.util import converted, to_hwc


def real_looking_input() -> torch.Tensor:
    """A 256x384 photo crop (HR astronaut resized), the size where naive float16 breaks."""
    path = REFERENCE_DIR / "astronaut_hr.png"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = Image.open(path).convert("RGB").resize((384, 256), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255


INPUTS = {
    "photo": real_looking_input,
    "saturated": lambda: torch.ones(1, 3, 256, 384),
    "noise": lambda: torch.rand(1, 3, 256, 384, generator=torch.Generator().manual_seed(0)),
}
# Photos: below 8-bit quantisation noise (58.9 dB). Uniform noise is far outside the training
# data and drives block 8 to activations near 1e3, where float16's 11-bit mantissa costs ~1e-2
# relative: measured 46.6 dB vs float64 there, so it is held to finite and >= 40 dB.
MIN_PSNR_DB = {"photo": 60.0, "saturated": 40.0, "noise": 40.0}


@pytest.mark.slow
def test_naive_half_overflows_on_a_photo(official_model):
    """The authors' statistics in float16 overflow at this size (shown once, on the photo: each
    float16 forward here takes ~20 s on a CPU)."""
    with torch.no_grad():
        naive = converted(official_model, torch.float16)(real_looking_input().half())
    assert not torch.isfinite(naive).all(), "expected the authors' float16 statistics to overflow"


@pytest.mark.slow
@pytest.mark.parametrize("kind", INPUTS)
def test_the_inference_form_in_half_stays_finite_and_close(official_model, kind):
    x = INPUTS[kind]()
    with torch.no_grad():
        safe = to_inference_form(official_model).half()(x.half())
        reference = official_model(x)
    assert torch.isfinite(safe).all()
    assert psnr(to_hwc(safe), to_hwc(reference)) >= MIN_PSNR_DB[kind]


@pytest.mark.parametrize("name", ["channel_layer_norm", "contrast_plus_mean", "local_variance"])
def test_statistics_stay_finite_where_float16_squares_overflow(name):
    """|x| up to 300: x*x reaches 9e4 > 65504. The float32 islands must keep these finite and
    accurate in float16; the same statistics computed in float16 give Inf/NaN. Random inputs,
    no weights: runs without ../shared."""
    fn = getattr(stats, name)
    x = torch.rand(1, 28, 64, 64, generator=torch.Generator().manual_seed(1)) * 600 - 300
    expected = fn(x.double())
    out = fn(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.double(), expected, rtol=2e-3, atol=2e-3 * expected.abs().max().item())
