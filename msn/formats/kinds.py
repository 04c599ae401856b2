"""The kinds of model artifact (checkpoint, safetensors, ONNX graph, TensorRT engine, ncnn graph):
how each is recognised, what it implies (weights or a compiled model, a companion file beside it,
how to make one) and the header of any of them (`read_artifact_header`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from msn_deploy.msn.checkpoint import SAFETENSORS_SUFFIX, resolve_checkpoint
from msn_deploy.msn.errors import MissingFileError
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParam
from msn_deploy.msn.formats.precision import DEFAULT_PRECISION, ArtifactError
from msn_deploy.msn.formats.sidecar import EngineSidecar, sidecar_path


def ncnn_weights_path(param: str | os.PathLike) -> Path:
    """The weights of an ncnn graph: NAME.param -> NAME.bin beside it."""
    return Path(param).with_suffix(".bin")


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of model artifact and what it implies: the file names that mark it, whether it holds
    weights (a checkpoint runs in eager PyTorch or as its exported graph) rather than a compiled
    model, the file it needs beside it, and the words messages use for it."""

    name: str
    suffixes: tuple[str, ...]
    weights: bool
    description: str  # "a TensorRT engine"
    how_to_make: str  # "build one with msn-build-trt"
    companion: Callable[[Path], Path] | None = None  # the second file it needs beside it

    def companion_of(self, artifact: str | os.PathLike) -> Path | None:
        return self.companion(Path(artifact)) if self.companion else None


CHECKPOINT = ArtifactKind("checkpoint", (".pth", ".pt"), True, "a checkpoint",  # and known names (msn.checkpoint)
                          "train one, or use a known name such as official")
SAFETENSORS = ArtifactKind("safetensors", (SAFETENSORS_SUFFIX,), True, "a safetensors checkpoint",
                           "save a state dict with safetensors")
GRAPH = ArtifactKind("graph", (".onnx",), False, "an ONNX graph", "export one with export/to_onnx.py")
ENGINE = ArtifactKind("engine", (".plan", ".engine"), False, "a TensorRT engine", "build one with msn-build-trt",
                      companion=sidecar_path)
NCNN = ArtifactKind("ncnn", (".param",), False, "an ncnn graph", "export one with msn-export-ncnn",
                    companion=ncnn_weights_path)
ARTIFACT_KINDS = (CHECKPOINT, SAFETENSORS, GRAPH, ENGINE, NCNN)


def artifact_kind(artifact: str | os.PathLike) -> ArtifactKind:
    """The kind of an artifact, judged by its name: by suffix, and anything else a checkpoint (a
    pickled file under any name, or a known name)."""
    suffix = Path(artifact).suffix.lower()
    return next((kind for kind in ARTIFACT_KINDS if suffix in kind.suffixes), CHECKPOINT)


def companion_path(artifact: str | os.PathLike) -> Path | None:
    """The second file an artifact needs beside it (an engine's sidecar, an ncnn graph's weights)."""
    return artifact_kind(artifact).companion_of(artifact)


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
    from msn_deploy.msn import read_checkpoint

    kind = artifact_kind(artifact)
    if kind is GRAPH:
        graph = MSNGraph.read(artifact)
        return ArtifactHeader(graph.scale, graph.precision)
    if kind is ENGINE:
        sidecar = EngineSidecar.read(artifact)
        return ArtifactHeader(sidecar.scale, sidecar.precision)
    if kind is NCNN:
        return ArtifactHeader(_ncnn_scale(Path(artifact)), precision or DEFAULT_PRECISION)
    return ArtifactHeader(read_checkpoint(artifact).config.upscale, precision or DEFAULT_PRECISION)


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
