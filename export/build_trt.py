"""Build an FP16 (or FP32) TensorRT / TensorRT-RTX engine of MSN.

    python export/build_trt.py --fp16                      # official checkpoint -> FP16 ONNX -> engine
    python export/build_trt.py --onnx msn_x4_fp16.onnx --max 1x720x1280
    python export/build_trt.py --fp16 --backend tensorrt_rtx --compute-capability SM86 SM89
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from export import to_onnx
from export.trt_build import BuildError, BuildSettings, Profile, build_engine, parse_shape, sidecar_path
from export.trt_compat import TensorRTUnavailable, import_tensorrt
from msn import CheckpointError
from msn.arguments import positive_int
from msn.files import check_writable, refuse_overwriting_inputs
from msn.logs import start_cli

log = logging.getLogger("msn.build_trt")


def check_paths(args: argparse.Namespace) -> None:
    """Every path problem is found before the export and the build, not after."""
    if args.onnx is not None:
        if not args.onnx.is_file():
            raise FileNotFoundError(f"ONNX graph {args.onnx} does not exist; export one with export/to_onnx.py")
        if args.onnx.stat().st_size == 0:
            raise BuildError(f"{args.onnx} is empty (0 bytes); export it again with export/to_onnx.py")
    inputs = [args.onnx, args.ckpt if args.onnx is None else None]
    if args.output is not None:
        check_writable(args.output)
        check_writable(sidecar_path(args.output))
        refuse_overwriting_inputs([args.output, sidecar_path(args.output)], [*inputs, args.timing_cache])
    if args.timing_cache is not None:
        check_writable(args.timing_cache)
        refuse_overwriting_inputs([args.timing_cache], inputs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="build this ONNX graph")
    src.add_argument("--ckpt", default="official", help="export this checkpoint first (default: official)")
    p.add_argument("--fp16", action="store_true", help="build from the FP16 graph (when exporting from --ckpt)")
    p.add_argument("-o", "--output", type=Path, help="engine path (default: a cache path naming what invalidates it)")
    p.add_argument("--min", default="1x29x29", help="profile minimum NxHxW (LR px)")
    p.add_argument("--opt", default="1x360x640", help="profile optimum NxHxW")
    p.add_argument("--max", default="1x1080x1920", help="profile maximum NxHxW")
    p.add_argument("--timing-cache", type=Path, help="read and update this timing cache")
    p.add_argument("--opt-level", type=int, default=3, choices=range(0, 6))
    p.add_argument("--workspace", type=positive_int, default=2048, help="workspace limit in MiB")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "tensorrt_rtx"])
    p.add_argument("--compute-capability", nargs="+", default=[], metavar="SMxx",
                   help="TensorRT-RTX AOT targets, e.g. SM86 SM89 (default: the GPU here)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def run(args: argparse.Namespace, command: str) -> Path:
    trt = import_tensorrt(args.backend)
    settings = BuildSettings(
        Profile(parse_shape(args.min), parse_shape(args.opt), parse_shape(args.max)),
        args.opt_level,
        args.workspace,
        [c.upper() for c in args.compute_capability],
    )
    check_paths(args)
    with tempfile.TemporaryDirectory() as tmp:
        graph = args.onnx
        if graph is None:
            graph = Path(tmp) / ("msn_fp16.onnx" if args.fp16 else "msn_fp32.onnx")
            if to_onnx.main(["--ckpt", args.ckpt, "-o", str(graph), *(["--fp16"] if args.fp16 else [])]) != 0:
                raise BuildError("ONNX export failed (see above)")
        return build_engine(trt, graph, args.output, settings, timing_cache=args.timing_cache,
                            verbose=args.verbose, command=command)[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_cli(args.verbose)
    command = shlex.join(["python", "export/build_trt.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        path = run(args, command)
    except (BuildError, TensorRTUnavailable, OSError, CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(f"Wrote {path} and {path}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
