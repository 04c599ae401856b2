"""`load_model`: a checkpoint in, a ready-to-run MSN out."""

from __future__ import annotations

import os

import torch

from msn_deploy.msn.arch import MSN
from msn_deploy.msn.checkpoint import Checkpoint, read_checkpoint, state_dict_mismatches
from msn_deploy.msn.config import CheckpointError, MSNConfig
from msn_deploy.msn.inference import MSNInference, to_inference_form


def build_model(checkpoint: Checkpoint) -> MSN:
    """Training-form MSN with the checkpoint's weights, loaded strict, eval mode, float32."""
    model = MSN(checkpoint.config)
    nonfinite = [k for k, v in checkpoint.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        more = f" (+{len(nonfinite) - 5} more)" if len(nonfinite) > 5 else ""
        raise CheckpointError(f"{checkpoint.path} has NaN or Inf values in {', '.join(nonfinite[:5])}{more}; "
                              "the training run diverged or the file is damaged: use another checkpoint")
    problems = state_dict_mismatches(model.state_dict(), checkpoint.state_dict)
    if problems:
        raise CheckpointError(f"{checkpoint.path} does not match MSN {checkpoint.config}: " + "; ".join(problems))
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model.float().eval().requires_grad_(False)


def load_model(
    ckpt: str | os.PathLike, *, deploy: bool = False, ema: bool = True, fold_pointwise: bool = False
) -> MSN | MSNInference:
    """Load MSN from a path or known name ("official"), on CPU in float32 and eval mode.

    deploy=True returns the inference form (fused, overflow-proof statistics); ema picks
    `params_ema` over `params` in BasicSR checkpoints.
    """
    model = build_model(read_checkpoint(ckpt, ema=ema))
    return to_inference_form(model, fold_pointwise=fold_pointwise) if deploy else model


def random_model(seed: int = 0, **config_overrides: int) -> MSN:
    """A randomly initialised training-form MSN for tests and demos without weights."""
    torch.manual_seed(seed)
    return MSN(MSNConfig.from_width(**config_overrides)).eval().requires_grad_(False)
