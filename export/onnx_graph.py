"""Build the ONNX graph of MSN's inference form: FP32, or FP16 with float32 statistics islands."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import onnx
import onnx.version_converter
import torch
from torch import nn

from msn_deploy.export import defaults
from msn_deploy.export.trt_ops import unsupported_ops
from msn_deploy.msn import MIN_INPUT_SIZE, MSNError, MSNInference, UsageError

log = logging.getLogger(__name__)

MAX_DYNAMIC_SIZE = 8192
INPUT_NAME, OUTPUT_NAME = "input", "output"


class ExportError(MSNError):
    """The exported graph is not one that can be shipped (unsupported ops, failed checks)."""


@dataclass(frozen=True)
class ExportOptions:
    """How `export_onnx` makes a graph: precision, I/O dtype, opset, dynamic axes, and checks."""

    fp16: bool = False  # float16 graph with float32 statistics islands
    io_dtype: str = "float32"  # "float16" only with fp16, for pipelines that feed half buffers
    opset: int = defaults.OPSET
    static_hw: tuple[int, int] | None = None  # None: dynamic height and width (LR px)
    batch: int | None = None  # None: dynamic batch
    simplify: bool = True  # run onnxsim
    fold_pointwise: bool = False  # fold each strip conv's 1x1 into a dense 3x3 (slower on CPU)
    verify: bool = True  # run the graph on ONNX Runtime against the eager model before writing it
    ema: bool = True  # BasicSR checkpoints: params_ema rather than params

    def __post_init__(self) -> None:
        supported = defaults.SUPPORTED_OPSETS
        if self.opset not in supported:
            raise UsageError(f"opset {self.opset} is not supported; use {supported.start}..{supported.stop - 1}")
        if self.io_dtype not in ("float32", "float16"):
            raise UsageError(f"io dtype must be float32 or float16, not {self.io_dtype!r}")
        if self.io_dtype == "float16" and not self.fp16:
            raise UsageError("float16 I/O needs the FP16 graph (--fp16)")
        if self.static_hw and min(self.static_hw) < MIN_INPUT_SIZE:
            raise UsageError(f"static size {self.static_hw} is below MSN's minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"batch must be >= 1, not {self.batch}")

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


class _WithIOCasts(nn.Module):
    """Runs a float16 model behind float32 inputs and outputs, so callers never mismatch dtypes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def _export_module(model: MSNInference, options: ExportOptions) -> nn.Module:
    if not options.fp16:
        return model.float()
    half = copy.deepcopy(model).half()  # the caller's model stays float32
    return _WithIOCasts(half) if options.io_dtype == "float32" else half


def _dummy_input(options: ExportOptions) -> torch.Tensor:
    h, w = options.static_hw or (64, 80)
    dtype = torch.float16 if options.io_dtype == "float16" else torch.float32
    return torch.rand(options.batch or 1, 3, h, w, dtype=dtype)


def _dynamic_shapes(options: ExportOptions) -> dict | None:
    axes = {}
    if options.batch is None:
        axes[0] = torch.export.Dim("batch", min=1, max=1024)
    if options.static_hw is None:
        axes[2] = torch.export.Dim("height", min=MIN_INPUT_SIZE, max=MAX_DYNAMIC_SIZE)
        axes[3] = torch.export.Dim("width", min=MIN_INPUT_SIZE, max=MAX_DYNAMIC_SIZE)
    return {"x": axes} if axes else None


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        log.warning("onnxsim could not validate its simplification; keeping the unsimplified graph")
        return model
    return simplified


def _rename_io(model: onnx.ModelProto) -> None:
    """Name the graph's single input and output `input` / `output` wherever they are referenced."""
    renames = {model.graph.input[0].name: INPUT_NAME, model.graph.output[0].name: OUTPUT_NAME}
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


def _name_dims(model: onnx.ModelProto, scale: int) -> None:
    """Readable symbolic dims: N, H, W on the input; N, H*s, W*s on the output."""
    names = [("N", "N"), (None, None), ("H", f"H*{scale}"), ("W", f"W*{scale}")]
    for value, idx in ((model.graph.input[0], 0), (model.graph.output[0], 1)):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            label = names[axis][idx]
            if label and not dim.HasField("dim_value"):
                dim.dim_param = label


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _to_opset(graph: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The exporter may write a newer opset than asked (torch's dynamo exporter never goes below
    18): convert down with ONNX's version converter, and fail rather than mislabel the graph."""
    actual = default_opset(graph)
    if actual != opset:
        log.info("the exporter wrote opset %d; converting to opset %d", actual, opset)
        try:
            graph = onnx.version_converter.convert_version(graph, opset)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            raise ExportError(f"cannot convert the graph from opset {actual} to {opset}: {exc}") from exc
    if default_opset(graph) != opset:
        raise ExportError(f"the graph has opset {default_opset(graph)}, not the {opset} asked for")
    return graph


def export_graph(model: MSNInference, options: ExportOptions) -> onnx.ModelProto:
    """Trace the inference form to ONNX, simplify, lint for TensorRT, check and infer shapes."""
    module = _export_module(model, options)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (_dummy_input(options),),
            dynamo=True,
            opset_version=options.opset,
            dynamic_shapes=_dynamic_shapes(options),
            external_data=False,
            verbose=False,
        )
    graph = _to_opset(program.model_proto, options.opset)
    log.info("traced %d nodes", len(graph.graph.node))
    if options.simplify:
        graph = _simplify(graph)
        log.info("simplified to %d nodes", len(graph.graph.node))
    _rename_io(graph)
    _name_dims(graph, model.config.upscale)
    problems = unsupported_ops(graph)
    if problems:
        raise ExportError("graph has ops TensorRT cannot import:\n  " + "\n  ".join(problems))
    onnx.checker.check_model(graph, full_check=True)
    return onnx.shape_inference.infer_shapes(graph, strict_mode=True)
