"""The GPU path on a real CUDA device (`pytest -m gpu`): skipped with the reason elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.msn.metrics import psnr
from msn_deploy.msn.sample_images import smooth_test_image
from tests.util import FP16_MIN_PSNR_DB, to_hwc

pytestmark = pytest.mark.gpu


def test_fp16_cuda_graphs_hold_the_fp16_floor_on_the_references(official_ckpt, reference_cases):
    engine = engines.load(official_ckpt, device="cuda", precision="fp16")
    assert engine.describe()["cuda_graphs"] is True
    for case in reference_cases:
        x = case.input_tensor().cuda()
        out = engine(x)
        assert out.is_cuda and out.dtype == x.dtype
        assert psnr(to_hwc(out), case.sr) >= FP16_MIN_PSNR_DB, case.name


def test_a_cuda_tensor_stays_on_the_gpu_and_matches_the_cpu(random_ckpt):
    x = smooth_test_image(1, 40, 48)
    gpu = engines.load(random_ckpt, "torch", device="cuda")(x.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), engines.load(random_ckpt, "torch")(x), rtol=0, atol=1e-4)


def test_onnxruntime_on_cuda_matches_the_cpu(random_graph):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (the gpu extra)")
    x = smooth_test_image(1, 40, 48).numpy()
    cuda = engines.load(random_graph, "onnxruntime", device="cuda")(x)
    assert np.abs(cuda - engines.load(random_graph, "onnxruntime")(x)).max() < 1e-4
