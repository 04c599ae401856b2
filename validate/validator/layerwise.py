"""Find the first layer where a candidate graph (FP16) departs from a reference graph (FP32).

    msn-layerwise --reference msn_x4_fp32.onnx --candidate msn_x4_fp16.onnx --image photo.png

Both graphs run on polygraphy's ONNX-Runtime runner with every intermediate tensor marked as an
output, fed by one data loader (the image, or a photo-like test input); tensors are matched by
the position of their node among the graphs' non-Cast ops (an FP16 graph is its FP32 twin plus
Casts) and by shape. Per node, in the reference graph's order: the max abs error, the PSNR against
the reference tensor's own peak (at least 1; so that tensors of any magnitude compare alike) and the count
of non-finite values. The report names the first node below the PSNR bound and the first that
becomes non-finite: where an FP16 engine first goes wrong, not where the damage shows.

With TensorRT and a GPU present, `--engine` compares a TensorRT engine against ONNX Runtime
through polygraphy's TensorRT runner instead; without them that is one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import onnx

from msn_deploy.engines.media.images import read_image
from msn_deploy.msn import MissingFileError, UsageError
from msn_deploy.msn.cli import EXIT_FAILED, non_negative_float, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.tensorrt import FLAVOURS
from msn_deploy.msn.metrics import tensor_error
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.msn.validation import check_batch
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.layerwise")

# Intermediate tensors of the FP16 graph with float32 islands stay above 50 dB of their own peak
# on photos (measured: tests/validate/test_layerwise.py); an overflow or a lost island falls far below.
MIN_LAYER_PSNR_DB = 40.0
SCHEMA = "msn-layerwise/1"


@dataclass(frozen=True)
class LayerError:
    node: str
    op: str
    tensor: str
    max_abs: float
    psnr_db: float
    nonfinite: int


@dataclass
class LayerwiseReport:
    reference: str
    candidate: str
    input_shape: list[int]
    min_psnr_db: float
    layers: list[LayerError] = field(default_factory=list)
    unmatched: int = 0  # candidate-only or shape-changed tensors, left out of the comparison

    @property
    def first_failing(self) -> LayerError | None:
        return next((layer for layer in self.layers if layer.psnr_db < self.min_psnr_db or layer.nonfinite), None)

    @property
    def first_nonfinite(self) -> LayerError | None:
        return next((layer for layer in self.layers if layer.nonfinite), None)

    def to_json(self) -> dict:
        first, nonfinite = self.first_failing, self.first_nonfinite
        return {"schema": SCHEMA, "reference": self.reference, "candidate": self.candidate,
                "input_shape": self.input_shape, "min_psnr_db": self.min_psnr_db, "unmatched": self.unmatched,
                "first_failing": asdict(first) if first else None,
                "first_nonfinite": asdict(nonfinite) if nonfinite else None,
                "layers": [asdict(layer) for layer in self.layers]}

    def markdown(self, rows: int = 40) -> str:
        first, nonfinite = self.first_failing, self.first_nonfinite
        lines = [
            "# Layerwise comparison", "",
            f"Reference `{self.reference}`, candidate `{self.candidate}`, input "
            f"{'x'.join(map(str, self.input_shape))}; {len(self.layers)} tensors compared ({self.unmatched} "
            "unmatched); bound: PSNR >= "
            f"{self.min_psnr_db:g} dB of each reference tensor's peak, and finite.", "",
            f"- first node below the bound: {_describe(first)}",
            f"- first node with NaN/Inf: {_describe(nonfinite)}", "",
        ]
        start = max(0, self.layers.index(first) - rows // 4) if first else 0
        lines += markdown_table(["#", "node", "op", "tensor", "max abs", "PSNR dB", "non-finite"],
                                [(i, layer.node, layer.op, layer.tensor, f"{layer.max_abs:.3g}", f"{layer.psnr_db:.1f}",
                                  layer.nonfinite) for i, layer in enumerate(self.layers[start : start + rows], start)])
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> tuple[Path, Path]:
        make_output_folder(out)
        return write_report(out, "layerwise", self.to_json(), self.markdown())


def _describe(layer: LayerError | None) -> str:
    if layer is None:
        return "none"
    return (f"`{layer.node}` ({layer.op}, tensor `{layer.tensor}`): PSNR {layer.psnr_db:.1f} dB, max abs "
            f"{layer.max_abs:.3g}, {layer.nonfinite} non-finite")


def _runner(path: Path, name: str):
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs, OnnxFromPath
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    marked = BytesFromOnnx(ModifyOutputs(OnnxFromPath(str(path)), outputs=constants.MARK_ALL))
    return OnnxrtRunner(SessionFromOnnx(marked, providers=["CPUExecutionProvider"]), name=name)


def compare_layers(reference: str | Path, candidate: str | Path, x: np.ndarray | None = None, *,
                   min_psnr_db: float = MIN_LAYER_PSNR_DB) -> LayerwiseReport:
    """Run both graphs on x (1x3xHxW in [0, 1]; default a photo-like 96x120 input) with every
    tensor marked, and compare them node by node (see the module docstring)."""
    from polygraphy.comparator import Comparator

    reference, candidate = Path(reference), Path(candidate)
    for path in (reference, candidate):
        MSNGraph.read(path)  # an MSN graph from export_onnx, or one clear error now
    x = smooth_test_image(1, 96, 120).numpy() if x is None else np.asarray(x, np.float32)
    # One feed for both; polygraphy's data loader cache casts it to each runner's input dtype.
    results = Comparator.run([_runner(reference, "reference"), _runner(candidate, "candidate")],
                             data_loader=[{"input": x}])
    ref_out, cand_out = results["reference"][0], results["candidate"][0]
    report = LayerwiseReport(str(reference), str(candidate), list(x.shape), min_psnr_db)
    for node, ref_tensor, cand_tensor in aligned_tensors(reference, candidate):
        if ref_tensor not in ref_out or cand_tensor not in cand_out:
            continue
        ref_value, cand_value = np.asarray(ref_out[ref_tensor]), np.asarray(cand_out[cand_tensor])
        if ref_value.shape != cand_value.shape:
            report.unmatched += 1
            continue
        if not np.issubdtype(ref_value.dtype, np.floating):
            continue  # shapes and indices: nothing to lose precision in
        max_abs, psnr_db, nonfinite = tensor_error(ref_value, cand_value)
        report.layers.append(LayerError(node.name, node.op_type, ref_tensor, max_abs, psnr_db, nonfinite))
    return report


def aligned_tensors(reference: Path, candidate: Path) -> list[tuple[onnx.NodeProto, str, str]]:
    """(reference node, its output, the candidate's corresponding output), in graph order.

    Nodes are paired by position in the two graphs' sequences of non-Cast ops (an FP16 graph is
    its FP32 twin plus Casts; tensor names alone shift between exports), aligned by difflib where
    the sequences differ; the unaligned rest is left out."""
    graphs = [onnx.load(path, load_external_data=False).graph for path in (reference, candidate)]
    ref_nodes, cand_nodes = ([n for n in g.node if n.op_type != "Cast"] for g in graphs)
    matcher = SequenceMatcher(a=[n.op_type for n in ref_nodes], b=[n.op_type for n in cand_nodes], autojunk=False)
    pairs = []
    for tag, i1, i2, j1, _ in matcher.get_opcodes():
        if tag != "equal":
            continue
        for offset in range(i2 - i1):
            ref_node, cand_node = ref_nodes[i1 + offset], cand_nodes[j1 + offset]
            pairs += [(ref_node, a, b) for a, b in zip(ref_node.output, cand_node.output)]
    return pairs


def engine_comparison_unavailable() -> str | None:
    """Why a TensorRT engine cannot be compared here (None when it can)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
    except ImportError:
        return "torch is not installed"
    for module in FLAVOURS:
        try:
            __import__(module)
            return None
        except ImportError:
            continue
    return "neither tensorrt nor tensorrt_rtx can be imported"


