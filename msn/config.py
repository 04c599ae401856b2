"""MSN hyper-parameters, and how to recover them from a state dict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msn_deploy.msn.errors import UsageError

if TYPE_CHECKING:  # the graph path reads this module without torch
    import torch

# Per-channel RGB mean subtracted from the input and added back to the output (DIV2K mean).
RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
# Below this height or width a reflect pad or a pooling window inside ESA becomes invalid.
MIN_INPUT_SIZE = 29
LAYER_NORM_EPS = 1e-6


class CheckpointError(UsageError, ValueError):
    """A checkpoint that cannot be read as MSN weights (a ValueError too, for older callers)."""


@dataclass(frozen=True)
class MSNConfig:
    """Shape of an MSN network. Defaults are the NTIRE 2024 DASE-IDEALab model (87,612 params)."""

    num_feat: int = 28
    num_block: int = 8
    upscale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    distilled: int = 14  # channels of each distillation branch in MDAB
    esa_channels: int = 7  # f = C / 4 inside MDSA
    cca_hidden: int = 1  # squeeze width of CCA's conv_du

    @classmethod
    def from_width(cls, num_feat: int = 28, num_block: int = 8, upscale: int = 4) -> MSNConfig:
        return cls(
            num_feat=num_feat,
            num_block=num_block,
            upscale=upscale,
            distilled=num_feat // 2,
            esa_channels=num_feat // 4,
            cca_hidden=max(1, num_feat // 16),
        )

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> MSNConfig:
        """Read width, depth and scale off tensor shapes, as spandrel does for its architectures."""
        required = ("fea_conv.weight", "upsampler.upsampleOneStep.0.weight", "B1.c1_d.weight")
        missing = [k for k in required if k not in state_dict]
        if missing:
            raise CheckpointError(f"not an MSN state dict: missing {', '.join(missing)}")
        fea = state_dict["fea_conv.weight"]
        num_feat, in_channels = fea.shape[0], fea.shape[1]
        if in_channels != len(RGB_MEAN):
            raise CheckpointError(f"MSN takes RGB input; this checkpoint's fea_conv takes {in_channels} channels")
        num_block = 0
        while f"B{num_block + 1}.c1_d.weight" in state_dict:
            num_block += 1
        # The upsampler emits out_channels * scale^2 channels; out_channels is not stored
        # separately, so it is taken to equal in_channels (true for every published MSN).
        up_channels = state_dict["upsampler.upsampleOneStep.0.weight"].shape[0]
        upscale = math.isqrt(up_channels // in_channels)
        if upscale * upscale * in_channels != up_channels:
            raise CheckpointError(f"upsampler has {up_channels} output channels: not 3 * scale^2")
        esa = "B1.esa.body.0.conv1.weight"
        cca = "B1.cca.body.2.conv_du.0.weight"
        return cls(
            num_feat=num_feat,
            num_block=num_block,
            upscale=upscale,
            in_channels=in_channels,
            out_channels=in_channels,
            distilled=state_dict["B1.c1_d.weight"].shape[0],
            esa_channels=state_dict[esa].shape[0] if esa in state_dict else num_feat // 4,
            cca_hidden=state_dict[cca].shape[0] if cca in state_dict else max(1, num_feat // 16),
        )
