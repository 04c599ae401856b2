"""An exported ONNX graph of MSN: its metadata (`GraphMetadata`) and the one "is this an MSN
graph?" check (`MSNGraph`). Needs only `onnx`: reading a graph never loads the exporter."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from msn_deploy.msn.errors import MissingFileError
from msn_deploy.msn.formats.precision import ArtifactError, canonical_dtype, canonical_precision

EXPORTER = "msn-deploy 0.1.0"  # written into every graph; part of the graph cache's key
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


@dataclass(frozen=True)
class GraphMetadata:
    """What `export_onnx` stamps into a graph's metadata_props (all values are strings there)."""

    scale: int
    precision: str  # fp32 | fp16
    io_dtype: str  # float32 | float16
    checkpoint_sha256: str
    opset: int
    num_feat: int = 28
    num_block: int = 8
    min_input_size: int = 29
    exporter: str = ""
    torch_version: str = ""
    strip_convs: str = "1x1 + depthwise 3x3"

    MODEL_NAME = "MSN"
    INPUT_RANGE = "[0, 1] RGB, NCHW"
    OUTPUT_RANGE = "unclamped; clamp to [0, 1] when converting to an image"

    def to_props(self) -> dict[str, str]:
        values = {k: str(v) for k, v in dataclasses.asdict(self).items()}
        return {"model_name": self.MODEL_NAME, "input_range": self.INPUT_RANGE,
                "output_range": self.OUTPUT_RANGE} | values

    def write(self, model: onnx.ModelProto) -> None:
        """Replace the graph's metadata_props with these."""
        del model.metadata_props[:]
        for key, value in self.to_props().items():
            model.metadata_props.add(key=key, value=value)
        model.producer_name, model.producer_version = "msn-deploy", self.exporter.split()[-1] if self.exporter else ""
        model.doc_string = f"MSN x{self.scale} super-resolution ({self.precision}), inference form"

    @classmethod
    def read(cls, model: onnx.ModelProto, source: str | os.PathLike = "the graph") -> GraphMetadata:
        """Parse and validate the metadata of `model`; ArtifactError names what is wrong."""
        props = {p.key: p.value for p in model.metadata_props}
        if props.get("model_name") != cls.MODEL_NAME or not props.get("scale", "").isdigit():
            raise ArtifactError(f"{source} is not an MSN graph exported by msn-deploy (no model_name/scale "
                                "metadata); export it with export/to_onnx.py")
        ints = ("scale", "opset", "num_feat", "num_block", "min_input_size")
        try:
            values = {k: int(props[k]) for k in ints if k in props}
        except ValueError:
            raise ArtifactError(f"{source} has non-numeric metadata among {', '.join(ints)}; re-export it") from None
        strings = ("checkpoint_sha256", "exporter", "torch_version", "strip_convs")
        values |= {k: props[k] for k in strings if k in props}
        metadata = cls(precision=canonical_precision(props.get("precision", "fp32")),
                       io_dtype=canonical_dtype(props.get("io_dtype", "float32"), f"{source} io_dtype"),
                       checkpoint_sha256=values.pop("checkpoint_sha256", ""), opset=values.pop("opset", 0),
                       **values)
        metadata.validate(source)
        return metadata

    def validate(self, source: str | os.PathLike = "the graph") -> None:
        if self.scale < 1:
            raise ArtifactError(f"{source} claims scale {self.scale}; re-export it with export/to_onnx.py")
        if self.io_dtype == "float16" and self.precision != "fp16":
            raise ArtifactError(f"{source} claims float16 I/O on an fp32 graph; re-export it")


Dims = tuple[int | None, int | None, int | None]  # N, H, W of the input; None where dynamic


@dataclass(frozen=True)
class MSNGraph:
    """An ONNX file checked to be an MSN graph: one N x 3 x H x W input, one N x 3 x sH x sW
    output, the scale s and precision in its metadata. Weights are not loaded."""

    path: Path
    metadata: GraphMetadata
    input_dims: Dims
    io_dtype: str  # of the graph's input and output tensors: float32 | float16

    @property
    def scale(self) -> int:
        return self.metadata.scale

    @property
    def precision(self) -> str:
        return self.metadata.precision

    @classmethod
    def read(cls, path: str | os.PathLike) -> MSNGraph:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"ONNX graph {path} does not exist; export one with export/to_onnx.py")
        if path.stat().st_size == 0:
            raise ArtifactError(f"{path} is empty (0 bytes); export it again with export/to_onnx.py")
        return cls.from_bytes(path.read_bytes(), path)

    @classmethod
    def from_bytes(cls, data: bytes, path: str | os.PathLike) -> MSNGraph:
        """`read` for a graph already in memory (e.g. shipped to another process); `path` names it."""
        try:
            model = onnx.load_from_string(data)  # external data is never loaded: MSN graphs have none
        except Exception as exc:  # protobuf raises several types for foreign or truncated files
            raise ArtifactError(f"{path} is not a readable ONNX model ({type(exc).__name__}); "
                                "export it with export/to_onnx.py") from None
        return cls.of(model, path)

    @classmethod
    def of(cls, model: onnx.ModelProto, path: str | os.PathLike) -> MSNGraph:
        """The one "is this an MSN graph?" check, for a model already in memory."""
        metadata = GraphMetadata.read(model, path)
        graph = model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise ArtifactError(f"{path} has {len(graph.input)} inputs and {len(graph.output)} outputs; "
                                "MSN has one of each")
        types = [v.type.tensor_type for v in (graph.input[0], graph.output[0])]
        dims_in, dims_out = ([d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] for t in types)
        if len(dims_in) != 4 or len(dims_out) != 4 or dims_in[1] != 3 or dims_out[1] != 3:
            raise ArtifactError(f"{path} maps {dims_in} to {dims_out}; MSN maps N x 3 x H x W to N x 3 x sH x sW")
        scale = metadata.scale
        for lr, sr in zip(dims_in[2:], dims_out[2:]):
            if lr is not None and sr is not None and sr != lr * scale:
                raise ArtifactError(f"{path} maps {dims_in} to {dims_out}, which is not the x{scale} its "
                                    "metadata claims")
        io_dtypes = {_ONNX_DTYPES.get(t.elem_type) for t in types}
        if None in io_dtypes or len(io_dtypes) != 1:
            raise ArtifactError(f"{path} has input/output element types {[t.elem_type for t in types]}; "
                                "expected float32 or float16 for both")
        (io_dtype,) = io_dtypes
        if io_dtype != metadata.io_dtype:
            raise ArtifactError(f"{path} has {io_dtype} I/O but its metadata says {metadata.io_dtype}; re-export it")
        return cls(Path(path), metadata, (dims_in[0], dims_in[2], dims_in[3]), io_dtype)
