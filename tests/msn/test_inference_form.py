"""The inference form is the same function as the training form (random weights, float64)."""

from __future__ import annotations

import pytest
import torch

from msn_deploy.msn import MSN, MSNConfig, to_inference_form
from msn_deploy.msn.arch import local_variance_unfold
from msn_deploy.msn.stats import local_variance
from tests.util import converted


@pytest.mark.parametrize("shape", [(1, 3, 29, 29), (1, 3, 31, 45), (1, 3, 64, 37), (2, 3, 40, 33)])
@pytest.mark.parametrize("fold_pointwise", [False, True])
def test_fusion_is_exact(random_msn, shape, fold_pointwise):
    model = converted(random_msn, torch.float64)
    # Random LayerNorm affine and non-zero biases, so that every folded term is exercised.
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln." in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("ln.weight") else 0.0))
    fused = to_inference_form(model, fold_pointwise=fold_pointwise)
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, actual = model(x), fused(x)
    assert actual.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-10), (actual - expected).abs().max()


@pytest.mark.parametrize("config", [MSNConfig.from_width(32, 2, 2), MSNConfig.from_width(16, 3, 3)])
def test_fusion_exact_for_other_variants(config):
    torch.manual_seed(0)
    model = MSN(config).double().eval()
    x = torch.rand(1, 3, 35, 30, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(to_inference_form(model)(x), model(x), rtol=0, atol=1e-10)


def test_pooled_local_variance_equals_unfold():
    z = torch.randn(2, 7, 20, 17, dtype=torch.float64) * 3 + 5
    assert torch.allclose(local_variance(z), local_variance_unfold(z), rtol=0, atol=1e-12)


def test_training_model_untouched_by_fusion(random_msn):
    before = {k: v.clone() for k, v in random_msn.state_dict().items()}
    to_inference_form(random_msn, fold_pointwise=True)
    after = random_msn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
