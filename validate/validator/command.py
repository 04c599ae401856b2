"""`msn-validate` (= `python validate/run.py`): every MSN backend that runs here against eager
PyTorch FP32, a thin command over `validate.run`.

    python validate/run.py --ckpt official --reference ../shared/reference --out reports/cpu
    python validate/run.py --onnx msn_x4_fp16.onnx --engine msn.plan --sizes 360x640,540x960

Parity per backend x image, speed per backend x size, a JSON + Markdown report and plots.

Exit status: 0 every backend passed; 1 a backend failed its tolerance or produced NaN/Inf, or a
backend that was asked for (--backends, --engine) did not run; 2 bad usage or input (nothing run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msn_deploy import validate
from msn_deploy.export.parity import FP16_MIN_PSNR_DB
from msn_deploy.msn.cli import EXIT_FAILED, hw_sizes, non_negative_float, positive_float, positive_int, run_cli
from msn_deploy.validate.core.machine import machine_line
from msn_deploy.validate.validator.settings import DEFAULT_SIZES, ValidationSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-validate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (the eager reference)")
    p.add_argument("--onnx", type=Path, action="append", default=[], help="ONNX graph(s); default: export FP32+FP16")
    p.add_argument("--engine", type=Path, action="append", default=[], help="TensorRT engine(s) with sidecar")
    p.add_argument("--ncnn", type=Path, action="append", default=[],
                   help="ncnn graph(s), NAME.param with NAME.bin beside; default: export one")
    p.add_argument("--reference", type=Path, help="folder of *_lr.png / *_sr_fp64.npz / *_hr.png cases")
    p.add_argument("--sizes", type=hw_sizes, default=list(DEFAULT_SIZES),
                   help="LR sizes to time, comma-separated HxW (default 128x128,256x256,360x640)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size for timing")
    p.add_argument("--runs", type=positive_int, default=10, help="timed runs per backend and size (at most)")
    p.add_argument("--warmup", type=non_negative_float, default=1.0, help="warm-up seconds per backend and size")
    p.add_argument("--max-seconds", type=positive_float, default=12.0,
                   help="timed seconds per backend and size, at most")
    p.add_argument("--ntire-runs", type=positive_int, default=3, help="cold runs for the NTIRE protocol figure")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch and ONNX Runtime (default: torch's)")
    p.add_argument("--atol", type=non_negative_float, default=1e-4, help="fp32 absolute tolerance vs eager")
    p.add_argument("--rtol", type=non_negative_float, default=0.0, help="fp32 relative tolerance vs eager")
    p.add_argument("--min-psnr", type=non_negative_float, default=FP16_MIN_PSNR_DB,
                   help="fp16 minimum PSNR vs eager (dB)")
    p.add_argument("--backends", help="only these backends (comma-separated names)")
    p.add_argument("--no-speed", action="store_true", help="parity only")
    p.add_argument("--out", type=Path, default=Path("reports/latest"), help="report folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = ValidationSettings(**{k: v for k, v in vars(args).items() if k != "verbose"})

    def work() -> int:
        report = validate.run(settings)
        print(report.markdown())
        print(f"Report in {settings.out}/ (report.json, report.md, plots). {machine_line(report.data['machine'])}")
        return 0 if report.passed else EXIT_FAILED

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
