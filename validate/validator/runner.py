"""Validate every MSN backend that runs here against eager PyTorch FP32 (training form):
`validate.run(ValidationSettings(...))` returns the report (`msn-validate` is its command,
validate/validator/command.py).

Parity per backend x image, speed per backend x size, a JSON + Markdown report and plots.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.base import DeviceError, Engine
from msn_deploy.engines.runtime.targets import BACKENDS
from msn_deploy.export.ncnn_export import NcnnExportOptions, export_ncnn
from msn_deploy.export.onnx_export import export_onnx
from msn_deploy.export.onnx_graph import ExportOptions
from msn_deploy.msn import MissingFileError, MSNError, UsageError, read_checkpoint
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.backends import (
    Candidate,
    graph_candidates,
    ncnn_candidates,
    needs,
    tensorrt_candidates,
    torch_candidates,
    wanted_names,
)
from msn_deploy.validate.core.machine import machine_info
from msn_deploy.validate.core.ntire import ntire_protocol
from msn_deploy.validate.core.parity import ParityImage, compare, parity_images
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.speed import SpeedBudget, time_shape
from msn_deploy.validate.core.variants import BASELINE
from msn_deploy.validate.validator import layerwise
from msn_deploy.validate.validator import report as reporting
from msn_deploy.validate.validator.settings import ValidationSettings

log = logging.getLogger("msn.validate")



class NothingToCompare(MSNError):
    """No backend besides the eager baseline could run here (exit 1: the validation failed)."""




@dataclass(frozen=True)
class ValidationReport:
    """The report `run` returns (and writes as report.json / report.md when settings.out is set)."""

    data: dict  # the JSON document (schema validate.report.SCHEMA)

    @property
    def passed(self) -> bool:
        return bool(self.data["passed"])

    @property
    def missing(self) -> list[str]:
        return list(self.data["missing"])

    def markdown(self) -> str:
        return reporting.markdown(self.data)


def check_arguments(settings: ValidationSettings) -> None:
    """Everything that can be wrong with the arguments, found before any model runs."""
    for number in ("batch", "runs", "ntire_runs", "threads"):
        value = getattr(settings, number)
        if value is not None and value < 1:
            raise UsageError(f"--{number.replace('_', '-')} must be at least 1, got {value}")
    for name in ("atol", "rtol", "min_psnr", "warmup"):
        value = getattr(settings, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if settings.max_seconds <= 0:
        raise UsageError(f"--max-seconds must be > 0, got {settings.max_seconds}")
    missing = [str(p) for p in [*settings.onnx, *settings.engine, *settings.ncnn] if not Path(p).is_file()]
    if missing:
        raise MissingFileError(f"not found: {', '.join(missing)}")
    # named, so read, even where --backends leaves it out
    for artifact in [*settings.onnx, *settings.engine, *settings.ncnn]:
        read_artifact_header(artifact)
    if settings.reference is not None and not settings.reference.is_dir():
        raise UsageError(f"reference folder {settings.reference} does not exist")
    if settings.backends is not None:
        names = wanted_backends(settings)
        unknown = sorted(n for n in names if n != BASELINE and n.split("-")[0] not in BACKENDS)
        if not names or unknown:
            raise UsageError(f"unknown --backends {', '.join(unknown) or repr(settings.backends)}; names look like "
                             "eager-fp32, torch-cpu-fp32, onnxruntime-cpu-fp32, openvino-cpu-fp16, ncnn-vulkan-fp16, "
                             "tensorrt-cuda-fp16 (a run without --backends lists every name)")


def device_here() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def wanted_backends(settings: ValidationSettings) -> set[str]:
    return wanted_names(settings.backends, device_here())


def select_candidates(candidates: list[Candidate], names: set[str]) -> list[Candidate]:
    if not names:
        return candidates
    unknown = sorted(names - {c.name for c in candidates})
    if unknown:
        known = ", ".join(c.name for c in candidates)
        raise UsageError(f"unknown --backends {', '.join(unknown)}; known here: {known}")
    return [c for c in candidates if c.name in names | {BASELINE}]


def run_parity(engines: dict[str, Engine], candidates: dict[str, Candidate], images: list[ParityImage],
               settings: ValidationSettings, out_dir: Path | None) -> list[dict]:
    """Every engine on every image vs eager FP32 (and the float64 reference), judged by the
    settings' tolerances (or a candidate's own FP16 floor); plots into out_dir."""
    rows, outputs = [], {}
    for row, out, eager in compare(engines, images):
        rows.append(row)
        if out is None:
            row["passed"] = False
            log.error("parity %-22s %-22s FAIL: %s", row["backend"], row["image"], row["error"])
            continue
        outputs[(row["backend"], row["image"])] = out
        floor = candidates[row["backend"]].min_psnr_db
        tolerance = settings.tolerance
        if floor is not None:
            row["min_psnr_db"] = floor
            tolerance = replace(tolerance, min_psnr_db=floor)
        row["passed"] = tolerance.judge(out, eager, row["precision"]).passed
        log.info("parity %-22s %-22s max abs %.2e  PSNR %.1f dB  %s", row["backend"], row["image"],
                 row["vs_eager"]["max_abs"], row["vs_eager"]["psnr_db"], "ok" if row["passed"] else "FAIL")
    worst = max((r for r in rows if r["backend"] != BASELINE and r["vs_eager"]), key=lambda r: r["vs_eager"]["max_abs"],
                default=None)
    if worst is not None and out_dir is not None:
        worst_out = np.nan_to_num(outputs[(worst["backend"], worst["image"])], nan=10.0)
        err = np.abs(worst_out - outputs[(BASELINE, worst["image"])])
        reporting.plot_error_heatmap(err.max(axis=2), f"worst: {worst['backend']} on {worst['image']} "
                                     f"(max {worst['vs_eager']['max_abs']:.2e})", out_dir / "error_heatmap.png")
        first = images[0]
        crops = {name: crop_centre(outputs[(name, first.name)]) for name in engines if (name, first.name) in outputs}
        if first.ground_truth is not None:
            crops["ground truth"] = crop_centre(first.ground_truth.astype(np.float64) / 255)
        reporting.plot_crops(crops, out_dir / "crops.png")
    return rows


def crop_centre(img: np.ndarray, size: int = 96) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def run_speed(engines: dict[str, Engine], candidates: dict[str, Candidate], settings: ValidationSettings) -> list[dict]:
    cuda = torch.cuda.is_available()
    budget = SpeedBudget(settings.warmup, settings.runs, settings.max_seconds)
    scale = engines[BASELINE].scale
    rows = []
    for h, w in settings.sizes:
        x = smooth_test_image(settings.batch, h, w).numpy()
        timed = {name: (lambda e=engine, x=x: e(x)) for name, engine in engines.items() if candidates[name].timed}
        # On a GPU the end-to-end figures include host<->device copies; PyTorch backends are also
        # timed on device-resident tensors so that the copies can be read off separately.
        on_device = {name: fn for name in timed if (fn := device_only(engines[name], x)) is not None}
        rows += time_shape(timed, (settings.batch, h, w), scale, budget, cuda, device_calls=on_device)
    return rows


def device_only(engine: Engine, x: np.ndarray):
    """A call of a CUDA PyTorch engine on input already on the GPU (None for other engines)."""
    from msn_deploy.engines.runtime.torch_engine import TorchEngine

    if not isinstance(engine, TorchEngine) or engine.tensor_device.type != "cuda":
        return None
    on_gpu = torch.from_numpy(x).to(engine.tensor_device)

    def call() -> None:
        engine(on_gpu)

    return call


def explain_fp16_failures(parity: list[dict], candidates: dict[str, Candidate], images, out: Path | None) -> None:
    """For each FP16 graph that failed parity, find its first failing node against the FP32 graph
    (validate/validator/layerwise.py) on the image it failed on, and note it in the row (and the report)."""
    fp32 = next((c.graph for c in candidates.values() if c.graph is not None and c.precision == "fp32"), None)
    inputs = {image.name: image.input for image in images}
    looked_at: dict[tuple[Path, str], dict] = {}
    for row in parity:
        candidate = candidates[row["backend"]]
        if row["passed"] or row.get("error") or row["precision"] != "fp16" or candidate.graph is None or fp32 is None:
            continue
        key = (candidate.graph, row["image"])
        if key not in looked_at:
            report = layerwise.compare_layers(fp32, candidate.graph, inputs[row["image"]].numpy())
            first = report.first_failing
            entry = {"first_failing_node": first.node if first else None, "op": first.op if first else None,
                     "psnr_db": first.psnr_db if first else None, "report": None}
            if out is not None:
                folder = out / f"layerwise-{candidate.graph.stem}-{row['image']}"
                entry["report"] = str(report.write(folder)[1])
            log.error("%s on %s: the first node below %g dB is %s", row["backend"], row["image"],
                      report.min_psnr_db, first.node if first else "none (the layers agree; look at the output)")
            looked_at[key] = entry
        row["layerwise"] = looked_at[key]


def collect_candidates(settings: ValidationSettings, tmp: Path) -> list[Candidate]:
    checkpoint = read_checkpoint(settings.ckpt).path  # a known name is downloaded once, here
    graphs, params = list(settings.onnx), list(settings.ncnn)
    wanted = wanted_backends(settings)
    if not graphs and (not wanted or needs(wanted, "onnxruntime") or needs(wanted, "openvino")):
        for fp16, name in ((False, "msn_fp32.onnx"), (True, "msn_fp16.onnx")):
            graphs.append(export_onnx(checkpoint, tmp / name, ExportOptions(fp16=fp16, verify=False)).path)
    if not params and (not wanted or needs(wanted, "ncnn")):
        params.append(export_ncnn(checkpoint, tmp / "msn_x4.param", NcnnExportOptions(verify=False)).param)
    threads = torch.get_num_threads()
    candidates = [*torch_candidates(checkpoint, device_here()), *graph_candidates(graphs, threads),
                  *ncnn_candidates(params, threads), *tensorrt_candidates(settings.engine)]
    return select_candidates(candidates, wanted)


def asked_but_missing(settings: ValidationSettings, backends: list[dict]) -> list[str]:
    """Backends the user asked for by name, by --onnx, --ncnn or --engine that did not run: an artifact
    the user named that cannot run is a failure, never a skip."""
    not_run = [b for b in backends if b["status"] != "ok"]
    if settings.backends:
        return [f"{b['name']} ({b['reason']})" for b in not_run]
    named = [b for b in not_run if (b["name"].startswith("tensorrt-") and settings.engine)
             or (b["name"].startswith("onnxruntime-cpu") and settings.onnx)
             or (b["name"].startswith("ncnn-cpu") and settings.ncnn)]
    return [f"{b['name']} ({b['reason']})" for b in named]


def load_engines(candidates: list[Candidate]) -> tuple[dict[str, Engine], list[dict]]:
    """Each candidate's engine, or the reason it did not load (reported, not fatal)."""
    engines: dict[str, Engine] = {}
    backends = []
    for c in candidates:
        entry = {"name": c.name, "precision": c.precision, "status": "skipped", "reason": c.skip_reason,
                 "speed_note": c.speed_note}
        if c.skip_reason is None:
            try:
                engines[c.name] = c.load()
                entry["status"] = "ok"
            except DeviceError as exc:  # this machine lacks the device: the engine's own words
                entry["reason"] = str(exc)
            except MSNError as exc:
                entry["reason"] = f"failed to load: {exc}"
        backends.append(entry)
        if entry["status"] != "ok":
            log.info("skipped %s: %s", c.name, entry["reason"])
    return engines, backends


