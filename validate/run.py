"""Validate every MSN backend that runs here against eager PyTorch FP32 (training form).

    python validate/run.py --ckpt official --reference ../shared/reference --out reports/cpu
    python validate/run.py --onnx msn_x4_fp16.onnx --engine msn.plan --sizes 360x640,540x960

Parity per backend x image, speed per backend x size, a JSON + Markdown report and plots.

Exit status: 0 every backend passed; 1 a backend failed its tolerance or produced NaN/Inf, or a
backend that was asked for (--backends, --engine) did not run; 2 bad usage or input (nothing run).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from engines.base import Engine
from export import to_onnx
from export.verify import smooth_test_image
from msn import MIN_INPUT_SIZE, CheckpointError, build_model, read_checkpoint
from msn.logs import start_cli
from validate import report as reporting
from validate.backends import (
    BASELINE,
    NAME_PATTERN,
    Candidate,
    needs_graphs,
    onnx_candidates,
    tensorrt_candidates,
    torch_candidates,
)
from validate.machine import machine_info, machine_line
from validate.metrics import FP16_MIN_PSNR_DB, error_stats, psnr_y
from validate.reference import ReferenceError, load_reference_cases
from validate.timing import measure_cold, measure_interleaved

log = logging.getLogger("msn.validate")


EXIT_FAILED, EXIT_USAGE = 1, 2


class UsageError(ValueError):
    """A bad argument or input found before any model runs."""


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not match:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated HxW sizes such as 128x128,360x640, got {text!r}")
        h, w = int(match[1]), int(match[2])
        if min(h, w) < MIN_INPUT_SIZE:
            raise argparse.ArgumentTypeError(f"size {h}x{w} is below MSN's minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
        sizes.append((h, w))
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (the eager reference)")
    p.add_argument("--onnx", type=Path, action="append", default=[], help="ONNX graph(s); default: export FP32+FP16")
    p.add_argument("--engine", type=Path, action="append", default=[], help="TensorRT engine(s) with sidecar")
    p.add_argument("--reference", type=Path, help="folder of *_lr.png / *_sr_fp64.npz / *_hr.png cases")
    p.add_argument("--sizes", type=parse_sizes, default="128x128,256x256,360x640",
                   help="LR sizes to time, comma-separated HxW")
    p.add_argument("--batch", type=int, default=1, help="batch size for timing")
    p.add_argument("--runs", type=int, default=10, help="timed runs per backend and size (at most)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per backend and size")
    p.add_argument("--max-seconds", type=float, default=12.0, help="timed seconds per backend and size, at most")
    p.add_argument("--ntire-runs", type=int, default=3, help="cold runs for the NTIRE protocol figure")
    p.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: torch's)")
    p.add_argument("--atol", type=float, default=1e-4, help="fp32 absolute tolerance vs eager")
    p.add_argument("--rtol", type=float, default=0.0, help="fp32 relative tolerance vs eager")
    p.add_argument("--min-psnr", type=float, default=FP16_MIN_PSNR_DB, help="fp16 minimum PSNR vs eager (dB)")
    p.add_argument("--backends", help="only these backends (comma-separated names)")
    p.add_argument("--no-speed", action="store_true", help="parity only")
    p.add_argument("--out", type=Path, default=Path("reports/latest"), help="report folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def parity_images(args: argparse.Namespace) -> list[tuple[str, torch.Tensor, np.ndarray | None, np.ndarray | None]]:
    """(name, 1x3xHxW input, float64 reference HxWx3 or None, HR uint8 or None)."""
    if args.reference:
        return [(c.name, c.input_tensor(), c.sr, c.hr) for c in load_reference_cases(args.reference)]
    return [("smooth-random-96x120", smooth_test_image(1, 96, 120), None, None)]


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be wrong with the arguments, found before any model runs."""
    for number in ("batch", "runs", "ntire_runs", "threads"):
        value = getattr(args, number)
        if value is not None and value < 1:
            raise UsageError(f"--{number.replace('_', '-')} must be at least 1, got {value}")
    missing = [str(p) for p in [*args.onnx, *args.engine] if not p.is_file()]
    if missing:
        raise UsageError(f"not found: {', '.join(missing)}")
    if args.reference is not None and not args.reference.is_dir():
        raise UsageError(f"reference folder {args.reference} does not exist")
    if args.backends is not None:
        names = wanted_backends(args)
        unknown = sorted(n for n in names if not NAME_PATTERN.fullmatch(n))
        if not names or unknown:
            raise UsageError(f"unknown --backends {', '.join(unknown) or repr(args.backends)}; names look like "
                             "eager-fp32, torch-fp32, ort-cpu-fp32, openvino-cpu-fp16, tensorrt_rtx-fp16 "
                             "(a run without --backends lists every name)")


