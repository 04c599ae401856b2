"""Write a Triton Inference Server model repository for MSN (`export.write_triton_repository`).

    python export/triton_repo.py --engine msn.plan -o model_repository            # tensorrt_plan, GPU
    python export/triton_repo.py --onnx msn_x4_fp32.onnx -o model_repository      # onnxruntime_onnx
    python export/triton_repo.py --model msn_x4_fp32.onnx --python -o model_repository   # engines.load

The repository is `<out>/<name>/config.pbtxt` plus `<out>/<name>/1/<artifact>`. I/O names and
dtypes come from the artifact (the engine's sidecar, or the graph); dims are -1 where the
artifact is dynamic. When the batch axis is dynamic, `max_batch_size` and `dynamic_batching`
come from the profile and the options; a fixed batch gives `max_batch_size: 0` and full dims.
The repository is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from msn_deploy.export import defaults
from msn_deploy.msn import MissingFileError, UsageError, read_checkpoint
from msn_deploy.msn.cli import non_negative_int, positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.kinds import ENGINE, GRAPH, artifact_kind, companion_path, locate_artifact
from msn_deploy.msn.formats.sidecar import EngineSidecar

log = logging.getLogger("msn.triton_repo")

_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
INT32_MAX = 2**31 - 1  # Triton's config fields (counts, sizes, delays) are 32-bit


class RepositoryError(UsageError):
    """An artifact or option that cannot become a Triton model, with what to do about it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # TYPE_FP32 / TYPE_FP16
    dims: list[int]  # full NCHW dims, -1 where dynamic


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # tensorrt_plan, onnxruntime_onnx or python
    artifact: Path
    input: TensorSpec
    output: TensorSpec
    max_batch: int | None  # None: the artifact fixes its batch; 0: no upper bound of its own


@dataclass(frozen=True)
class TritonRepository:
    """What write_triton_repository wrote."""

    model_dir: Path
    config: Path
    config_text: str
    spec: ModelSpec


def spec_from_engine(path: Path) -> ModelSpec:
    if not path.is_file():
        raise MissingFileError(f"engine {path} does not exist; build it with export/build_trt.py")
    sidecar = EngineSidecar.read(path)
    lo, hi = sidecar.profile["min"], sidecar.profile["max"]
    in_dims = [lo[0] if lo[0] == hi[0] else -1, 3] + [lo[i] if lo[i] == hi[i] else -1 for i in (1, 2)]
    out_dims = in_dims[:2] + [d * sidecar.scale if d != -1 else -1 for d in in_dims[2:]]
    specs = [TensorSpec(sidecar.tensor(mode).name, _TRITON_TYPES[sidecar.tensor(mode).dtype], dims)
             for mode, dims in (("input", in_dims), ("output", out_dims))]
    return ModelSpec("tensorrt_plan", path, specs[0], specs[1], hi[0] if in_dims[0] == -1 else None)


def spec_from_graph(path: Path, kind: str) -> ModelSpec:
    graph = MSNGraph.read(path)
    n, h, w = graph.input_dims
    dtype = _TRITON_TYPES[graph.io_dtype]
    in_dims = [n or -1, 3, h or -1, w or -1]
    out_dims = in_dims[:2] + [d * graph.scale if d != -1 else -1 for d in in_dims[2:]]
    return ModelSpec(kind, path, TensorSpec("input", dtype, in_dims), TensorSpec("output", dtype, out_dims),
                     None if n else 0)


def spec_for_python(path: Path) -> ModelSpec:
    """A model for engines.load: a graph keeps its own dims; a checkpoint or engine is served as
    float32 NCHW with a dynamic batch (engines.load converts)."""
    kind = artifact_kind(path)
    path = locate_artifact(path)
    if kind is GRAPH:
        graph = spec_from_graph(path, "python")
        return ModelSpec("python", path, graph.input, graph.output, 0)
    if kind is ENGINE:
        EngineSidecar.read(path)  # the replica needs it beside the plan: refuse now if it is unusable
    else:
        read_checkpoint(path)  # a foreign file fails here, not inside Triton
    dims = [-1, 3, -1, -1]
    return ModelSpec("python", path, TensorSpec("input", "TYPE_FP32", dims), TensorSpec("output", "TYPE_FP32", dims),
                     0)


