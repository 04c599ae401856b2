"""Parity, defined once for every validator (the CPU validator, the GPU suite): each engine on
each image against the baseline (eager FP32, the training form) and against the float64
references of the authors' code, as one kind of row, shown by one table."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.base import Engine, EngineError
from msn_deploy.msn.metrics import error_stats, psnr_y
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.reference import load_reference_cases
from msn_deploy.validate.core.tables import cell, markdown_table
from msn_deploy.validate.core.variants import BASELINE

SYNTHETIC_HW = (96, 120)  # the image compared when there are no reference photos (random weights)


@dataclass(frozen=True)
class ParityImage:
    name: str
    input: torch.Tensor  # 1x3xHxW in [0, 1], on the host
    reference: np.ndarray | None  # (4H)x(4W)x3, the authors' code in float64
    ground_truth: np.ndarray | None  # the HR photo, uint8


def parity_images(references: Path | None) -> list[ParityImage]:
    """The reference photos in `references`, or one smooth synthetic image when there is none."""
    if references is None:
        h, w = SYNTHETIC_HW
        return [ParityImage(f"smooth-random-{h}x{w}", smooth_test_image(1, h, w), None, None)]
    return [ParityImage(c.name, c.input_tensor(), c.sr, c.hr) for c in load_reference_cases(references)]


def first_image_hwc(output: np.ndarray | torch.Tensor) -> np.ndarray:
    """The first image of an engine's NCHW output as HxWx3 float64 on the host."""
    if isinstance(output, torch.Tensor):
        output = output[0].detach().float().cpu().numpy()
    else:
        output = output[0]
    return output.transpose(1, 2, 0).astype(np.float64)


def compare(engines: Mapping[str, Engine], images: list[ParityImage],
            feed: Callable[[torch.Tensor], object] = lambda x: x.numpy(),
            allows: Callable[[str], bool] = lambda what: True) -> Iterator[tuple[dict, np.ndarray | None, np.ndarray]]:
    """(row, output, eager output) for every engine on every image; `engines` holds BASELINE.
    `feed` turns an image's input into what the engines take (numpy by default, a device tensor
    for the GPU suite); `allows(what)` may skip a comparison (a time budget). An engine that fails
    on an image (NaN or Inf out, a runtime's error) gives a row with its `error` and no output: a
    failed row, and the rest of the comparison goes on."""
    for image in images:
        eager = None
        for name, engine in engines.items():
            if not allows(f"parity of {name} on {image.name}"):
                continue
            if eager is None:
                eager = first_image_hwc(engines[BASELINE](feed(image.input)))
            row = {"backend": name, "image": image.name, "precision": engine.precision}
            try:
                out = eager if name == BASELINE else first_image_hwc(engine(feed(image.input)))
            except EngineError as exc:
                yield row | {"vs_eager": None, "vs_reference": None, "psnr_y_hr": None, "error": str(exc)}, None, eager
                continue
            row |= {
                "vs_eager": error_stats(out, eager),
                "vs_reference": error_stats(out, image.reference) if image.reference is not None else None,
                "psnr_y_hr": psnr_y(out, image.ground_truth) if image.ground_truth is not None else None,
            }
            yield row, out, eager


def parity_table(rows: list[dict]) -> list[str]:
    """The Markdown table of parity rows (with a pass column where the rows were judged)."""
    judged = any("passed" in row for row in rows)
    columns = ["backend", "image", "max abs", "mean abs", "p99 abs", "PSNR dB", ">1 LSB", "non-finite",
               "max abs vs fp64 ref", "PSNR-Y vs HR"] + (["pass"] if judged else [])
    cells = []
    for row in rows:
        if row.get("error"):
            cells.append([row["backend"], row["image"], *["—"] * 8] + ([f"NO: {row['error']}"] if judged else []))
            continue
        e, ref = row["vs_eager"], row["vs_reference"]
        cells.append([row["backend"], row["image"], f"{e['max_abs']:.2e}", f"{e['mean_abs']:.2e}",
                      f"{e['p99_abs']:.2e}", f"{e['psnr_db']:.1f}", f"{100 * e['over_1_lsb']:.3f}%", e["nonfinite"],
                      cell(ref and ref["max_abs"], ".2e"), cell(row["psnr_y_hr"], ".2f")]
                     + (["yes" if row.get("passed") else "NO"] if judged else []))
    return markdown_table(columns, cells) if cells else ["(none)"]