def run(settings: ValidationSettings) -> ValidationReport:
    """Compare every backend that runs here with eager PyTorch FP32, time them, and return the
    report (also written to settings.out when set). Raises UsageError for bad settings before any
    model runs, NothingToCompare when no backend besides the baseline could run."""
    check_arguments(settings)
    images = parity_images(settings.reference)
    if settings.out is not None:
        make_output_folder(settings.out)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = collect_candidates(settings, Path(tmp))
        engines, backends = load_engines(candidates)
        if len(engines) < 2:
            raise NothingToCompare(f"nothing to compare: no backend besides {BASELINE} could run here "
                                   "(see the reasons above)")
        by_name = {c.name: c for c in candidates}
        parity = run_parity(engines, by_name, images, settings, settings.out)
        explain_fp16_failures(parity, by_name, images, settings.out)
        failed = {row["backend"]: row["error"] for row in parity if row.get("error")}
        for entry in backends:  # an engine that gave NaN or an error is not timed: its figures would mean nothing
            if entry["name"] in failed:
                entry["speed_note"] = f"failed on a parity image: {failed[entry['name']]}"
        running = {name: engine for name, engine in engines.items() if name not in failed}
        speed = [] if settings.no_speed else run_speed(running, by_name, settings)
        baseline = engines[BASELINE]
        ntire = [] if settings.no_speed else ntire_protocol(baseline.model, settings.sizes, settings.ntire_runs,
                                                            baseline.tensor_device)
    listed = ("onnx", "engine", "ncnn")
    data = {
        "schema": reporting.SCHEMA,
        "machine": machine_info(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items() if k not in listed}
        | {k: [str(p) for p in getattr(settings, k)] for k in listed},
        "backends": backends,
        "parity": parity,
        "speed": speed,
        "ntire_protocol": ntire,
        "missing": asked_but_missing(settings, backends),
    }
    data["passed"] = all(r["passed"] for r in parity) and not data["missing"]
    report = ValidationReport(data)
    if settings.out is not None:
        write_report(settings.out, "report", data, reporting.markdown(data))
        if speed:
            reporting.plot_latency(data, settings.out / "latency.png")
    for line in report.missing:
        log.error("asked for but did not run: %s", line)
    return report


