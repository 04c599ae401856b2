"""`export_onnx`: a checkpoint in, a verified MSN ONNX graph out (the library behind to_onnx.py)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from msn_deploy.export.onnx_graph import ExportOptions, export_graph
from msn_deploy.export.parity import ParityResult
from msn_deploy.export.verify import VerificationError, verify_onnx
from msn_deploy.msn import MIN_INPUT_SIZE, build_model, read_checkpoint, to_inference_form
from msn_deploy.msn.files import atomic_output, check_writable, refuse_overwriting_inputs
from msn_deploy.msn.formats.graph import EXPORTER, GraphMetadata

log = logging.getLogger(__name__)

VERIFY_HW = (96, 120)  # LR size of the verification input when the graph's size is dynamic


@dataclass(frozen=True)
class ExportResult:
    """What export_onnx wrote, and how its verification came out (None when skipped)."""

    path: Path
    size_bytes: int
    nodes: int
    metadata: GraphMetadata
    options: ExportOptions
    verification: ParityResult | None
    seconds: float

    def summary(self) -> str:
        o = self.options
        shape = "dynamic" if not (o.static_hw or o.batch) else f"batch={o.batch} hw={o.static_hw}"
        verification = str(self.verification) if self.verification else "skipped"
        return (f"Wrote {self.path} ({self.size_bytes / 1024:.0f} KiB): {self.nodes} nodes, opset {o.opset}, "
                f"{self.metadata.precision} with {o.io_dtype} I/O, {shape} shapes. Verification {verification}. "
                f"Took {self.seconds:.1f} s.")


def default_onnx_name(options: ExportOptions, scale: int) -> Path:
    shape = f"_{options.static_hw[0]}x{options.static_hw[1]}" if options.static_hw else ""
    batch = f"_b{options.batch}" if options.batch else ""
    io = "_io16" if options.io_dtype == "float16" else ""
    return Path(f"msn_x{scale}_{'fp16' if options.fp16 else 'fp32'}{io}{shape}{batch}.onnx")


def export_onnx(checkpoint: str | os.PathLike, path: str | os.PathLike | None = None,
                options: ExportOptions | None = None) -> ExportResult:
    """Export MSN's inference form to ONNX at `path` (default: msn_x{scale}_{precision}....onnx here).

    `checkpoint` is a file or a known name ("official"). The graph is linted for TensorRT,
    checked by onnx.checker and, unless `options.verify` is off, run on ONNX Runtime against the
    eager training form; it is renamed into place only when all of that passed. Raises
    UsageError subclasses for bad paths and checkpoints (before any work), ExportError or
    VerificationError when the graph is not fit to ship.
    """
    options = options or ExportOptions()
    if path is not None:
        check_writable(path)
        refuse_overwriting_inputs([path], [checkpoint])
    started = time.perf_counter()
    log.info("[1/4] reading checkpoint %s", checkpoint)
    ckpt = read_checkpoint(checkpoint, ema=options.ema)
    eager = build_model(ckpt)
    model = to_inference_form(eager, fold_pointwise=options.fold_pointwise)
    output = Path(path) if path is not None else default_onnx_name(options, ckpt.config.upscale)
    check_writable(output)
    refuse_overwriting_inputs([output], [ckpt.path])
    precision = "fp16" if options.fp16 else "fp32"
    log.info("[2/4] exporting the %s inference form (opset %d)", precision, options.opset)
    graph = export_graph(model, options)
    metadata = GraphMetadata(
        scale=ckpt.config.upscale, precision=precision, io_dtype=options.io_dtype, checkpoint_sha256=ckpt.sha256,
        opset=options.opset, num_feat=ckpt.config.num_feat, num_block=ckpt.config.num_block,
        min_input_size=MIN_INPUT_SIZE, exporter=EXPORTER, torch_version=torch.__version__,
        strip_convs="dense 3x3" if options.fold_pointwise else "1x1 + depthwise 3x3",
    )
    metadata.write(graph)
    verification = None
    with atomic_output(output) as tmp:
        onnx.save(graph, tmp)
        if options.verify:
            log.info("[3/4] verifying on ONNX Runtime")
            h, w = options.static_hw or VERIFY_HW
            verification = verify_onnx(tmp, eager, options.fp16, (options.batch or 1, h, w))
            if not verification.passed:
                raise VerificationError(f"{output} was not written: ONNX Runtime output {verification}")
        log.info("[4/4] writing %s", output)
    return ExportResult(output, output.stat().st_size, len(graph.graph.node), metadata, options, verification,
                        time.perf_counter() - started)
