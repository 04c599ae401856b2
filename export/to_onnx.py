"""Export MSN's inference form to ONNX.

    python export/to_onnx.py --ckpt best.pth              # FP32, dynamic batch and size
    python export/to_onnx.py --ckpt official --fp16       # FP16 with float32 statistics
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import onnx

from export.metadata import stamp_metadata
from export.onnx_graph import DEFAULT_OPSET, SUPPORTED_OPSETS, ExportError, ExportOptions, export_graph
from export.verify import VerificationError, verify_onnx
from msn import MIN_INPUT_SIZE, CheckpointError, build_model, read_checkpoint, to_inference_form
from msn.arguments import positive_int
from msn.files import atomic_output, check_writable, refuse_overwriting_inputs
from msn.logs import start_cli

log = logging.getLogger("msn.export")


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 360x640, got {text!r}") from None
    if min(h, w) < MIN_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{text}: MSN needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} LR px")
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="official", help="checkpoint path or known name (default: official)")
    p.add_argument("-o", "--output", type=Path, help="output .onnx (default: msn_x4_fp32.onnx etc.)")
    p.add_argument("--fp16", action="store_true", help="float16 graph with float32 statistics islands")
    p.add_argument("--io-dtype", choices=["float32", "float16"], default="float32",
                   help="FP16 graph I/O dtype (float16 for TensorRT pipelines that feed half buffers)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, choices=list(SUPPORTED_OPSETS))
    p.add_argument("--static", type=_hw, metavar="HxW", help="fix height and width (LR px)")
    p.add_argument("--batch", type=positive_int, help="fix the batch size")
    p.add_argument("--no-simplify", dest="simplify", action="store_false", help="skip onnxsim")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the graph on ONNX Runtime against the eager PyTorch model (default: on)")
    p.add_argument("--params", action="store_true", help="use `params` instead of `params_ema`")
    p.add_argument("--fold-pointwise", action="store_true",
                   help="fold each strip conv's 1x1 into a dense 3x3 (fewer, heavier convs; slower on CPU)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def default_output(options: ExportOptions, scale: int) -> Path:
    shape = f"_{options.static_hw[0]}x{options.static_hw[1]}" if options.static_hw else ""
    batch = f"_b{options.batch}" if options.batch else ""
    io = "_io16" if options.io_dtype == "float16" else ""
    return Path(f"msn_x{scale}_{options.precision}{io}{shape}{batch}.onnx")


def export(args: argparse.Namespace) -> dict[str, object]:
    options = ExportOptions(args.fp16, args.io_dtype, args.opset, args.static, args.batch, args.simplify)
    if args.output:
        check_writable(args.output)
        refuse_overwriting_inputs([args.output], [args.ckpt])
    started = time.perf_counter()
    log.info("[1/4] reading checkpoint %s", args.ckpt)
    checkpoint = read_checkpoint(args.ckpt, ema=not args.params)
    eager = build_model(checkpoint)
    model = to_inference_form(eager, fold_pointwise=args.fold_pointwise)
    output = args.output or default_output(options, checkpoint.config.upscale)
    check_writable(output)
    refuse_overwriting_inputs([output], [checkpoint.path])
    log.info("[2/4] exporting the %s inference form (opset %d)", options.precision, options.opset)
    graph = export_graph(model, options)
    stamp_metadata(graph, checkpoint.config, options, checkpoint.sha256, fold_pointwise=args.fold_pointwise)
    with atomic_output(output) as tmp:
        onnx.save(graph, tmp)
        verification = None
        if args.verify:
            log.info("[3/4] verifying on ONNX Runtime")
            h, w = options.static_hw or (96, 120)
            verification = verify_onnx(tmp, eager, options.fp16, (options.batch or 1, h, w))
            if not verification.passed:
                raise VerificationError(f"{output} was not written: ONNX Runtime output {verification}")
        log.info("[4/4] writing %s", output)
    return {
        "file": str(output),
        "size_kb": output.stat().st_size / 1024,
        "nodes": len(graph.graph.node),
        "opset": options.opset,
        "precision": options.precision,
        "io_dtype": options.io_dtype,
        "shape": "dynamic" if not (options.static_hw or options.batch) else f"batch={options.batch} hw={options.static_hw}",
        "verification": str(verification) if verification else "skipped",
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_cli(args.verbose)
    try:
        summary = export(args)
    except (FileNotFoundError, PermissionError, IsADirectoryError, CheckpointError, ExportError,
            VerificationError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(
        f"Wrote {summary['file']} ({summary['size_kb']:.0f} KiB): {summary['nodes']} nodes, opset "
        f"{summary['opset']}, {summary['precision']} with {summary['io_dtype']} I/O, {summary['shape']} shapes. "
        f"Verification {summary['verification']}. Took {summary['seconds']:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
