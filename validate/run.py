"""Validate every MSN backend that runs here against eager PyTorch FP32 (training form).

    python validate/run.py --ckpt official --reference ../shared/reference --out reports/cpu
    python validate/run.py --onnx msn_x4_fp16.onnx --engine msn.plan --sizes 360x640,540x960

Parity per backend x image, speed per backend x size, a JSON + Markdown report and plots.
Exit status 1 when any backend fails its tolerance or produces NaN/Inf.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from engines.base import Engine
from export import to_onnx
from export.verify import smooth_test_image
from msn import CheckpointError, build_model, read_checkpoint
from msn.logs import setup_logging
from validate import report as reporting
from validate.backends import BASELINE, Candidate, onnx_candidates, tensorrt_candidates, torch_candidates
from validate.machine import machine_info, machine_line
from validate.metrics import error_stats, psnr_y
from validate.reference import load_reference_cases
from validate.timing import measure_cold, measure_interleaved

log = logging.getLogger("msn.validate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (the eager reference)")
    p.add_argument("--onnx", type=Path, action="append", default=[], help="ONNX graph(s); default: export FP32+FP16")
    p.add_argument("--engine", type=Path, action="append", default=[], help="TensorRT engine(s) with sidecar")
    p.add_argument("--reference", type=Path, help="folder of *_lr.png / *_sr_fp64.npz / *_hr.png cases")
    p.add_argument("--sizes", default="128x128,256x256,360x640", help="LR sizes to time, comma-separated HxW")
    p.add_argument("--batch", type=int, default=1, help="batch size for timing")
    p.add_argument("--runs", type=int, default=10, help="timed runs per backend and size (at most)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per backend and size")
    p.add_argument("--max-seconds", type=float, default=12.0, help="timed seconds per backend and size, at most")
    p.add_argument("--ntire-runs", type=int, default=3, help="cold runs for the NTIRE protocol figure")
    p.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: torch's)")
    p.add_argument("--atol", type=float, default=1e-4, help="fp32 absolute tolerance vs eager")
    p.add_argument("--rtol", type=float, default=0.0, help="fp32 relative tolerance vs eager")
    p.add_argument("--min-psnr", type=float, default=50.0, help="fp16 minimum PSNR vs eager (dB)")
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
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
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
    if not graphs:
        for flag, name in (([], "msn_fp32.onnx"), (["--fp16"], "msn_fp16.onnx")):
            if to_onnx.main(["--ckpt", str(args.ckpt), "-o", str(tmp / name), "--no-verify", *flag]) != 0:
                raise RuntimeError("ONNX export failed")
            graphs.append(tmp / name)
    candidates = [*torch_candidates(model), *onnx_candidates(graphs), *tensorrt_candidates(args.engine)]
    if args.backends:
        wanted = set(args.backends.split(",")) | {BASELINE}
        candidates = [c for c in candidates if c.name in wanted]
    return candidates


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            candidates = collect_candidates(args, Path(tmp))
        except (FileNotFoundError, CheckpointError, RuntimeError) as exc:
            log.error("%s", exc)
            return 2
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
        parity = run_parity(engines, by_name, parity_images(args), args, args.out)
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
        "passed": all(r["passed"] for r in parity),
    }
    reporting.write_json(report, args.out / "report.json")
    summary = reporting.markdown(report)
    (args.out / "report.md").write_text(summary)
    if speed:
        reporting.plot_latency(report, args.out / "latency.png")
    print(summary)
    print(f"Report in {args.out}/ (report.json, report.md, plots). {machine_line(report['machine'])}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
