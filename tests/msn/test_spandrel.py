"""MSN through spandrel (ComfyUI, chaiNNer, InvokeAI): detected by its keys, loaded strict as the
inference form, the same pixels as msn.load_model, half precision that holds, foreign files refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

try:
    import spandrel
except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision built for another torch
    pytest.skip(f"spandrel does not import here ({exc}); it needs torchvision built for this torch "
                "(pip install -e '.[spandrel]' where one exists)", allow_module_level=True)

import msn_deploy.msn.spandrel  # noqa: E402, F401  (registers MSN)
from msn_deploy.msn import MSN, CheckpointError, MSNConfig, load_model  # noqa: E402
from msn_deploy.msn.inference import MSNInference  # noqa: E402
from msn_deploy.msn.metrics import max_abs, psnr  # noqa: E402
from tests.util import FP16_MIN_PSNR_DB  # noqa: E402

INFERENCE_FORM_MAX_ABS_VS_FP64 = 2e-5  # measured 4.2e-6 (astronaut)


def test_the_official_checkpoint_is_an_sr_model_for_spandrel(official_ckpt):
    model = spandrel.ModelLoader().load_from_file(official_ckpt)
    assert isinstance(model, spandrel.ImageModelDescriptor) and model.architecture.id == "MSN"
    assert (model.purpose, model.scale, model.input_channels, model.output_channels) == ("SR", 4, 3, 3)
    assert model.size_requirements.minimum == 29 and model.supports_half and not model.supports_bfloat16
    assert isinstance(model.model, MSNInference)


def test_its_pixels_are_msn_load_models(official_ckpt, reference_cases):
    descriptor = spandrel.ModelLoader().load_from_file(official_ckpt)
    ours = load_model(official_ckpt, deploy=True)
    for case in reference_cases:
        x = case.input_tensor()
        with torch.no_grad():
            out = descriptor(x)
            assert torch.equal(out, ours(x).clamp(0, 1))  # spandrel's contract: outputs clamped to [0, 1]
        hwc = out[0].permute(1, 2, 0).numpy()
        assert max_abs(hwc, np.clip(case.sr, 0, 1)) <= INFERENCE_FORM_MAX_ABS_VS_FP64, case.name


def test_half_precision_holds_where_the_training_form_overflows(official_ckpt, reference_cases):
    descriptor = spandrel.ModelLoader().load_from_file(official_ckpt).half()
    case = min(reference_cases, key=lambda c: c.lr.size)  # float16 convolutions are slow on a CPU
    with torch.no_grad():
        out = descriptor(case.input_tensor(torch.float16)).float()[0].permute(1, 2, 0).numpy()
    assert np.isfinite(out).all() and psnr(out, np.clip(case.sr, 0, 1)) >= FP16_MIN_PSNR_DB


def test_foreign_and_damaged_state_dicts(random_msn):
    loader = spandrel.ModelLoader()
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    compact = SRVGGNetCompact(num_feat=8, num_conv=2).state_dict()
    assert loader.load_from_state_dict(compact).architecture.id == "Compact"  # still someone else's
    with pytest.raises(spandrel.UnsupportedModelError):
        loader.load_from_state_dict({"conv.weight": torch.zeros(3, 3, 3, 3)})
    ours = random_msn.state_dict()
    without_cca = {k: v for k, v in ours.items() if ".cca." not in k}
    with pytest.raises(spandrel.UnsupportedModelError):
        loader.load_from_state_dict(without_cca)
    wrong = {**ours, "B2.c5.weight": torch.zeros(28, 55, 1, 1)}
    with pytest.raises(CheckpointError, match="B2.c5.weight"):
        loader.load_from_state_dict(wrong)
    small = loader.load_from_state_dict(ours)
    with torch.no_grad():  # below MSN's minimum: spandrel pads to it and crops the output
        assert small(torch.rand(1, 3, 20, 24)).shape == (1, 3, 80, 96)


@pytest.mark.parametrize("config", [MSNConfig.from_width(32, 2, 2), MSNConfig.from_width(16, 3, 3)])
def test_msn_variants_of_other_widths_depths_and_scales(config):
    torch.manual_seed(1)
    model = MSN(config).eval()
    for p in model.parameters():  # random, not the init's zeros and ones, so that every weight matters
        p.data.normal_(0, 0.1)
    descriptor = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    assert descriptor.architecture.id == "MSN" and descriptor.scale == config.upscale
    assert descriptor.tags == [f"{config.num_feat}nf", f"{config.num_block}nb"]
    x = torch.rand(1, 3, 33, 40)
    with torch.no_grad():
        assert torch.allclose(descriptor(x), model(x).clamp(0, 1), atol=1e-5)
