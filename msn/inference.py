"""MSN, inference form: the same function as the training form with fewer, cheaper operations.

`to_inference_form(model)` returns a new module; the training model is left untouched and
`forward` never re-fuses anything. What changes, and why each change is exact:

* Stride-1 strip convs (1x1 -> (3,1) -> (1,3), reflect-padded): the two depthwise convs are one
  3x3 depthwise conv with kernel outer(w1, w2) and bias b1*sum(w2) + b2, on a reflect-padded
  input (2-D reflect padding is separable). With `fold_pointwise` the 1x1 is folded in too,
  giving one dense 3x3 conv (a 1x1 conv commutes with reflect padding).
* Stride-2 strip convs in ESA: the second conv's padding acts on the subsampled grid, so the two
  depthwise convs cannot be merged for every size. Only the 1x1 is folded into the first one;
  the four branches share their input and run as one wider conv pair, split afterwards.
* `- mean` stays a subtraction (zero padding of fea_conv makes folding it inexact at the
  border); `+ mean` goes into the upsampler bias (PixelShuffle maps channel c*s^2+k to c).
* w1 + w2 of ESA share a source size, and bilinear resizing is linear: resize(v1 + v2).
* LayerNorm, CCA's mean/std and the local variance are computed in float32 (`msn.stats`),
  the local variance with pooling instead of `unfold`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msn_deploy.msn import stats
from msn_deploy.msn.arch import ESA, MDAB, MSN, SSConv
from msn_deploy.msn.config import MSNConfig
from msn_deploy.msn.tensor_checks import check_input, should_check


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    out_ch, in_per_group, kh, kw = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_ch, (kh, kw), stride, 0, groups=groups, bias=bias is not None)
    conv.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        conv.bias = nn.Parameter(bias.detach().clone())
    return conv


def _copy(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of a conv with its padding kept (only zero-padded convs are copied this way)."""
    if conv.padding_mode != "zeros":
        raise ValueError("only zero-padded convs are copied as they are")
    new = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        groups=conv.groups, bias=conv.bias is not None, dtype=conv.weight.dtype,
    )
    new.load_state_dict(conv.state_dict())
    return new


def fuse_depthwise_strips(ss: SSConv) -> tuple[torch.Tensor, torch.Tensor]:
    """(3,1) then (1,3) depthwise convs -> one 3x3 depthwise kernel and bias (computed in float64)."""
    w1 = ss.dw1.weight.double()[:, 0, :, 0]  # C, kh
    w2 = ss.dw2.weight.double()[:, 0, 0, :]  # C, kw
    kernel = torch.einsum("ci,cj->cij", w1, w2)[:, None]
    bias = ss.dw1.bias.double() * w2.sum(1) + ss.dw2.bias.double()
    return kernel, bias


