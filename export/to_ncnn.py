"""Export MSN to ncnn for chaiNNer, upscayl and ncnn apps (a thin command over export.export_ncnn).

    python export/to_ncnn.py --ckpt best.pth            # msn_x4.param + msn_x4.bin, FP32 weights
    python export/to_ncnn.py --ckpt official --fp16     # half-precision weights (half the size)

Beside them, msn_x4.openmodeldb.json: a model card in OpenModelDB's fields. It then prints which
apps can load the files and, for those that cannot, what stops them (export.ncnn_apps, derived from
the written graph and each app's layer list): chaiNNer (NCNN > Load Model, then Upscale Image; its
own ncnn runs them in the tests) and an upscayl-bin built from current upscayl-ncnn (by its build's
layer list) load them; upscayl's shipped binary and Video2X do not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msn_deploy import export
from msn_deploy.export.ncnn_apps import app_table
from msn_deploy.msn.cli import add_precision_option, run_cli
from msn_deploy.msn.formats.ncnn_param import NcnnParam
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-export-ncnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (default: official)")
    p.add_argument("-o", "--output", type=Path, help="output NAME.param, NAME.bin beside it (default: msn_x4.param)")
    add_precision_option(p, "fp16: half-precision weights, half the size (default fp32)", ARTIFACT_PRECISIONS)
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the files on ncnn's CPU path against the PyTorch model (default: on)")
    p.add_argument("--params", action="store_true", help="use `params` instead of `params_ema`")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        options = export.NcnnExportOptions(fp16=args.precision == "fp16", verify=args.verify, ema=not args.params)
        result = export.export_ncnn(args.ckpt, args.output, options)
        print(result.summary())
        print("\n".join(app_table(NcnnParam.read(result.param))))

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
