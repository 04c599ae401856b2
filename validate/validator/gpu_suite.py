"""The GPU path measured in one prepared run: speed, memory, parity and the video pipeline, inside
a fixed time budget (validate/validator/gpu_suite.sh wraps it; docs/BENCHMARKS.md says how to run it).

    bash validate/validator/gpu_suite.sh OUT           # a CUDA machine: the whole suite, about 8 minutes at most
    bash validate/validator/gpu_suite.sh --smoke OUT   # any machine: the same code paths at tiny sizes

It reads what `python -m msn_deploy.validate.validator.prepare_gpu_run` put in the take-along folder (the checkpoint,
the float64 reference photos) and writes OUT/gpu_suite.json and OUT/gpu_suite.md:

* the NTIRE protocol: eager FP32 training form, batch 1, cudnn.benchmark off, no warm-up, mean;
* warm, round-robin (ratios from one run): eager FP32, the inference form in FP32 and FP16, with
  CUDA graphs (and channels-last), compiled, compiled with graphs; median, p95, CV, peak memory;
  on-device time (the tensor already on the GPU) apart from numpy-in/numpy-out and the copies;
* parity of each against eager FP32 and against the float64 references (finite on every photo);
* the video pipeline against inference alone (x264 veryfast and FFV1), and the encoder alone;
* a line on TensorRT.

Sections run in order of what matters most and each checks the time left, so an exhausted budget
costs the last rows (named in the report), never the report.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.engines.runtime.torch_engine import TorchEngine
from msn_deploy.export.parity import FP16_MIN_PSNR_DB
from msn_deploy.msn import random_model
from msn_deploy.msn.cli import non_negative_float, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.tensorrt import FLAVOURS
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.backends import graph_candidates, torch_candidates
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.ntire import ntire_protocol, ntire_table
from msn_deploy.validate.core.parity import compare, parity_images, parity_table
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.speed import SpeedBudget, speed_table, time_shape
from msn_deploy.validate.core.tables import markdown_table
from msn_deploy.validate.core.timing import measure_interleaved
from msn_deploy.validate.core.variants import BASELINE

log = logging.getLogger("msn.gpu_suite")

SCHEMA = "msn-gpu-suite/3"  # 3: speed rows in the one schema of validate.speed
CHECKPOINT = "checkpoints/team28_MSN.pth"
REFERENCES = "reference"


@dataclass(frozen=True)
class Plan:
    """What one run measures; the GPU plan fits about 8 minutes on an H200, the smoke plan 3 on 2 CPU cores."""

    name: str
    sizes: tuple[tuple[int, int], ...]  # LR HxW, batch 1
    batch_hw: tuple[int, int]  # the size the batch sizes are measured at
    batches: tuple[int, ...]
    ntire_sizes: tuple[tuple[int, int], ...]
    ntire_runs: int
    runs: int  # at most, per variant and shape
    warmup_s: float
    max_s: float  # timed seconds per variant and shape
    compile_sizes: tuple[tuple[int, int], ...]
    video: tuple[int, int, int]  # LR height, width, frames
    video_batch: int
    budget_s: float


PLANS = {
    "gpu": Plan("gpu", sizes=((128, 128), (256, 256), (360, 640), (540, 960), (1080, 1920)), batch_hw=(360, 640),
                batches=(1, 4, 16), ntire_sizes=((256, 256), (540, 960)), ntire_runs=10, runs=200, warmup_s=0.5,
                max_s=2.0, compile_sizes=((360, 640),), video=(360, 640, 96), video_batch=4, budget_s=450),
    "smoke": Plan("smoke", sizes=((32, 32), (40, 48)), batch_hw=(32, 32), batches=(1, 2), ntire_sizes=((32, 32),),
                  ntire_runs=2, runs=3, warmup_s=0.0, max_s=0.5, compile_sizes=(), video=(32, 48, 6), video_batch=2,
                  budget_s=150),
}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, what: str, need_s: float) -> bool:
        """Whether `need_s` more seconds fit; if not, `what` is recorded as skipped."""
        if self.left() >= need_s:
            return True
        self.skipped.append(f"{what}: out of time ({self.left():.0f} s left, about {need_s:.0f} s needed)")
        log.warning("skipped %s", self.skipped[-1])
        return False


class Suite:
    def __init__(self, plan: Plan, device: str, take_along: Path) -> None:
        self.plan, self.device = plan, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.budget = Budget(plan.budget_s)
        checkpoint = take_along / CHECKPOINT
        official = checkpoint.is_file()
        self.weights = str(checkpoint) if official else "random (no checkpoint in the take-along folder)"
        if not official:
            self._random = tempfile.TemporaryDirectory(prefix="msn-gpu-suite-")
            checkpoint = Path(self._random.name) / "random.pth"
            torch.save(random_model().state_dict(), checkpoint)
        references = take_along / REFERENCES
        self.images = parity_images(references) if official and references.is_dir() else []
        self.engines: dict[str, TorchEngine] = {}
        self.unavailable: dict[str, str] = {}
        candidates = torch_candidates(checkpoint, device)
        for candidate in candidates:
            if candidate.skip_reason is not None:
                self.unavailable[candidate.name] = candidate.skip_reason
            elif candidate.options.get("compile") and not plan.compile_sizes:
                self.unavailable[candidate.name] = "torch.compile is measured on the GPU plan only"
            else:
                self.engines[candidate.name] = candidate.load()
        self.compiled = {c.name for c in candidates if c.options.get("compile")}
        # The exported graphs on ONNX Runtime's CPU provider (the only one such machines have):
        # parity only, and a device tensor crossing to a host runtime and back.
        graphs = sorted((take_along / "graphs").glob("*.onnx")) if official else []
        self.graph_engines: dict[str, Engine] = {c.name: c.load() for c in graph_candidates(graphs)
                                                 if c.target.backend == "onnxruntime" and c.target.device == "cpu"}

    def input(self, n: int, h: int, w: int) -> torch.Tensor:
        return smooth_test_image(n, h, w).to(self.device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    # --- sections ---------------------------------------------------------------------------

    def parity(self) -> list[dict]:
        """Every variant and graph against eager FP32 and the float64 references, on the reference
        photos (or, with random weights, on a synthetic image against eager FP32 only)."""
        images = self.images or parity_images(None)
        engines_here = {**self.engines, **self.graph_engines}
        return [row for row, _, _ in compare(engines_here, images, feed=lambda x: x.to(self.device),
                                             allows=lambda what: self.budget.allows(what, 5))]

    def ntire(self) -> list[dict]:
        sizes = [hw for hw in self.plan.ntire_sizes if self.budget.allows(f"NTIRE protocol at {hw[0]}x{hw[1]}", 10)]
        return ntire_protocol(self.engines[BASELINE].model, sizes, self.plan.ntire_runs, self.device)

    def speed(self, shapes: list[tuple[int, int, int]], names: list[str]) -> list[dict]:
        """On-device time of each variant per shape, round-robin; peak memory of one call each."""
        rows = []
        for n, h, w in shapes:
            active = [v for v in names if v in self.engines]
            need = len(active) * (self.plan.warmup_s + self.plan.max_s) + (120 if set(active) & self.compiled else 5)
            if not active or not self.budget.allows(f"speed at {n}x{h}x{w} ({', '.join(active)})", need):
                continue
            x = self.input(n, h, w)
            peaks = {name: self.peak_memory_mb(self.engines[name], x) for name in active}  # compiles, captures
            calls = {name: (lambda e=self.engines[name], x=x: e(x)) for name in active}
            rows += time_shape(calls, (n, h, w), self.engines[BASELINE].scale,
                               SpeedBudget(self.plan.warmup_s, self.plan.runs, self.plan.max_s), self.cuda,
                               peak_memory_mb=peaks)
        return rows

    def peak_memory_mb(self, engine: TorchEngine, x: torch.Tensor) -> float | None:
        if not self.cuda:
            engine(x)
            return None
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        engine(x)
        self.sync()
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def end_to_end(self, variant: str) -> list[dict]:
        """numpy in, numpy out (pinned staging in, pageable out) against on-device time, and the
        copies alone, pinned and pageable."""
        engine = self.engines.get(variant)
        rows = []
        for h, w in self.plan.sizes:
            if engine is None or not self.budget.allows(f"end-to-end at {h}x{w}", 3 * self.plan.max_s + 2):
                continue
            host = smooth_test_image(1, h, w).numpy()
            x = torch.from_numpy(host).to(self.device)
            fns: dict[str, Callable[[], object]] = {"on_device": lambda x=x: engine(x),
                                                    "numpy_in_out": lambda host=host: engine(host)}
            fns |= self.copies(h, w) if self.cuda else {}
            timings = measure_interleaved(fns, warmup_s=self.plan.warmup_s, runs=self.plan.runs,
                                          max_s=self.plan.max_s, cuda=self.cuda)
            row = {"variant": variant, "lr": f"{h}x{w}", **{f"{k}_ms": t.median_ms for k, t in timings.items()}}
            row["numpy_over_device"] = timings["numpy_in_out"].median_ms / timings["on_device"].median_ms
            rows.append(row)
        return rows

    def copies(self, h: int, w: int) -> dict[str, Callable[[], object]]:
        s = self.engines[BASELINE].scale
        lr, sr = (1, 3, h, w), (1, 3, h * s, w * s)
        pinned_in, pageable_in = torch.rand(lr).pin_memory(), torch.rand(lr)
        pinned_out, pageable_out = torch.empty(sr).pin_memory(), torch.empty(sr)
        device_in, device_out = pinned_in.to(self.device), torch.rand(sr, device=self.device)
        return {
            "h2d_pinned": lambda: device_in.copy_(pinned_in, non_blocking=True),
            "h2d_pageable": lambda: device_in.copy_(pageable_in),
            "d2h_pinned": lambda: pinned_out.copy_(device_out, non_blocking=True),
            "d2h_pageable": lambda: pageable_out.copy_(device_out),
        }

    def host_copies_of_a_device_call(self, variant: str) -> dict | None:
        """Memory copies between host and device while a CUDA tensor goes through the engine
        (the contract: none; torch's profiler sees every memcpy the CUDA runtime does)."""
        engine = self.engines.get(variant)
        if engine is None or not self.cuda:
            return None
        from torch.profiler import ProfilerActivity, profile

        x = self.input(1, *self.plan.batch_hw)
        engine(x)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            engine(x)
            self.sync()
        kinds = [e.name for e in prof.events() if "Memcpy" in e.name and ("HtoD" in e.name or "DtoH" in e.name)]
        # The input check reads three scalars and the output check one flag: small DtoH copies only.
        return {"variant": variant, "host_device_copies": len(kinds), "names": sorted(set(kinds))}

    def video(self, variant: str) -> list[dict]:
        try:
            import av  # noqa: F401
        except ImportError:
            self.budget.skipped.append("video pipeline: PyAV is not installed (prepare_gpu_run.py carries its wheel)")
            return []
        from msn_deploy.engines.media.video import VideoOptions
        from msn_deploy.validate.benches.video_bench import bench_video, synthetic_clip

        engine = self.engines[variant]
        h, w, frames = self.plan.video
        rows = []
        encoders = (("libx264", "yuv420p", 18, {"preset": "veryfast"}), ("ffv1", "yuv420p", None, {}))
        with tempfile.TemporaryDirectory() as tmp:
            clip = synthetic_clip(Path(tmp) / "clip.mp4", frames, h, w)
            for codec, pix_fmt, crf, extra in encoders:
                if not self.budget.allows(f"video pipeline with {codec}", 40):
                    continue
                options = VideoOptions(codec, pix_fmt, crf, self.plan.video_batch, encoder_options=extra)
                count, infer_s, report, _ = bench_video(engine, clip, options)
                encode_fps = encoder_alone_fps(engine.scale * h, engine.scale * w, count, options)
                rows.append({"variant": variant, "lr": f"{h}x{w}", "frames": count, "batch": options.batch,
                             "encoder": " ".join([codec, *(f"{k}={v}" for k, v in extra.items())]),
                             "inference_fps": count / infer_s, "pipeline_fps": report.fps,
                             "pipeline_share": report.fps * infer_s / count, "encoder_alone_fps": encode_fps})
        return rows

    def run(self) -> dict:
        plan = self.plan
        report: dict = {"schema": SCHEMA, "plan": asdict(plan), "device": str(self.device), "weights": self.weights,
                        "machine": machine_info(), "unavailable": self.unavailable}
        if self.cuda:
            report["machine"]["compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(self.device))
        report["parity"] = self.parity()
        report["ntire"] = self.ntire()
        uncompiled = [v for v in self.engines if v not in self.compiled]
        report["speed"] = self.speed([(1, h, w) for h, w in plan.sizes], uncompiled)
        report["batches"] = self.speed([(n, *plan.batch_hw) for n in plan.batches if n > 1],
                                       [v for v in uncompiled if v != BASELINE] + [BASELINE])
        fastest = fastest_fp16(report["speed"], plan.batch_hw) or Target("torch", self.device.type, "fp16").label
        report["fastest_fp16"] = fastest
        report["end_to_end"] = self.end_to_end(fastest)
        report["device_call_copies"] = self.host_copies_of_a_device_call(fastest)
        report["video"] = self.video(fastest)
        compiled = [v for v in self.engines if v in self.compiled]
        if compiled:
            report["compiled"] = self.speed([(1, h, w) for h, w in plan.compile_sizes],
                                            [BASELINE, fastest, *compiled])
        report["tensorrt"] = tensorrt_line(report["machine"])
        report["skipped"] = self.budget.skipped
        report["goals"] = goals(report)
        report["seconds"] = plan.budget_s - self.budget.left()
        return report


def encoder_alone_fps(height: int, width: int, frames: int, options) -> float:
    """Frames/s of the encoder by itself on frames of the output size (what bounds the pipeline
    when it is slower than inference)."""
    import av

    from msn_deploy.engines.media.video import encoder_options

    picture = np.zeros((height, width, 3), np.uint8)
    picture[:, : width // 2] = 200  # not flat, so the encoder has something to do
    with tempfile.TemporaryDirectory() as tmp, av.open(str(Path(tmp) / "enc.mkv"), "w") as out:
        stream = out.add_stream(options.codec, rate=24, options=encoder_options(options))
        stream.width, stream.height, stream.pix_fmt = width, height, options.pix_fmt
        started = time.perf_counter()
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(picture, 8, axis=1), format="rgb24")
            out.mux(stream.encode(frame.reformat(format=options.pix_fmt)))
        out.mux(stream.encode(None))
        return frames / (time.perf_counter() - started)


def fastest_fp16(rows: list[dict], batch_hw: tuple[int, int]) -> str | None:
    at = f"1x{batch_hw[0]}x{batch_hw[1]}"
    fp16 = [r for r in rows if r["shape"] == at and "fp16" in r["backend"]]
    return min(fp16, key=lambda r: r["timing"]["median_ms"])["backend"] if fp16 else None


def tensorrt_line(machine: dict) -> str:
    have = ", ".join(f"{k} {machine[k]}" for k in FLAVOURS if machine.get(k))
    if have:
        return f"TensorRT installed ({have}); build an engine with export/build_trt.py and pass it to validate/run.py"
    hopper = machine.get("compute_capability") == "9.0"
    why = "TensorRT-RTX has no sm_90 (Hopper) target and " if hopper else ""
    return f"not measured: {why}standard TensorRT is not installed on this machine"


def goals(report: dict) -> list[dict]:
    """The issue's goals, each met or not, from this run's numbers (None: not measured here)."""
    def speed_of(variant: str, shape: str) -> dict | None:
        return next((r for r in report["speed"] + report.get("compiled", []) if r["backend"] == variant
                     and r["shape"] == shape), None)

    fastest = report["fastest_fp16"]
    at = "1x360x640"
    best, eager = speed_of(fastest, at), speed_of(BASELINE, at)
    big = speed_of(fastest, "1x1080x1920")
    e2e = next((r for r in report["end_to_end"] if r["lr"] == "360x640"), None)
    fp16_rows = [r for r in report["parity"] if r["precision"] == "fp16"]
    video = next((r for r in report["video"] if r["encoder"].startswith("libx264")), None)
    checks = [
        ("fastest FP16 >= 12x eager FP32 at 360x640",
         best and eager and eager["timing"]["median_ms"] / best["timing"]["median_ms"], 12, ">="),
        ("fastest FP16 <= 2 ms per frame on-device at 360x640", best and best["timing"]["median_ms"], 2.0, "<="),
        ("1080x1920 LR (8K out) >= 30 fps", big and big["frames_per_s"], 30, ">="),
        ("FP16 >= 60 dB vs eager FP32 on every photo",  # a row with an error (NaN out) has no PSNR: it fails
         fp16_rows and min(r["vs_eager"]["psnr_db"] if r["vs_eager"] else -math.inf for r in fp16_rows),
         FP16_MIN_PSNR_DB, ">="),
        ("numpy in/out within 1.5x of on-device at 360x640", e2e and e2e["numpy_over_device"], 1.5, "<="),
        ("video pipeline >= 90% of inference fps (x264 veryfast)", video and video["pipeline_share"], 0.9, ">="),
    ]
    rows = []
    for name, value, bound, op in checks:
        value = float(value) if value not in (None, False, []) else None
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        rows.append({"goal": name, "value": value, "met": met})
    return rows


def markdown(report: dict) -> str:
    def fmt(v: object, digits: int = 2) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    def table(rows: list[dict], columns: list[str]) -> list[str]:
        if not rows:
            return ["(none)"]
        return markdown_table(columns, [[fmt(r.get(c)) for c in columns] for r in rows])

    lines = [f"# GPU suite ({report['plan']['name']} plan, {report['seconds']:.0f} s)", "",
             f"Machine: {machine_line(report['machine'])}", f"Weights: {report['weights']}; device {report['device']}",
             "", "## Goals", *table(report["goals"], ["goal", "value", "met"]),
             "", "## NTIRE protocol (eager FP32 training form, batch 1, no warm-up, mean)",
             *ntire_table(report["ntire"]),
             "", "## Warm, on-device (input already on the device), batch 1",
             *speed_table(report["speed"], ["backend", "shape", "median", "p95", "cv", "speedup", "frames_per_s",
                                            "peak_memory"]),
             "", "## Batches", *speed_table(report["batches"], ["backend", "shape", "median", "p95", "cv",
                                                                "frames_per_s", "peak_memory"]),
             "", "## Compiled", *speed_table(report.get("compiled", []), ["backend", "shape", "median", "p95", "cv",
                                                                          "speedup", "peak_memory"]),
             "", f"## End to end ({report['fastest_fp16']}): numpy in and out vs on-device, and the copies alone (ms)",
             *table(report["end_to_end"], ["lr", "on_device_ms", "numpy_in_out_ms", "numpy_over_device",
                                           "h2d_pinned_ms", "h2d_pageable_ms", "d2h_pinned_ms", "d2h_pageable_ms"]),
             "", "## Parity (errors vs eager FP32 training form)", *parity_table(report["parity"]),
             "", "## Video pipeline", *table(report["video"], ["encoder", "lr", "frames", "batch", "inference_fps",
                                                              "pipeline_fps", "pipeline_share", "encoder_alone_fps"]),
             "", f"TensorRT: {report['tensorrt']}", ""]
    copies = report.get("device_call_copies")
    if copies:
        lines.append(f"Host/device copies during one call on a CUDA tensor ({copies['variant']}): "
                     f"{copies['host_device_copies']} ({', '.join(copies['names']) or 'none'})")
    for name, why in report["unavailable"].items():
        lines.append(f"- {name}: {why}")
    for item in report["skipped"]:
        lines.append(f"- skipped {item}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m msn_deploy.validate.validator.gpu_suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_suite.json and gpu_suite.md")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few runs: checks the code paths (~2 min)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--take-along", type=Path, default=Path(".gpu-run"),
                   help="what prepare_gpu_run.py prepared (default .gpu-run)")
    p.add_argument("--budget-s", type=non_negative_float, default=None, help="time budget (default: the plan's)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def run_suite(args: argparse.Namespace) -> None:
    plan = PLANS["smoke" if args.smoke else "gpu"]
    if args.budget_s is not None:
        plan = Plan(**{**asdict(plan), "budget_s": args.budget_s})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    make_output_folder(args.out)
    log.info("gpu suite: %s plan on %s, budget %.0f s", plan.name, device, plan.budget_s)
    report = Suite(plan, device, args.take_along).run()
    written = write_report(args.out, "gpu_suite", report, markdown(report))
    log.info("wrote %s and %s in %.0f s", *written, report["seconds"])
    median_cv = statistics.median([r["timing"]["cv"] for r in report["speed"]]) if report["speed"] else None
    log.info("median CV of the timed rows: %s", f"{median_cv:.3f}" if median_cv is not None else "-")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run_suite(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