class FusedStripConv(nn.Module):
    """A stride-1 SSConv as reflect pad + (1x1 + 3x3 depthwise) or + one dense 3x3."""

    def __init__(self, ss: SSConv, fold_pointwise: bool) -> None:
        super().__init__()
        if ss.dw1.stride != (1, 1):
            raise ValueError("stride-2 strip convs cannot be fused exactly for every size")
        dtype = ss.pw.weight.dtype
        kernel, bias = fuse_depthwise_strips(ss)
        pw = ss.pw.weight.double()
        if fold_pointwise:
            self.pointwise = None
            self.spatial = _conv((kernel * pw).to(dtype), bias.to(dtype))
        else:
            self.pointwise = _conv(pw.to(dtype), None)
            self.spatial = _conv(kernel.to(dtype), bias.to(dtype), groups=kernel.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise is not None:
            x = self.pointwise(x)
        return self.spatial(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class StridedStripBank(nn.Module):
    """Several stride-2 SSConvs on one input, run as one conv pair and split.

    pw is folded into the (3,1) conv (exact: a 1x1 conv commutes with reflect padding); the
    (1,3) conv stays separate because its padding acts on the already subsampled grid.
    """

    def __init__(self, convs: list[SSConv]) -> None:
        super().__init__()
        dtype = convs[0].pw.weight.dtype
        vertical = [c.dw1.weight.double() * c.pw.weight.double()[:, :, 0, 0][:, :, None, None] for c in convs]
        self.vertical = _conv(
            torch.cat(vertical).to(dtype), torch.cat([c.dw1.bias for c in convs]), stride=2
        )
        horizontal = torch.cat([c.dw2.weight for c in convs])
        self.horizontal = _conv(horizontal, torch.cat([c.dw2.bias for c in convs]), 2, horizontal.shape[0])
        self.parts = len(convs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.vertical(F.pad(x, (0, 0, 1, 1), mode="reflect"))
        y = self.horizontal(F.pad(y, (1, 1, 0, 0), mode="reflect"))
        return y.chunk(self.parts, dim=1)


class InferenceESA(nn.Module):
    def __init__(self, esa: ESA, fold_pointwise: bool) -> None:
        super().__init__()
        # 4-D (1, C, 1, 1): OpenCV DNN's default engine mis-lays out 3-D broadcast constants.
        self.ln_weight = nn.Parameter(esa.ln.weight.detach().clone()[None, :, None, None])
        self.ln_bias = nn.Parameter(esa.ln.bias.detach().clone()[None, :, None, None])
        self.ln_eps = esa.ln.eps
        self.conv1 = _copy(esa.conv1)
        self.conv_f = _copy(esa.conv_f)
        self.stem = StridedStripBank([getattr(esa, f"conv2_{i}") for i in range(4)])
        self.conv_max = nn.ModuleList(FusedStripConv(getattr(esa, f"conv_max_{i}"), fold_pointwise) for i in range(3))
        self.conv3 = nn.ModuleList(FusedStripConv(getattr(esa, f"conv3_{i}"), fold_pointwise) for i in range(3))
        self.conv4 = _copy(esa.conv4)
        self.gelu = nn.GELU()

    def _branch(self, i: int, t: torch.Tensor) -> torch.Tensor:
        return self.conv3[i](self.gelu(self.conv_max[i](t)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = stats.channel_layer_norm(x, self.ln_eps) * self.ln_weight + self.ln_bias
        c1 = self.conv1(u)
        s0, s1, s2, s3 = self.stem(c1)
        v0 = self._branch(0, F.max_pool2d(s0, 3, 3, 1))
        # Branches 1 and 2 pool to the same grid, so they can share one (linear) resize.
        v12 = self._branch(1, F.max_pool2d(s1, 5, 3, 0)) + self._branch(
            2, F.max_pool2d(s2, 7, 3, 1) + stats.local_variance(s3)
        )
        size = x.shape[-2:]
        s = (
            self.conv_f(c1)
            + F.interpolate(v0, size=size, mode="bilinear", align_corners=False)
            + F.interpolate(v12, size=size, mode="bilinear", align_corners=False)
        )
        return u * torch.sigmoid(self.conv4(s)) + x


class InferenceCCA(nn.Module):
    """ECCA: 1x1 -> GELU -> channel gate from std + mean -> depthwise 3x3, plus residual."""

    def __init__(self, cca: nn.Module) -> None:
        super().__init__()
        body = cca.body
        self.conv_in = _copy(body[0])
        self.squeeze = _copy(body[2].conv_du[0])
        self.excite = _copy(body[2].conv_du[2])
        self.conv_out = _copy(body[3])
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gelu(self.conv_in(x))
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(stats.contrast_plus_mean(a)))))
        return self.conv_out(a * gate) + x


class InferenceMDAB(nn.Module):
    def __init__(self, block: MDAB, fold_pointwise: bool) -> None:
        super().__init__()
        self.distill = nn.ModuleList(_copy(c) for c in (block.c1_d, block.c2_d, block.c3_d))
        self.refine = nn.ModuleList(FusedStripConv(c, fold_pointwise) for c in (block.c1_r, block.c2_r, block.c3_r))
        self.c4 = FusedStripConv(block.c4, fold_pointwise)
        self.c5 = _copy(block.c5)
        self.esa = InferenceESA(block.esa.body[0], fold_pointwise)
        self.cca = InferenceCCA(block.cca)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        r = x
        for distill, refine in zip(self.distill, self.refine):
            distilled.append(self.gelu(distill(r)))
            r = self.gelu(refine(r) + r)
        distilled.append(self.gelu(self.c4(r)))
        return self.cca(self.esa(self.c5(torch.cat(distilled, dim=1)))) + x


class MSNInference(nn.Module):
    """Inference form of MSN. Built by `to_inference_form`; same input/output contract as MSN."""

    def __init__(self, model: MSN, fold_pointwise: bool = False) -> None:
        super().__init__()
        self.config: MSNConfig = model.config
        self.fold_pointwise = fold_pointwise
        self.register_buffer("mean", model.mean.detach().clone(), persistent=False)
        self.fea_conv = _copy(model.fea_conv)
        self.blocks = nn.ModuleList(InferenceMDAB(b, fold_pointwise) for b in _blocks(model))
        self.c1 = _copy(model.c1)
        self.c2 = FusedStripConv(model.c2, fold_pointwise)
        self.upsample = _copy(model.upsampler.upsampleOneStep[0])
        scale_sq = model.config.upscale**2
        with torch.no_grad():
            self.upsample.bias += model.mean.flatten().repeat_interleave(scale_sq).to(self.upsample.bias.dtype)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if should_check(x):
            check_input(x, self.config.in_channels)
        fea = self.fea_conv(x - self.mean.to(x.dtype))
        b = fea
        total = None
        for block in self.blocks:
            b = block(b)
            total = b if total is None else total + b
        r = self.c2(self.gelu(self.c1(total))) + fea
        return F.pixel_shuffle(self.upsample(r), self.config.upscale)


def _blocks(model: MSN) -> list[MDAB]:
    return [getattr(model, f"B{k}") for k in range(1, model.config.num_block + 1)]


def to_inference_form(model: MSN, *, fold_pointwise: bool = False) -> MSNInference:
    """Return the inference form of a (loaded) training-form MSN, in eval mode, same dtype."""
    if not isinstance(model, MSN):
        raise TypeError(f"expected a training-form MSN, got {type(model).__name__}")
    with torch.no_grad():
        fused = MSNInference(model, fold_pointwise=fold_pointwise)
    return fused.eval().requires_grad_(False)