def _pbtxt_string(value: str, what: str) -> str:
    """A protobuf text-format string literal (JSON's escapes are a subset of it)."""
    if any(ord(c) < 32 for c in value):
        raise RepositoryError(f"{what} {value!r} contains control characters")
    return json.dumps(value, ensure_ascii=False)


def config_text(spec: ModelSpec, name: str, max_batch: int, instances: int, kind: str, queue_delay_us: int,
                python_path: tuple[str, ...] = ()) -> str:
    """config.pbtxt for the spec (Triton's ModelConfig in protobuf text format)."""
    batching = spec.max_batch is not None
    if batching:
        batch = min(max_batch, spec.max_batch) if spec.max_batch else max_batch
        dims_of = lambda t: t.dims[1:]  # noqa: E731 - Triton adds the batch axis itself
    else:
        batch = 0
        dims_of = lambda t: t.dims  # noqa: E731
    platform = ('backend: "python"' if spec.kind == "python" else f'platform: "{spec.kind}"')
    lines = [f"name: {_pbtxt_string(name, 'model name')}", platform, f"max_batch_size: {batch}"]
    for role, tensor in (("input", spec.input), ("output", spec.output)):
        dims = ", ".join(map(str, dims_of(tensor)))
        lines.append(f'{role} [{{ name: "{tensor.name}" data_type: {tensor.dtype} dims: [ {dims} ] }}]')
    lines.append(f"instance_group [{{ count: {instances} kind: {kind} }}]")
    if batching and batch > 1:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}")
    if spec.kind == "python":
        artifact = _pbtxt_string(spec.artifact.name, "artifact name")
        lines.append(f'parameters {{ key: "artifact" value: {{ string_value: {artifact} }} }}')
        if python_path:
            joined = _pbtxt_string(":".join(python_path), "--python-path")
            lines.append(f'parameters {{ key: "python_path" value: {{ string_value: {joined} }} }}')
    return "\n".join(lines) + "\n"


def python_model_source() -> Path:
    """engines/serve/triton_model.py, found without importing it: it runs inside Triton's Python and
    imports the engines there, while the exporter only copies the file."""
    spec = importlib.util.find_spec("engines")
    if spec is None or not spec.submodule_search_locations:
        raise RepositoryError("msn-deploy's engines package is not installed; the Python backend needs it")
    return Path(next(iter(spec.submodule_search_locations))) / "serve" / "triton_model.py"


def _write(spec: ModelSpec, out: Path, name: str, config: str, overwrite: bool) -> Path:
    target = out / name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RepositoryError(f"{target} is not empty; use --overwrite to replace it")
    make_output_folder(out)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}."))
    try:
        (staging / "1").mkdir()
        artifact_name = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}.get(spec.kind,
                                                                                             spec.artifact.name)
        shutil.copyfile(spec.artifact, staging / "1" / artifact_name)
        if spec.kind == "python":
            companion = companion_path(spec.artifact)
            if companion is not None:  # an engine's sidecar beside it, where the replica reads it
                shutil.copyfile(companion, staging / "1" / companion.name)
            shutil.copyfile(python_model_source(), staging / "1" / "model.py")
        (staging / "config.pbtxt").write_text(config)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _check_count(value: int, what: str, minimum: int) -> None:
    if not minimum <= value <= INT32_MAX:
        raise RepositoryError(f"{what} must be {minimum}..{INT32_MAX}, got {value}")


