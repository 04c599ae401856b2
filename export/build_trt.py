"""Build an FP16 (or FP32) TensorRT / TensorRT-RTX engine of MSN (a thin command over
export.export_onnx and export.build_engine).

    python export/build_trt.py --fp16                      # official checkpoint -> FP16 ONNX -> engine
    python export/build_trt.py --onnx msn_x4_fp16.onnx --max 1x720x1280
    python export/build_trt.py --fp16 --backend tensorrt_rtx --compute-capability SM86 SM89
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from msn_deploy import export
from msn_deploy.export import defaults
from msn_deploy.msn.cli import add_precision_option, nhw_shape, positive_int, run_cli
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS, DEFAULT_PRECISION
from msn_deploy.msn.formats.tensorrt import import_tensorrt


def _shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-build-trt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="build this ONNX graph")
    src.add_argument("--ckpt", default="official", help="export this checkpoint first (default: official)")
    add_precision_option(p, "fp16: build from the FP16 graph (exporting from --ckpt; default fp32)",
                         ARTIFACT_PRECISIONS)
    p.add_argument("-o", "--output", type=Path, help="engine path (default: a cache path naming what invalidates it)")
    p.add_argument("--min", type=nhw_shape, default=defaults.PROFILE_MIN,
                   help=f"profile minimum NxHxW in LR px (default {_shape_text(defaults.PROFILE_MIN)})")
    p.add_argument("--opt", type=nhw_shape, default=defaults.PROFILE_OPT,
                   help=f"profile optimum NxHxW (default {_shape_text(defaults.PROFILE_OPT)})")
    p.add_argument("--max", type=nhw_shape, default=defaults.PROFILE_MAX,
                   help=f"profile maximum NxHxW (default {_shape_text(defaults.PROFILE_MAX)})")
    p.add_argument("--timing-cache", type=Path, help="read and update this timing cache")
    p.add_argument("--opt-level", type=int, default=defaults.OPT_LEVEL, choices=range(0, 6))
    p.add_argument("--workspace", type=positive_int, default=defaults.WORKSPACE_MIB, help="workspace limit in MiB")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "tensorrt_rtx"])
    p.add_argument("--compute-capability", nargs="+", default=[], metavar="SMxx",
                   help="TensorRT-RTX AOT targets, e.g. SM86 SM89 (default: the GPU here)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> export.BuildSettings:
    return export.BuildSettings(export.Profile(args.min, args.opt, args.max), args.opt_level, args.workspace,
                         tuple(args.compute_capability), args.backend, args.timing_cache)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "export/build_trt.py", *(sys.argv[1:] if argv is None else argv)])

    def work() -> None:
        settings = settings_from(args)
        import_tensorrt(settings.backend)  # a missing TensorRT is found before the export
        source = args.onnx if args.onnx is not None else args.ckpt
        export.check_output_paths(args.output, settings.timing_cache, [source])
        with tempfile.TemporaryDirectory() as tmp:
            graph = args.onnx
            if graph is None:
                graph = Path(tmp) / f"msn_{args.precision or DEFAULT_PRECISION}.onnx"
                export.export_onnx(args.ckpt, graph, export.ExportOptions(fp16=args.precision == "fp16"))
            result = export.build_engine(graph, args.output, settings, command=command)
        print(f"Wrote {result.path} and {result.sidecar_path}")

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
