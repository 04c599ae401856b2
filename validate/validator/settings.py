"""What the validator compares and how (`validate.ValidationSettings`): read by `msn-validate`
before anything heavy loads, so the command answers --help and bad arguments at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy.export.parity import FP16_MIN_PSNR_DB, Tolerance

DEFAULT_SIZES = ((128, 128), (256, 256), (360, 640))


@dataclass
class ValidationSettings:
    """What `run` compares and how. Tolerances: fp32 |out - eager| <= atol + rtol*|eager|,
    fp16 PSNR vs eager >= min_psnr (dB)."""

    ckpt: str | Path = "official"  # the eager reference (and the source of exported graphs)
    onnx: list[Path] = field(default_factory=list)  # empty: export FP32 and FP16 graphs here
    engine: list[Path] = field(default_factory=list)  # TensorRT plans with sidecars
    ncnn: list[Path] = field(default_factory=list)  # ncnn .param files (.bin beside); empty: export one here
    reference: Path | None = None  # folder of *_lr.png / *_sr_fp64.npz / *_hr.png cases
    sizes: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))  # LR HxW to time
    batch: int = 1
    runs: int = 10
    warmup: float = 1.0  # seconds per backend and size
    max_seconds: float = 12.0
    ntire_runs: int = 3
    threads: int | None = None
    atol: float = 1e-4
    rtol: float = 0.0
    min_psnr: float = FP16_MIN_PSNR_DB
    backends: str | None = None  # comma-separated names; None: every backend that runs here
    no_speed: bool = False
    out: Path | None = None  # report folder; None: nothing written

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.atol, self.rtol, self.min_psnr)
