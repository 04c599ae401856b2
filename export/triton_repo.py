"""Write a Triton Inference Server model repository for MSN.

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
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engines.graph_info import read_graph_info
from export.trt_build import sidecar_path
from msn.arguments import non_negative_int, positive_int
from msn.files import check_folder_writable
from msn.logs import start_cli

log = logging.getLogger("msn.triton_repo")

_TRITON_TYPES = {"float32": "TYPE_FP32", "float": "TYPE_FP32", "float16": "TYPE_FP16", "half": "TYPE_FP16"}


class RepositoryError(ValueError):
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
    max_batch: int | None  # None: the artifact fixes its batch


def spec_from_engine(path: Path) -> ModelSpec:
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        raise RepositoryError(f"{path} and its sidecar {side.name} must exist; build them with export/build_trt.py")
    sidecar = json.loads(side.read_text())
    io = {t["mode"]: t for t in sidecar["io"]}
    lo, hi = sidecar["profile"]["min"], sidecar["profile"]["max"]
    scale = sidecar["scale"]
    in_dims = [lo[0] if lo[0] == hi[0] else -1, 3] + [lo[i] if lo[i] == hi[i] else -1 for i in (1, 2)]
    out_dims = in_dims[:2] + [d * scale if d != -1 else -1 for d in in_dims[2:]]
    specs = [TensorSpec(io[m]["name"], _TRITON_TYPES[io[m]["dtype"]], d) for m, d in (("input", in_dims),
                                                                                       ("output", out_dims))]
    return ModelSpec("tensorrt_plan", path, specs[0], specs[1], hi[0] if in_dims[0] == -1 else None)


def spec_from_graph(path: Path, kind: str) -> ModelSpec:
    info = read_graph_info(path)
    n, h, w = info.profile.max
    dtype = _TRITON_TYPES[str(info.io_dtype)]
    in_dims = [n or -1, 3, h or -1, w or -1]
    out_dims = in_dims[:2] + [d * info.scale if d != -1 else -1 for d in in_dims[2:]]
    return ModelSpec(kind, path, TensorSpec("input", dtype, in_dims), TensorSpec("output", dtype, out_dims),
                     None if n else 0)


def config_text(spec: ModelSpec, name: str, max_batch: int, instances: int, kind: str, queue_delay_us: int,
                python_path: list[str] = ()) -> str:
    """config.pbtxt for the spec (Triton's ModelConfig in protobuf text format)."""
    batching = spec.max_batch is not None
    if batching:
        batch = min(max_batch, spec.max_batch) if spec.max_batch else max_batch
        dims_of = lambda t: t.dims[1:]  # noqa: E731 - Triton adds the batch axis itself
    else:
        batch = 0
        dims_of = lambda t: t.dims  # noqa: E731
    platform = ('backend: "python"' if spec.kind == "python" else f'platform: "{spec.kind}"')
    lines = [f'name: "{name}"', platform, f"max_batch_size: {batch}"]
    for role, tensor in (("input", spec.input), ("output", spec.output)):
        dims = ", ".join(map(str, dims_of(tensor)))
        lines.append(f'{role} [{{ name: "{tensor.name}" data_type: {tensor.dtype} dims: [ {dims} ] }}]')
    lines.append(f"instance_group [{{ count: {instances} kind: {kind} }}]")
    if batching and batch > 1:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}")
    if spec.kind == "python":
        lines.append(f'parameters {{ key: "artifact" value: {{ string_value: "{spec.artifact.name}" }} }}')
        if python_path:
            lines.append(f'parameters {{ key: "python_path" value: {{ string_value: "{":".join(python_path)}" }} }}')
    return "\n".join(lines) + "\n"


PYTHON_MODEL = '''"""Triton Python-backend model over msn-deploy's engines.load (written by export/triton_repo.py).

Tensors cross the stub through DLPack: its numpy conversions (built for numpy 1) return empty or
wrong buffers under numpy 2 (measured with Triton 2.51's stub).
"""

import json
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        # Where msn-deploy is installed, when Triton's Python does not have it (--python-path).
        sys.path[:0] = [p for p in parameters.get("python_path", "").split(":") if p and p not in sys.path]
        import torch

        import engines

        self.torch = torch
        folder = Path(args["model_repository"]) / args["model_version"]
        device = "cuda" if args["model_instance_kind"] == "GPU" else "cpu"
        self.engine = engines.load(folder / parameters["artifact"], device=device)

    def execute(self, requests):
        dlpack = self.torch.utils.dlpack
        responses = []
        for request in requests:
            x = dlpack.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input").to_dlpack())
            try:
                y = self.engine(x.float().cpu().contiguous()).contiguous()
                out = pb_utils.Tensor.from_dlpack("output", dlpack.to_dlpack(y))
                responses.append(pb_utils.InferenceResponse([out]))
            except (ValueError, RuntimeError) as exc:  # bad input or output: an error response, not a crash
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
'''


