"""MSN, training form: the network exactly as the published checkpoints store it.

Module and parameter names are the state-dict keys of every public MSN checkpoint; do not
rename them. The layer-by-layer definition is in shared/docs/msn-architecture.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msn_deploy.msn.config import LAYER_NORM_EPS, RGB_MEAN, MSNConfig
from msn_deploy.msn.tensor_checks import check_input, should_check


class SSConv(nn.Module):
    """Strip-separable conv: 1x1 (no bias) -> depthwise (k,1) -> depthwise (1,k), reflect-padded.

    The stride applies in both spatial dims of each depthwise conv, so stride 2 downsamples by 4.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.dw1 = nn.Conv2d(
            out_ch, out_ch, (kernel_size, 1), stride, (pad, 0), groups=out_ch, padding_mode="reflect"
        )
        self.dw2 = nn.Conv2d(
            out_ch, out_ch, (1, kernel_size), stride, (0, pad), groups=out_ch, padding_mode="reflect"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw2(self.dw1(self.pw(x)))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (per pixel), biased variance."""

    def __init__(self, channels: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def local_variance_unfold(z: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over 7x7 windows, stride 3, of the reflect-padded input (authors' form)."""
    n, c, _, _ = z.shape
    padded = F.pad(z, (1, 1, 1, 1), mode="reflect")
    windows = F.unfold(padded, kernel_size=7, stride=3)  # N, C*49, L
    var = windows.view(n, c, 49, -1).var(dim=2, unbiased=True)
    out_h = (padded.shape[2] - 7) // 3 + 1
    out_w = (padded.shape[3] - 7) // 3 + 1
    return var.view(n, c, out_h, out_w)


class ESA(nn.Module):
    """Enhanced spatial attention with LayerNorm and four multi-scale branches (keys esa.body.0.*)."""

    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.ln = ChannelLayerNorm(channels)
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        for i in range(4):
            setattr(self, f"conv2_{i}", SSConv(f, f, 3, stride=2))
        for i in range(3):
            setattr(self, f"conv_max_{i}", SSConv(f, f, 3))
            setattr(self, f"conv3_{i}", SSConv(f, f, 3))
        self.conv4 = nn.Conv2d(f, channels, 1)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.ln(x)
        c1 = self.conv1(u)
        t0 = F.max_pool2d(self.conv2_0(c1), 3, 3, 1)
        t1 = F.max_pool2d(self.conv2_1(c1), 5, 3, 0)
        t2 = F.max_pool2d(self.conv2_2(c1), 7, 3, 1)
        t3 = local_variance_unfold(self.conv2_3(c1))
        size = x.shape[-2:]
        branches = [
            self.conv3_0(self.gelu(self.conv_max_0(t0))),
            self.conv3_1(self.gelu(self.conv_max_1(t1))),
            self.conv3_2(self.gelu(self.conv_max_2(t2 + t3))),
        ]
        s = self.conv_f(c1)
        for v in branches:
            s = s + F.interpolate(v, size=size, mode="bilinear", align_corners=False)
        return u * torch.sigmoid(self.conv4(s))


class MDSA(nn.Module):
    def __init__(self, channels: int, f: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ESA(channels, f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class CCALayer(nn.Module):
    """Contrast channel attention: gate channels by their std + mean over the whole image."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors' form: sums over all pixels divided by H*W. In float16 these sums overflow
        # 65504 on ordinary photos, which is why the inference form computes them differently.
        pixels = x.shape[2] * x.shape[3]
        mean = x.sum((2, 3), keepdim=True) / pixels
        var = (x - mean).pow(2).sum((2, 3), keepdim=True) / pixels
        return x * self.conv_du(var.sqrt() + mean)


class ECCA(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.GELU(),
            CCALayer(channels, hidden),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class MDAB(nn.Module):
    """Multi-scale distillation attention block."""

    def __init__(self, channels: int, distilled: int, esa_channels: int, cca_hidden: int) -> None:
        super().__init__()
        self.c1_d = nn.Conv2d(channels, distilled, 1)
        self.c1_r = SSConv(channels, channels)
        self.c2_d = nn.Conv2d(channels, distilled, 1)
        self.c2_r = SSConv(channels, channels)
        self.c3_d = nn.Conv2d(channels, distilled, 1)
        self.c3_r = SSConv(channels, channels)
        self.c4 = SSConv(channels, distilled)
        self.c5 = nn.Conv2d(distilled * 4, channels, 1)
        self.esa = MDSA(channels, esa_channels)
        self.cca = ECCA(channels, cca_hidden)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2) + r2)
        r4 = self.act(self.c4(r3))
        y = self.c5(torch.cat([d1, d2, d3, r4], dim=1))
        return self.cca(self.esa(y)) + x


class PixelShuffleUpsampler(nn.Module):
    def __init__(self, channels: int, out_channels: int, scale: int) -> None:
        super().__init__()
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(channels, out_channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class MSN(nn.Module):
    """Multi-Scale attention Network (NTIRE 2024 ESR, team DASE-IDEALab). Input RGB in [0, 1]."""

    def __init__(self, config: MSNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MSNConfig()
        c = config.num_feat
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.fea_conv = nn.Conv2d(config.in_channels, c, 3, padding=1)
        for k in range(1, config.num_block + 1):
            setattr(self, f"B{k}", MDAB(c, config.distilled, config.esa_channels, config.cca_hidden))
        self.c1 = nn.Conv2d(c, c, 1)
        self.c2 = SSConv(c, c)
        self.upsampler = PixelShuffleUpsampler(c, config.out_channels, config.upscale)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if should_check(x):
            check_input(x, self.config.in_channels)
        fea = self.fea_conv(x - self.mean)
        b = fea
        total = torch.zeros_like(fea)
        for k in range(1, self.config.num_block + 1):
            b = getattr(self, f"B{k}")(b)
            total = total + b
        r = self.c2(self.act(self.c1(total))) + fea
        return self.upsampler(r) + self.mean