def wanted_backends(args: argparse.Namespace) -> set[str]:
    return {n.strip() for n in (args.backends or "").split(",") if n.strip()}


def select_candidates(candidates: list[Candidate], names: set[str]) -> list[Candidate]:
    if not names:
        return candidates
    unknown = sorted(names - {c.name for c in candidates})
    if unknown:
        known = ", ".join(c.name for c in candidates)
        raise UsageError(f"unknown --backends {', '.join(unknown)}; known here: {known}")
    return [c for c in candidates if c.name in names | {BASELINE}]


def passes(stats_vs_eager: dict, out: np.ndarray, eager: np.ndarray, precision: str, args: argparse.Namespace) -> bool:
    if stats_vs_eager["nonfinite"]:
        return False
    if precision == "fp16":
        return stats_vs_eager["psnr_db"] >= args.min_psnr
    return bool(np.all(np.abs(out.astype(np.float64) - eager) <= args.atol + args.rtol * np.abs(eager)))


def hwc(batch: np.ndarray) -> np.ndarray:
    return batch[0].transpose(1, 2, 0).astype(np.float64)


def run_parity(engines: dict[str, Engine], candidates: dict[str, Candidate], images, args, out_dir: Path) -> list[dict]:
    rows, outputs = [], {}
    for image_name, x, ref, hr in images:
        eager = hwc(engines[BASELINE](x.numpy()))
        outputs[(BASELINE, image_name)] = eager
        for name, engine in engines.items():
            out = eager if name == BASELINE else hwc(engine(x.numpy()))
            outputs[(name, image_name)] = out
            vs_eager = error_stats(out, eager)
            rows.append({
                "backend": name,
                "image": image_name,
                "precision": candidates[name].precision,
                "vs_eager": vs_eager,
                "vs_reference": error_stats(out, ref) if ref is not None else None,
                "psnr_y_hr": psnr_y(out, hr) if hr is not None else None,
                "passed": passes(vs_eager, out, eager, candidates[name].precision, args),
            })
            log.info("parity %-22s %-22s max abs %.2e  PSNR %.1f dB  %s", name, image_name, vs_eager["max_abs"],
                     vs_eager["psnr_db"], "ok" if rows[-1]["passed"] else "FAIL")
    worst = max((r for r in rows if r["backend"] != BASELINE), key=lambda r: r["vs_eager"]["max_abs"], default=None)
    if worst is not None:
        err = np.abs(np.nan_to_num(outputs[(worst["backend"], worst["image"])], nan=10.0) - outputs[(BASELINE, worst["image"])])
        reporting.plot_error_heatmap(err.max(axis=2), f"worst: {worst['backend']} on {worst['image']} "
                                     f"(max {worst['vs_eager']['max_abs']:.2e})", out_dir / "error_heatmap.png")
        image_name, _, _, hr = images[0]
        crops = {name: crop_centre(outputs[(name, image_name)]) for name in engines}
        if hr is not None:
            crops["ground truth"] = crop_centre(hr.astype(np.float64) / 255)
        reporting.plot_crops(crops, out_dir / "crops.png")
    return rows


def crop_centre(img: np.ndarray, size: int = 96) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def run_speed(engines: dict[str, Engine], candidates: dict[str, Candidate], args) -> tuple[list[dict], list[dict]]:
    cuda = torch.cuda.is_available()
    rows, ntire = [], []
    for h, w in args.sizes:
        size = f"{h}x{w}"
        x = smooth_test_image(args.batch, h, w).numpy()
        baseline = engines[BASELINE]
        cold = measure_cold(lambda: baseline(x), args.ntire_runs, cuda=cuda)
        ntire.append({"size": size, "mean_ms": cold.mean_ms, "runs": cold.runs})
        timed = {name: (lambda e=engine: e(x)) for name, engine in engines.items() if candidates[name].timed}
        timings = measure_interleaved(timed, warmup_s=args.warmup, runs=args.runs, max_s=args.max_seconds, cuda=cuda)
        # On a GPU the end-to-end figures above include host<->device copies; PyTorch backends are
        # also timed on device-resident tensors so that the copies can be read off separately.
        on_device = {name: fn for name in timed if (fn := device_only(engines[name], x)) is not None}
        device_timings = measure_interleaved(on_device, warmup_s=args.warmup, runs=args.runs, max_s=args.max_seconds,
                                             cuda=True) if on_device else {}
        eager_ms = timings[BASELINE].median_ms
        for name, timing in timings.items():
            rows.append({
                "backend": name,
                "size": size,
                "batch": args.batch,
                "timing": timing.as_dict(),
                "device_timing": device_timings[name].as_dict() if name in device_timings else None,
                "out_mp_per_s": args.batch * h * w * engines[name].scale**2 / 1e6 / (timing.median_ms / 1e3),
                "speedup_vs_eager": eager_ms / timing.median_ms,
            })
            log.info("speed  %-22s %-9s median %8.2f ms  (%d runs, CV %.3f)", name, size, timing.median_ms,
                     timing.runs, timing.cv)
    return rows, ntire


