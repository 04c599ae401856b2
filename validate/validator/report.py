"""Writing the validation report: JSON (stable schema), Markdown summary, PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from msn_deploy.msn.files import atomic_output  # noqa: E402
from msn_deploy.validate.core.machine import machine_line  # noqa: E402
from msn_deploy.validate.core.ntire import ntire_table  # noqa: E402
from msn_deploy.validate.core.parity import parity_table  # noqa: E402
from msn_deploy.validate.core.speed import lr_size, speed_table  # noqa: E402

SCHEMA = "msn-validate/3"  # 3: speed rows in the one schema of validate.speed


def _own_floors(report: dict) -> str:
    floors = sorted({(r["backend"], r["min_psnr_db"]) for r in report["parity"] if "min_psnr_db" in r})
    return "".join(f", {name} >= {floor:g} dB" for name, floor in floors)


def markdown(report: dict) -> str:
    lines = [
        "# MSN validation report",
        "",
        f"Machine: {machine_line(report['machine'])}",
        "",
        f"Verdict: **{'PASS' if report['passed'] else 'FAIL'}** "
        f"(fp32: |out - eager| <= {report['settings']['atol']:g} + {report['settings']['rtol']:g}*|eager|; "
        f"fp16: PSNR vs eager >= {report['settings']['min_psnr']:g} dB{_own_floors(report)}; no NaN/Inf anywhere; "
        "every backend asked for ran)",
        "",
        *[f"- asked for but did not run: {line}" for line in report.get("missing", [])],
        "",
        "## Parity (per backend and image; errors vs eager FP32 training form)",
        "",
    ]
    lines += parity_table(report["parity"])
    lines += [
        "",
        f"## Speed (median of timed runs after {report['settings']['warmup']:g} s warm-up, backends interleaved "
        "round-robin; speed-up = eager FP32 median / backend median, same run)",
        "",
    ]
    lines += speed_table(report["speed"], ["backend", "shape", "runs", "median", "p95", "p99", "cv", "on_device",
                                           "out_mp_per_s", "speedup"])
    lines += ["", "On-device ms: PyTorch backends on GPU-resident tensors (CUDA events), so the host<->device "
              "copies are the difference to the median; — where not applicable (CPU, other runtimes).", ""]
    lines += ["## NTIRE protocol (eager FP32 training form, batch 1, no warm-up, mean)", ""]
    lines += ntire_table(report["ntire_protocol"])
    explained = [row for row in report["parity"] if row.get("layerwise")]
    if explained:
        lines += ["", "## Where FP16 went wrong (first node below the layerwise bound)", ""]
        for row in explained:
            found = row["layerwise"]
            node = f"`{found['first_failing_node']}` ({found['op']}, {found['psnr_db']:.1f} dB)" \
                if found["first_failing_node"] else "no node (the layers agree)"
            where = f"; [layerwise report]({found['report']})" if found["report"] else ""
            lines.append(f"- {row['backend']} on {row['image']}: {node}{where}")
    skipped = [b for b in report["backends"] if b["status"] != "ok" or b.get("speed_note")]
    if skipped:
        lines += ["", "## Skipped", ""]
        for b in skipped:
            what = "skipped" if b["status"] != "ok" else "not timed"
            lines.append(f"- {b['name']}: {what}: {b.get('reason') or b.get('speed_note')}")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_latency(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_backend: dict[str, list[tuple[float, float]]] = {}
    for row in report["speed"]:
        h, w = lr_size(row)
        by_backend.setdefault(row["backend"], []).append((h * w / 1e6, row["timing"]["median_ms"]))
    for name, points in by_backend.items():
        points.sort()
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set(xlabel="LR megapixels", ylabel="median latency (ms)", yscale="log", title="MSN x4 latency by backend")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_error_heatmap(error: np.ndarray, title: str, path: Path) -> None:
    """error: HxW absolute error (already reduced over channels)."""
    fig, ax = plt.subplots(figsize=(6, 6 * error.shape[0] / error.shape[1] + 0.5))
    im = ax.imshow(error * 255, cmap="inferno")
    fig.colorbar(im, ax=ax, label="|out - eager| (8-bit levels)")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    _save(fig, path)


def plot_crops(crops: dict[str, np.ndarray], path: Path) -> None:
    fig, axes = plt.subplots(1, len(crops), figsize=(2.4 * len(crops), 2.8))
    for ax, (name, crop) in zip(np.atleast_1d(axes), crops.items()):
        ax.imshow(np.clip(crop, 0, 1))
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    _save(fig, path)
