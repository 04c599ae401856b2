"""The NTIRE efficient-SR timing protocol, defined once for every validator: the training form
as published, eager FP32, batch 1, cudnn.benchmark off, no warm-up, the mean of every run."""

from __future__ import annotations

import torch

from msn_deploy.msn import MSN
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.msn.validation import inputs_checked
from msn_deploy.validate.core.tables import markdown_table
from msn_deploy.validate.core.timing import measure_cold


def ntire_protocol(model: MSN, sizes: list[tuple[int, int]], runs: int, device: torch.device) -> list[dict]:
    """One row per LR size: {"lr": "HxW", "runs", "mean_ms", "cv"}."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = False
    rows = []
    for h, w in sizes:
        x = smooth_test_image(1, h, w).to(device)
        with torch.no_grad(), inputs_checked():  # the published model has no input check of its own
            timing = measure_cold(lambda x=x: model(x), runs, cuda=cuda)
        rows.append({"lr": f"{h}x{w}", "runs": timing.runs, "mean_ms": timing.mean_ms, "cv": timing.cv})
    return rows


def ntire_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(none)"]
    return markdown_table(["LR size", "runs", "mean ms", "CV"],
                          [[r["lr"], r["runs"], f"{r['mean_ms']:.1f}", f"{r['cv']:.3f}"] for r in rows])