def compare_engine(engine: Path, reference: Path, x: np.ndarray | None = None):
    """A TensorRT engine against ONNX Runtime on the reference graph, through polygraphy's TensorRT
    runner (POLYGRAPHY_USE_TENSORRT_RTX=1 selects TensorRT-RTX). Outputs only: an engine's
    intermediate tensors are fused away."""
    reason = engine_comparison_unavailable()
    if reason:
        raise UsageError(f"cannot compare {engine} on TensorRT here: {reason}; compare the ONNX graphs instead "
                         "(--reference and --candidate)")
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator

    x = smooth_test_image(1, 96, 120).numpy() if x is None else np.asarray(x, np.float32)
    runners = [OnnxrtRunner(SessionFromOnnx(str(reference)), name="onnxruntime"),
               TrtRunner(EngineFromBytes(BytesFromPath(str(engine))), name="tensorrt")]
    results = Comparator.run(runners, data_loader=[{"input": x}])
    return tensor_error(results["onnxruntime"][0]["output"], results["tensorrt"][0]["output"])


def load_input(image: Path | None) -> np.ndarray | None:
    if image is None:
        return None
    if not image.is_file():
        raise MissingFileError(f"--image {image} does not exist")
    x = np.ascontiguousarray(read_image(image).rgb.transpose(2, 0, 1)[None])
    check_batch(x.shape, True, x.dtype)  # e.g. smaller than MSN's 29x29: the message, not a runtime's traceback
    return x


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-layerwise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="the FP32 graph (from export/to_onnx.py)")
    p.add_argument("--candidate", type=Path, help="the graph under suspicion, e.g. the FP16 one")
    p.add_argument("--engine", type=Path, help="a TensorRT engine to compare against --reference (GPU only)")
    p.add_argument("--image", type=Path, help="the input image (default: a photo-like 96x120 test input)")
    p.add_argument("--min-psnr", type=non_negative_float, default=MIN_LAYER_PSNR_DB,
                   help=f"per-tensor bound, dB of the reference tensor's peak (default {MIN_LAYER_PSNR_DB:g})")
    p.add_argument("--out", type=Path, default=Path("reports/layerwise"), help="writes layerwise.json and .md")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        if (args.candidate is None) == (args.engine is None):
            raise UsageError("give --candidate GRAPH or --engine PLAN (one of them) to compare with --reference")
        x = load_input(args.image)
        if args.engine is None:
            make_output_folder(args.out)  # before the comparison, which takes minutes on large graphs
        if args.engine is not None:
            max_abs, psnr_db, nonfinite = compare_engine(args.engine, args.reference, x)
            print(f"{args.engine} vs ONNX Runtime: max abs {max_abs:.3g}, PSNR {psnr_db:.1f} dB, "
                  f"{nonfinite} non-finite")
            return 0 if psnr_db >= args.min_psnr and not nonfinite else EXIT_FAILED
        report = compare_layers(args.reference, args.candidate, x, min_psnr_db=args.min_psnr)
        json_path, md_path = report.write(args.out)
        print(f"first node below {args.min_psnr:g} dB: {_describe(report.first_failing)}")
        print(f"first node with NaN/Inf: {_describe(report.first_nonfinite)}")
        print(f"Report: {json_path} and {md_path}")
        return 0 if report.first_failing is None else EXIT_FAILED

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
