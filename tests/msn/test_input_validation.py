from __future__ import annotations

import pytest
import torch

from msn_deploy.msn import InputError, to_inference_form


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(1, 3, 28, 64), "at least 29x29"),
        (torch.rand(1, 3, 64, 20), "at least 29x29"),
        (torch.rand(1, 4, 32, 32), "expected 3 channels"),
        (torch.rand(1, 1, 32, 32), "convert grayscale"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "divide 8-bit images by 255"),
        (torch.rand(3, 32, 32), "add a batch axis"),
    ],
)
@pytest.mark.parametrize("form", ["training", "inference"])
def test_bad_inputs_are_refused_clearly(random_msn, x, message, form):
    model = random_msn if form == "training" else to_inference_form(random_msn)
    with pytest.raises(InputError, match=message):
        model(x)


def test_smallest_input_runs(random_msn):
    assert random_msn(torch.rand(1, 3, 29, 29)).shape == (1, 3, 116, 116)
