"""Overflow-proof statistics for the inference form.

Each function computes its statistics in float32 whatever the input dtype and returns the
input dtype. In a float16 graph these become small float32 islands: float16 squares overflow
once |x| > 256 and float16 reductions over a whole image overflow past 65504. In float64 they
stay float64 so that the inference form can be checked against the float64 references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from msn_deploy.msn.config import LAYER_NORM_EPS


def _widen(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def channel_layer_norm(x: torch.Tensor, eps: float = LAYER_NORM_EPS) -> torch.Tensor:
    """Normalise over channels per pixel (no affine): (x - mean) / sqrt(biased var + eps).

    Both channel means are written as 1x1 convs (centring matrix I - 1/C, then a 1/C row):
    runtimes run those as one GEMM each, where a reduction over the channel axis of an NCHW
    tensor is a slow strided pass (measured 3.7x slower on ONNX Runtime CPU).
    """
    wide = _widen(x)
    c = x.shape[1]
    centring = (torch.eye(c, dtype=wide.dtype, device=x.device) - 1.0 / c)[:, :, None, None]
    averaging = torch.full((1, c, 1, 1), 1.0 / c, dtype=wide.dtype, device=x.device)
    centred = F.conv2d(wide, centring)
    var = F.conv2d(centred * centred, averaging)
    # Expanding the 1-channel factor explicitly (a view in PyTorch) keeps the ONNX Mul
    # same-shaped: OpenCV DNN's default engine mis-handles a C-by-1 channel broadcast. Expanded
    # to (-1, C, -1, -1), not `expand_as`, which pnnx cannot turn into an ncnn layer.
    return (centred * torch.rsqrt(var + eps).expand(-1, c, -1, -1)).to(x.dtype)


def contrast_plus_mean(x: torch.Tensor) -> torch.Tensor:
    """Per channel over all pixels: population std + mean (CCA's statistic), two-pass."""
    wide = _widen(x)
    mean = wide.mean((2, 3), keepdim=True)
    centred = wide - mean
    std = (centred * centred).mean((2, 3), keepdim=True).sqrt()
    return (std + mean).to(x.dtype)


def local_variance(z: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over 7x7 windows, stride 3, of the reflect-padded input, via pooling.

    var = 49/48 * (E[z^2] - E[z]^2) per window. That difference cancels when a window's mean is
    large against its spread, so z is first shifted by its per-channel image mean (variance is
    shift-invariant), which keeps both terms near the size of the variance itself.
    """
    wide = _widen(z)
    wide = wide - wide.mean((2, 3), keepdim=True)
    padded = F.pad(wide, (1, 1, 1, 1), mode="reflect")
    mean = F.avg_pool2d(padded, 7, 3)
    mean_sq = F.avg_pool2d(padded * padded, 7, 3)
    return ((mean_sq - mean * mean) * (49.0 / 48.0)).to(z.dtype)