def device_only(engine: Engine, x: np.ndarray):
    """A call of a CUDA PyTorch engine on input already on the GPU (None for other engines)."""
    from engines.torch_engine import TorchEngine

    if not isinstance(engine, TorchEngine) or engine.device.type != "cuda":
        return None
    on_gpu = torch.from_numpy(x).to(engine.device, engine.dtype)

    def call() -> None:
        with torch.inference_mode():
            engine.forward(on_gpu)

    return call


def collect_candidates(args: argparse.Namespace, tmp: Path) -> list[Candidate]:
    model = build_model(read_checkpoint(args.ckpt))
    graphs = list(args.onnx)
    wanted = wanted_backends(args)
    if not graphs and (not wanted or needs_graphs(wanted)):
        for flag, name in (([], "msn_fp32.onnx"), (["--fp16"], "msn_fp16.onnx")):
            if to_onnx.main(["--ckpt", str(args.ckpt), "-o", str(tmp / name), "--no-verify", *flag]) != 0:
                raise RuntimeError("ONNX export failed")
            graphs.append(tmp / name)
    candidates = [*torch_candidates(model), *onnx_candidates(graphs), *tensorrt_candidates(args.engine)]
    return select_candidates(candidates, wanted)


def asked_but_missing(args: argparse.Namespace, backends: list[dict]) -> list[str]:
    """Backends the user asked for by name or by --engine that did not run."""
    not_run = [b for b in backends if b["status"] != "ok"]
    if args.backends:
        return [f"{b['name']} ({b['reason']})" for b in not_run]
    return [f"{b['name']} ({b['reason']})" for b in not_run if b["name"].startswith("tensorrt") and args.engine]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_cli(args.verbose)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        check_arguments(args)
        images = parity_images(args)
        args.out.mkdir(parents=True, exist_ok=True)
    except (UsageError, OSError, ReferenceError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory() as tmp:
        try:
            candidates = collect_candidates(args, Path(tmp))
        except (UsageError, FileNotFoundError, CheckpointError, RuntimeError) as exc:
            log.error("%s", exc)
            return EXIT_USAGE
        engines: dict[str, Engine] = {}
        backends = []
        for c in candidates:
            entry = {"name": c.name, "precision": c.precision, "status": "skipped", "reason": c.skip_reason,
                     "speed_note": c.speed_note}
            if c.skip_reason is None:
                try:
                    engines[c.name] = c.factory()
                    entry["status"] = "ok"
                except Exception as exc:  # a backend that fails to load is reported, not fatal
                    entry["reason"] = f"failed to load: {exc}"
            backends.append(entry)
            if entry["status"] != "ok":
                log.info("skipped %s: %s", c.name, entry["reason"])
        by_name = {c.name: c for c in candidates}
        if len(engines) < 2:
            log.error("nothing to compare: no backend besides %s could run here (see the reasons above)", BASELINE)
            return EXIT_FAILED
        parity = run_parity(engines, by_name, images, args, args.out)
        speed, ntire = ([], []) if args.no_speed else run_speed(engines, by_name, args)
    report = {
        "schema": reporting.SCHEMA,
        "machine": machine_info(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("onnx", "engine")}
        | {"onnx": [str(p) for p in args.onnx], "engine": [str(p) for p in args.engine]},
        "backends": backends,
        "parity": parity,
        "speed": speed,
        "ntire_protocol": ntire,
        "missing": asked_but_missing(args, backends),
    }
    report["passed"] = all(r["passed"] for r in parity) and not report["missing"]
    reporting.write_json(report, args.out / "report.json")
    summary = reporting.markdown(report)
    (args.out / "report.md").write_text(summary)
    if speed:
        reporting.plot_latency(report, args.out / "latency.png")
    print(summary)
    print(f"Report in {args.out}/ (report.json, report.md, plots). {machine_line(report['machine'])}")
    for line in report["missing"]:
        log.error("asked for but did not run: %s", line)
    return 0 if report["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
