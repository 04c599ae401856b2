"""Reference cases: `NAME_lr.png`, `NAME_sr_fp64.npz` (key `sr`, HxWx3 float) and optional `NAME_hr.png`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msn_deploy.msn import MissingFileError, UsageError


@dataclass(frozen=True)
class ReferenceCase:
    name: str
    lr: np.ndarray  # HxWx3 uint8, the network input
    sr: np.ndarray  # (4H)x(4W)x3 float32, the authors' code in float64, not clamped
    hr: np.ndarray | None  # ground truth, uint8, when present

    def input_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The LR image as a 1x3xHxW tensor in [0, 1]."""
        return torch.from_numpy(self.lr.copy()).permute(2, 0, 1)[None].to(dtype) / 255


class ReferenceCaseError(UsageError):
    """A reference folder or file that cannot be used, with what is wrong with it."""


def load_reference_cases(folder: str | Path, scale: int = 4) -> list[ReferenceCase]:
    """Read and check every case in `folder` (shapes: SR = scale x LR, HR = SR)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"reference folder {folder} does not exist")
    cases = []
    for npz in sorted(folder.glob("*_sr_fp64.npz")):
        name = npz.name.removesuffix("_sr_fp64.npz")
        lr_path, hr_path = folder / f"{name}_lr.png", folder / f"{name}_hr.png"
        if not lr_path.is_file():
            raise MissingFileError(f"{npz} has no input image {lr_path.name} beside it")
        try:
            with np.load(npz) as data:
                if "sr" not in data:
                    raise ReferenceCaseError(f"{npz} has no array 'sr' (it has {', '.join(data.files) or 'none'})")
                sr = data["sr"].astype(np.float32)
            lr = np.asarray(Image.open(lr_path).convert("RGB"))
            hr = np.asarray(Image.open(hr_path).convert("RGB")) if hr_path.is_file() else None
        except (OSError, ValueError) as exc:
            raise ReferenceCaseError(f"cannot read reference case {name!r}: {exc}") from None
        expected = (lr.shape[0] * scale, lr.shape[1] * scale, 3)
        if sr.shape != expected:
            raise ReferenceCaseError(f"{npz.name} holds {sr.shape}, but {lr_path.name} x{scale} is {expected}")
        if hr is not None and hr.shape != expected:
            raise ReferenceCaseError(f"{hr_path.name} is {hr.shape}, but {lr_path.name} x{scale} is {expected}")
        cases.append(ReferenceCase(name, lr, sr, hr))
    if not cases:
        raise MissingFileError(f"no reference cases (*_sr_fp64.npz) in {folder}")
    return cases
