"""The file formats msn-deploy reads and writes, each owned here: the kinds of model artifact
(how each is recognised, its header read), graph metadata and the engine sidecar.

The exporter and the engine builder write through this module; the runtimes, the Triton
exporter and the tools read through it (the C++ reader, `engines/cpp/src/sidecar.cpp`, is
tested against files written here). Each format is a typed dataclass with one `read`, one
`write` and one `validate` that names the problem and the fix. This module needs only `onnx`
and the standard library, so reading an artifact never loads the exporter.

    GraphMetadata   the metadata_props of an exported ONNX graph (scale, precision, I/O dtype, ...)
    MSNGraph        an ONNX file checked to be an MSN graph: its metadata plus its I/O shape
    EngineSidecar   the JSON beside a TensorRT plan (what built it, for which GPU and shapes)
    ArtifactKind    checkpoint, safetensors, ONNX graph, engine, ncnn graph: `artifact_kind(path)` says which
                    (the ncnn text graph itself is export.ncnn_param's)
    ArtifactHeader  scale and precision of any artifact, from its header (`read_artifact_header`)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from export.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParam
from msn import MissingFileError, UsageError
from msn.checkpoint import SAFETENSORS_SUFFIX, resolve_checkpoint
from msn.files import atomic_write_bytes

# TensorRT's own names (float, half) and numpy's (float32, float16) for the two dtypes MSN uses.
_DTYPES = {"float32": "float32", "float": "float32", "fp32": "float32",
           "float16": "float16", "half": "float16", "fp16": "float16"}
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


PRECISIONS = ("fp32", "fp16")  # of every artifact; a checkpoint runs in either


class ArtifactError(UsageError):
    """A graph, engine or sidecar that is missing, unreadable, foreign or inconsistent."""


def canonical_dtype(name: object, where: str = "dtype") -> str:
    """'float32' or 'float16' for any of the names TensorRT, numpy or a user gives them."""
    dtype = _DTYPES.get(str(name).lower()) if isinstance(name, str) else None
    if dtype is None:
        raise ArtifactError(f"{where} is {name!r}; MSN artifacts use float32 or float16")
    return dtype


def canonical_precision(name: str) -> str:
    """'fp32' or 'fp16'."""
    return {"float32": "fp32", "float16": "fp16"}[canonical_dtype(name, "precision")]


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


SIDECAR_FORMAT = "msn-engine/2"
# Format 1 stored TensorRT's dtype names (float, half); format 2 stores float32 / float16. Both read.
READABLE_SIDECAR_FORMATS = ("msn-engine/1", SIDECAR_FORMAT)


def sidecar_path(engine: str | os.PathLike) -> Path:
    return Path(str(engine) + ".json")


@dataclass(frozen=True)
class TensorIO:
    name: str
    mode: str  # input | output
    dtype: str  # float32 | float16
    shape: list[int]  # -1 where dynamic


@dataclass(frozen=True)
class EngineSidecar:
    """The JSON beside an engine: everything that invalidates it, plus how it was built."""

    flavour: str  # tensorrt | tensorrt_rtx
    version: str
    compute_capabilities: list[str]  # TensorRT-RTX AOT targets; empty: the GPU it was built on
    gpu: dict[str, str] | None  # {"name", "compute_capability"} of the GPU present at build time
    precision: str
    scale: int
    profile: dict[str, list[int]]  # min / opt / max, each [N, H, W] in LR px
    opt_level: int
    workspace_mib: int
    io: list[TensorIO]
    onnx_path: str
    onnx_sha256: str
    onnx_metadata: dict[str, str] = field(default_factory=dict)
    engine_sha256: str = ""
    engine_bytes: int = 0
    build_seconds: float = 0.0
    built_at: str = ""
    host: str = ""
    command: str = ""

    def tensor(self, mode: str) -> TensorIO:
        return next(t for t in self.io if t.mode == mode)

    def rebuild_command(self) -> str:
        return f"python export/build_trt.py --onnx {self.onnx_path} --backend {self.flavour}"

    def to_json(self) -> dict[str, object]:
        return {
            "format": SIDECAR_FORMAT,
            "tensorrt": {"flavour": self.flavour, "version": self.version},
            "target": {"compute_capabilities": list(self.compute_capabilities), "gpu": self.gpu},
            "precision": self.precision,
            "scale": self.scale,
            "profile": self.profile,
            "opt_level": self.opt_level,
            "workspace_mib": self.workspace_mib,
            "io": [dataclasses.asdict(t) for t in self.io],
            "onnx": {"path": self.onnx_path, "sha256": self.onnx_sha256, "metadata": self.onnx_metadata},
            "engine_sha256": self.engine_sha256,
            "engine_bytes": self.engine_bytes,
            "build_seconds": self.build_seconds,
            "built_at": self.built_at,
            "host": self.host,
            "command": self.command,
        }

    def write(self, engine: str | os.PathLike) -> Path:
        """Write atomically beside `engine`; return the sidecar's path."""
        self.validate(engine)
        return atomic_write_bytes(sidecar_path(engine), json.dumps(self.to_json(), indent=2).encode())

    @classmethod
    def read(cls, engine: str | os.PathLike) -> EngineSidecar:
        """Read and validate the sidecar of `engine`; ArtifactError names the file and the fix."""
        path = sidecar_path(engine)
        rebuild = "rebuild the engine with export/build_trt.py"
        if not path.is_file():
            raise ArtifactError(f"{engine} has no sidecar {path.name}; {rebuild}")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"sidecar {path} is not valid JSON ({exc}); {rebuild}") from None
        if not isinstance(data, dict) or data.get("format") not in READABLE_SIDECAR_FORMATS:
            found = data.get("format") if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise ArtifactError(f"sidecar {path} has format {found!r}, expected {SIDECAR_FORMAT!r}; {rebuild}")
        try:
            sidecar = cls._from_json(data)
        except ArtifactError as exc:
            raise ArtifactError(f"sidecar {path}: {exc}; {rebuild}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"the field {exc}" if isinstance(exc, KeyError) else f"a malformed field ({exc})"
            raise ArtifactError(f"sidecar {path} is missing or has {what}; {rebuild}") from None
        sidecar.validate(path)
        return sidecar

    @classmethod
    def _from_json(cls, data: dict) -> EngineSidecar:
        trt, target, onnx_info = data["tensorrt"], data["target"], data["onnx"]
        io = [TensorIO(str(t["name"]), str(t["mode"]), canonical_dtype(t["dtype"], f"tensor {t['name']!r} dtype"),
                       [int(d) for d in t.get("shape", [])]) for t in data["io"]]
        profile = {k: [int(v) for v in data["profile"][k]] for k in ("min", "opt", "max")}
        return cls(
            flavour=str(trt["flavour"]), version=str(trt["version"]),
            compute_capabilities=[str(c) for c in target["compute_capabilities"]], gpu=target.get("gpu"),
            precision=canonical_precision(data["precision"]), scale=int(data["scale"]), profile=profile,
            opt_level=int(data.get("opt_level", 0)), workspace_mib=int(data.get("workspace_mib", 0)), io=io,
            onnx_path=str(onnx_info["path"]), onnx_sha256=str(onnx_info["sha256"]),
            onnx_metadata=dict(onnx_info.get("metadata", {})), engine_sha256=str(data.get("engine_sha256", "")),
            engine_bytes=int(data.get("engine_bytes", 0)), build_seconds=float(data.get("build_seconds", 0)),
            built_at=str(data.get("built_at", "")), host=str(data.get("host", "")),
            command=str(data.get("command", "")),
        )

    def validate(self, source: str | os.PathLike = "the sidecar") -> None:
        fix = "rebuild the engine with export/build_trt.py"
        if self.flavour not in ("tensorrt", "tensorrt_rtx"):
            raise ArtifactError(f"{source}: unknown TensorRT flavour {self.flavour!r}; {fix}")
        if self.scale < 1:
            raise ArtifactError(f"{source}: scale {self.scale} is not a positive integer; {fix}")
        modes = sorted(t.mode for t in self.io)
        if modes != ["input", "output"]:
            raise ArtifactError(f"{source}: expected one input and one output tensor, found {modes}; {fix}")
        for name, point in self.profile.items():
            if len(point) != 3 or min(point) < 1:
                raise ArtifactError(f"{source}: profile {name} {point} is not a positive [N, H, W]; {fix}")
        for axis in range(3):
            lo, opt, hi = (self.profile[k][axis] for k in ("min", "opt", "max"))
            if not lo <= opt <= hi:
                raise ArtifactError(f"{source}: profile is not min <= opt <= max ({self.profile}); {fix}")
        if self.gpu is not None and not (isinstance(self.gpu, dict) and "compute_capability" in self.gpu):
            raise ArtifactError(f"{source}: target gpu {self.gpu!r} lacks a compute_capability; {fix}")


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of model artifact: its name, the file names that mark it, and whether it holds weights
    (a checkpoint runs in eager PyTorch or as its exported graph) rather than a compiled model."""

    name: str
    suffixes: tuple[str, ...]
    weights: bool


CHECKPOINT = ArtifactKind("checkpoint", (".pth", ".pt"), weights=True)  # and known names (msn.checkpoint)
SAFETENSORS = ArtifactKind("safetensors", (SAFETENSORS_SUFFIX,), weights=True)
GRAPH = ArtifactKind("graph", (".onnx",), weights=False)
ENGINE = ArtifactKind("engine", (".plan", ".engine"), weights=False)  # a TensorRT plan with its JSON sidecar
NCNN = ArtifactKind("ncnn", (".param",), weights=False)  # an ncnn graph, its weights in NAME.bin beside it
ARTIFACT_KINDS = (CHECKPOINT, SAFETENSORS, GRAPH, ENGINE, NCNN)


def artifact_kind(artifact: str | os.PathLike) -> ArtifactKind:
    """The kind of an artifact, judged by its name: a graph or engine by suffix, safetensors by
    suffix, anything else a checkpoint (a pickled file under any name, or a known name)."""
    suffix = Path(artifact).suffix.lower()
    return next((kind for kind in (GRAPH, ENGINE, NCNN, SAFETENSORS) if suffix in kind.suffixes), CHECKPOINT)


def ncnn_weights_path(param: str | os.PathLike) -> Path:
    """The weights of an ncnn graph: NAME.param -> NAME.bin beside it."""
    return Path(param).with_suffix(".bin")


def companion_path(artifact: str | os.PathLike) -> Path | None:
    """The second file an artifact needs beside it (an engine's sidecar, an ncnn graph's weights)."""
    kind = artifact_kind(artifact)
    return sidecar_path(artifact) if kind is ENGINE else ncnn_weights_path(artifact) if kind is NCNN else None


def locate_artifact(artifact: str | os.PathLike) -> Path:
    """The file of an artifact: an existing file as it is, a known checkpoint name from the cache
    (downloaded once); MissingFileError for anything else."""
    path = Path(artifact)
    if path.is_file():
        return path
    if not artifact_kind(path).weights:
        raise MissingFileError(f"model {artifact} does not exist")
    return resolve_checkpoint(artifact)


@dataclass(frozen=True)
class ArtifactHeader:
    scale: int
    precision: str  # what it runs in (a checkpoint: the precision asked for, fp32 by default)


def read_artifact_header(artifact: str | os.PathLike, precision: str | None = None) -> ArtifactHeader:
    """Scale and precision of a checkpoint (or known name), graph or engine, read from its header
    or tensor shapes: nothing is loaded onto a device."""
    from msn import read_checkpoint

    kind = artifact_kind(artifact)
    if kind is GRAPH:
        graph = MSNGraph.read(artifact)
        return ArtifactHeader(graph.scale, graph.precision)
    if kind is ENGINE:
        sidecar = EngineSidecar.read(artifact)
        return ArtifactHeader(sidecar.scale, sidecar.precision)
    if kind is NCNN:
        return ArtifactHeader(_ncnn_scale(Path(artifact)), precision or "fp32")
    return ArtifactHeader(read_checkpoint(artifact).config.upscale, precision or "fp32")


def _ncnn_scale(param: Path) -> int:
    if not param.is_file():
        raise MissingFileError(f"model {param} does not exist")
    if not ncnn_weights_path(param).is_file():
        raise MissingFileError(f"{param} has no weights {ncnn_weights_path(param).name} beside it; copy both files "
                               "(msn-export-ncnn writes them together)")
    graph = NcnnParam.read(param)
    scale = graph.upscale()
    if scale is None:
        raise ArtifactError(f"{param} is not an MSN ncnn graph (msn-export-ncnn writes those); export one with "
                            "msn-export-ncnn --ckpt CHECKPOINT")
    if graph.inputs() != [INPUT_BLOB] or OUTPUT_BLOB not in graph.outputs():
        raise ArtifactError(f"{param} lacks the blobs {INPUT_BLOB!r} (input) and {OUTPUT_BLOB!r} (it has "
                            f"{graph.inputs()} and {graph.outputs()}); export it again with msn-export-ncnn")
    return scale