def write_repository(spec: ModelSpec, out: Path, name: str, config: str, overwrite: bool) -> Path:
    target = out / name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RepositoryError(f"{target} is not empty; use --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    check_folder_writable(out)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}."))
    try:
        (staging / "1").mkdir()
        artifact_name = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}.get(spec.kind,
                                                                                             spec.artifact.name)
        shutil.copyfile(spec.artifact, staging / "1" / artifact_name)
        if spec.kind == "python":
            if spec.artifact.suffix.lower() in (".plan", ".engine"):
                shutil.copyfile(sidecar_path(spec.artifact), staging / "1" / sidecar_path(spec.artifact).name)
            (staging / "1" / "model.py").write_text(PYTHON_MODEL)
        (staging / "config.pbtxt").write_text(config)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--engine", type=Path, help="TensorRT plan with its .json sidecar")
    src.add_argument("--onnx", type=Path, help="ONNX graph from export/to_onnx.py")
    src.add_argument("--model", type=Path, help="with --python: a checkpoint, .onnx or .plan for engines.load")
    p.add_argument("--python", action="store_true", help="serve --model through Triton's Python backend")
    p.add_argument("-o", "--output", type=Path, required=True, help="model repository folder")
    p.add_argument("--name", default="msn", help="model name (default msn)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="max_batch_size when the batch is dynamic")
    p.add_argument("--instances", type=positive_int, default=1, help="model instances")
    p.add_argument("--queue-delay-us", type=non_negative_int, default=100, help="dynamic batching queue delay")
    p.add_argument("--kind", choices=["auto", "gpu", "cpu"], default="auto",
                   help="instance kind (auto: GPU for engines, CPU otherwise)")
    p.add_argument("--python-path", action="append", default=[], metavar="DIR",
                   help="with --python: a folder for Triton's Python to import msn-deploy from (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty model folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_cli(args.verbose)
    try:
        if args.python != (args.model is not None):
            raise RepositoryError("--python goes with --model (and --model with --python)")
        if not args.name.replace("_", "").replace("-", "").isalnum():
            raise RepositoryError(f"model name {args.name!r} may hold only letters, digits, '-' and '_'")
        if args.engine:
            spec = spec_from_engine(args.engine)
        elif args.onnx:
            spec = spec_from_graph(args.onnx, "onnxruntime_onnx")
        else:
            if not args.model.is_file():
                raise FileNotFoundError(f"{args.model} does not exist")
            if args.model.suffix.lower() == ".onnx":
                graph = spec_from_graph(args.model, "python")
                spec = ModelSpec("python", args.model, graph.input, graph.output, 0)
            else:  # a checkpoint or an engine: float32 NCHW with dynamic batch, as engines.load serves it
                dims = [-1, 3, -1, -1]
                spec = ModelSpec("python", args.model, TensorSpec("input", "TYPE_FP32", dims),
                                 TensorSpec("output", "TYPE_FP32", dims), 0)
        kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}.get(args.kind) or (
            "KIND_GPU" if spec.kind == "tensorrt_plan" else "KIND_CPU")
        if spec.kind == "tensorrt_plan" and kind == "KIND_CPU":
            raise RepositoryError("a TensorRT plan runs only on a GPU instance (--kind gpu)")
        if args.python_path and not args.python:
            raise RepositoryError("--python-path goes with --python")
        config = config_text(spec, args.name, args.max_batch, args.instances, kind, args.queue_delay_us,
                             [str(Path(p).resolve()) for p in args.python_path])
        target = write_repository(spec, args.output, args.name, config, args.overwrite)
    except (RepositoryError, OSError, KeyError, json.JSONDecodeError) as exc:
        log.error("%s", exc)
        return 2
    print(f"Wrote {target}/config.pbtxt and {target}/1/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
