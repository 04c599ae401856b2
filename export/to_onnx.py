"""Export MSN's inference form to ONNX (a thin command over export.export_onnx).

    python export/to_onnx.py --ckpt best.pth              # FP32, dynamic batch and size
    python export/to_onnx.py --ckpt official --fp16       # FP16 with float32 statistics
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msn_deploy import export
from msn_deploy.export import defaults
from msn_deploy.msn.cli import add_precision_option, hw_size, positive_int, run_cli
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (default: official)")
    p.add_argument("-o", "--output", type=Path, help="output .onnx (default: msn_x4_fp32.onnx etc.)")
    add_precision_option(p, "fp16: a float16 graph with float32 statistics islands (default fp32)", ARTIFACT_PRECISIONS)
    p.add_argument("--io-dtype", choices=["float32", "float16"], default="float32",
                   help="FP16 graph I/O dtype (float16 for TensorRT pipelines that feed half buffers)")
    p.add_argument("--opset", type=int, default=defaults.OPSET, choices=list(defaults.SUPPORTED_OPSETS))
    p.add_argument("--static", type=hw_size, metavar="HxW", help="fix height and width (LR px)")
    p.add_argument("--batch", type=positive_int, help="fix the batch size")
    p.add_argument("--no-simplify", dest="simplify", action="store_false", help="skip onnxsim")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the graph on ONNX Runtime against the eager PyTorch model (default: on)")
    p.add_argument("--params", action="store_true", help="use `params` instead of `params_ema`")
    p.add_argument("--fold-pointwise", action="store_true",
                   help="fold each strip conv's 1x1 into a dense 3x3 (fewer, heavier convs; slower on CPU)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> export.ExportOptions:
    return export.ExportOptions(fp16=args.precision == "fp16", io_dtype=args.io_dtype, opset=args.opset,
                                static_hw=args.static, batch=args.batch, simplify=args.simplify,
                                fold_pointwise=args.fold_pointwise, verify=args.verify, ema=not args.params)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        print(export.export_onnx(args.ckpt, args.output, options_from(args)).summary())

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