def write_triton_repository(
    artifact: str | os.PathLike,
    output: str | os.PathLike,
    *,
    python: bool = False,
    name: str = "msn",
    max_batch: int = defaults.TRITON_MAX_BATCH,
    instances: int = 1,
    queue_delay_us: int = 100,
    kind: str = "auto",
    python_path: tuple[str, ...] = (),
    overwrite: bool = False,
) -> TritonRepository:
    """Write `<output>/<name>/` for a TensorRT plan (platform tensorrt_plan), an ONNX graph
    (onnxruntime_onnx), or, with `python=True`, anything engines.load takes, served by Triton's
    Python backend. `kind` is the instance kind: auto (GPU for plans, CPU otherwise), gpu or cpu.
    Raises RepositoryError / ArtifactError (UsageError) naming the problem, before writing."""
    artifact, output = Path(artifact), Path(output)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise RepositoryError(f"model name {name!r} may hold only letters, digits, '-' and '_'")
    _check_count(max_batch, "max batch", 1)
    _check_count(instances, "instances", 1)
    _check_count(queue_delay_us, "queue delay (us)", 0)
    if kind not in ("auto", "gpu", "cpu"):
        raise RepositoryError(f"instance kind must be auto, gpu or cpu, not {kind!r}")
    if python_path and not python:
        raise RepositoryError("--python-path goes with --python")
    if python:
        spec = spec_for_python(artifact)
    elif artifact_kind(artifact) is ENGINE:
        spec = spec_from_engine(artifact)
    else:
        spec = spec_from_graph(artifact, "onnxruntime_onnx")
    instance_kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}.get(kind) or (
        "KIND_GPU" if spec.kind == "tensorrt_plan" else "KIND_CPU")
    if spec.kind == "tensorrt_plan" and instance_kind == "KIND_CPU":
        raise RepositoryError("a TensorRT plan runs only on a GPU instance (--kind gpu)")
    config = config_text(spec, name, max_batch, instances, instance_kind, queue_delay_us,
                         tuple(str(Path(p).resolve()) for p in python_path))
    target = _write(spec, output, name, config, overwrite)
    return TritonRepository(target, target / "config.pbtxt", config, spec)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-triton", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--engine", type=Path, help="TensorRT plan with its .json sidecar")
    src.add_argument("--onnx", type=Path, help="ONNX graph from export/to_onnx.py")
    src.add_argument("--model", type=Path, help="with --python: a checkpoint, .onnx or .plan for engines.load")
    p.add_argument("--python", action="store_true", help="serve --model through Triton's Python backend")
    p.add_argument("-o", "--output", type=Path, required=True, help="model repository folder")
    p.add_argument("--name", default="msn", help="model name (default msn)")
    p.add_argument("--max-batch", type=positive_int, default=defaults.TRITON_MAX_BATCH,
                   help=f"max_batch_size when the batch is dynamic (default {defaults.TRITON_MAX_BATCH})")
    p.add_argument("--instances", type=positive_int, default=1, help="model instances")
    p.add_argument("--queue-delay-us", type=non_negative_int, default=100, help="dynamic batching queue delay")
    p.add_argument("--kind", choices=["auto", "gpu", "cpu"], default="auto",
                   help="instance kind (auto: GPU for engines, CPU otherwise)")
    p.add_argument("--python-path", action="append", default=[], metavar="DIR",
                   help="with --python: site-packages where msn-deploy is installed, for Triton's Python (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty model folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        if args.python != (args.model is not None):
            raise RepositoryError("--python goes with --model (and --model with --python)")
        artifact = args.engine or args.onnx or args.model
        if args.engine is not None and artifact_kind(args.engine) is not ENGINE:
            raise RepositoryError(f"--engine {args.engine} is not a TensorRT plan ({', '.join(ENGINE.suffixes)})")
        if args.onnx is not None and artifact_kind(args.onnx) is ENGINE:
            raise RepositoryError(f"--onnx {args.onnx} is a TensorRT plan; use --engine")
        repo = write_triton_repository(artifact, args.output, python=args.python, name=args.name,
                                       max_batch=args.max_batch, instances=args.instances,
                                       queue_delay_us=args.queue_delay_us, kind=args.kind,
                                       python_path=tuple(args.python_path), overwrite=args.overwrite)
        print(f"Wrote {repo.config} and {repo.model_dir}/1/")

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
