"""Build a TensorRT (or TensorRT-RTX) engine from an MSN ONNX graph, with its JSON sidecar.

The sidecar records everything that invalidates an engine (TensorRT flavour and version,
target GPU or compute capabilities, precision, profile, ONNX sha256), so that the runtime can
say what to rebuild instead of failing inside TensorRT.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
from tqdm import tqdm

from export.metadata import read_metadata
from export.trt_compat import TensorRT
from msn import MIN_INPUT_SIZE
from msn.checkpoint import cache_dir
from msn.files import atomic_write_bytes

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "msn-engine/1"
Shape = tuple[int, int, int]  # N, H, W (LR px)


class BuildError(RuntimeError):
    """The ONNX graph could not be parsed or built, with the node or setting at fault."""


@dataclass(frozen=True)
class Profile:
    min: Shape = (1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
    opt: Shape = (1, 360, 640)
    max: Shape = (1, 1080, 1920)

    def __post_init__(self) -> None:
        if min(self.min[1:]) < MIN_INPUT_SIZE:
            raise ValueError(f"profile min {self.min} is below MSN's minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
        if min(self.min) < 1:
            raise ValueError(f"profile min {self.min} must be positive")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not lo <= mid <= hi:
                raise ValueError(f"profile must satisfy min <= opt <= max per axis: {self.min} / {self.opt} / {self.max}")

    def slug(self) -> str:
        return "_".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))


def parse_shape(text: str) -> Shape:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected NxHxW such as 1x360x640, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


@dataclass
class BuildSettings:
    """Everything that changes the built engine (all of it goes into the sidecar and the name)."""

    profile: Profile = field(default_factory=Profile)
    opt_level: int = 3
    workspace_mib: int = 2048
    compute_capabilities: list[str] = field(default_factory=list)  # TensorRT-RTX AOT targets


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_gpu() -> dict[str, object] | None:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return {"name": torch.cuda.get_device_name(), "compute_capability": f"SM{major}{minor}"}
    except ImportError:
        pass
    return None


def target_label(trt: TensorRT, settings: BuildSettings) -> str:
    if settings.compute_capabilities:
        return "+".join(c.lower() for c in settings.compute_capabilities)
    gpu = current_gpu()
    return f"{gpu['compute_capability']}".lower() if gpu else "current"


def default_engine_path(trt: TensorRT, settings: BuildSettings, onnx_sha: str, precision: str, scale: int) -> Path:
    """A cache path whose name spells out what invalidates the engine."""
    name = (
        f"msn_x{scale}_{precision}_{trt.label}_{target_label(trt, settings)}_"
        f"{settings.profile.slug()}_O{settings.opt_level}_{onnx_sha[:12]}.plan"
    )
    return cache_dir().parent / "engines" / name


def _progress_monitor(trt: TensorRT):
    base = trt.module.IProgressMonitor

    class TqdmProgress(base):  # type: ignore[misc, valid-type]
        """TensorRT's build phases as progress bars (nested phases get their own line)."""

        def __init__(self) -> None:
            base.__init__(self)
            self.bars: dict[str, tqdm] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            depth = len(self.bars)
            self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, position=depth, leave=False, file=sys.stderr)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.n = step + 1
                bar.refresh()
            return True

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmProgress()


def _parse(trt: TensorRT, network, logger, onnx_bytes: bytes, source: str) -> None:
    parser = trt.module.OnnxParser(network, logger)
    if parser.parse(onnx_bytes):
        return
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else str(err.node())
        problems.append(f"node {node or '?'} ({err.node_operator() if hasattr(err, 'node_operator') else '?'}): {err.desc()}")
    raise BuildError(f"{trt.label} could not parse {source}: " + "; ".join(problems or ["unknown parser error"]))


def _check_graph_shapes(network, profile: Profile) -> None:
    shape = network.get_input(0).shape
    for axis, i in ((0, 0), (2, 1), (3, 2)):  # NCHW axis, index into the profile's (N, H, W)
        fixed, lo, hi = shape[axis], profile.min[i], profile.max[i]
        if fixed != -1 and not (lo == hi == fixed):
            raise BuildError(f"the graph fixes axis {axis} to {fixed}, but the profile asks {lo}..{hi}; "
                             "export with dynamic shapes or match the profile to the graph")


def check_msn_graph(model: onnx.ModelProto, source: Path) -> tuple[str, int]:
    """Raise BuildError unless `model` is an MSN graph: one N x 3 x H x W input, one output with
    3 channels and H, W times the scale in its metadata. Return (precision, scale)."""
    meta = read_metadata(model)
    if meta.get("model_name") != "MSN" or not meta.get("scale", "").isdigit():
        raise BuildError(f"{source} is not an MSN graph exported by msn-deploy (no model_name/scale metadata); "
                         "export it with export/to_onnx.py")
    scale = int(meta["scale"])
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise BuildError(f"{source} has {len(graph.input)} inputs and {len(graph.output)} outputs; MSN has one of each")
    dims_in, dims_out = ([d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                         for v in (graph.input[0], graph.output[0]))
    if len(dims_in) != 4 or len(dims_out) != 4 or dims_in[1] != 3 or dims_out[1] != 3:
        raise BuildError(f"{source} maps {dims_in} to {dims_out}; MSN maps N x 3 x H x W to N x 3 x sH x sW")
    for lr, sr in zip(dims_in[2:], dims_out[2:]):
        if lr is not None and sr is not None and sr != lr * scale:
            raise BuildError(f"{source} maps {dims_in} to {dims_out}, which is not the x{scale} its metadata claims")
    return meta.get("precision", "fp32"), scale


def _build_failure_hint(trt: TensorRT, precision: str) -> str:
    if trt.flavour == "tensorrt_rtx" and precision == "fp32" and current_gpu() is None:
        # Measured with tensorrt_rtx 1.7.1.116: the FP32 build asks for its whole workspace as
        # device memory and fails with OutOfMemory on a machine without a GPU, at any workspace.
        return ("; TensorRT-RTX cannot build FP32 engines without a GPU (it fails with OutOfMemory at any "
                "--workspace): build the FP16 graph (export with --fp16), or build on a machine with an RTX GPU")
    return "; rerun with --verbose for TensorRT's log"


def build_engine(
    trt: TensorRT,
    onnx_path: Path,
    output: Path | None,
    settings: BuildSettings,
    *,
    timing_cache: Path | None = None,
    verbose: bool = False,
    command: str = "",
) -> tuple[Path, dict[str, object]]:
    """Parse, build and write the engine plus sidecar (both atomically); return (path, sidecar)."""
    onnx_bytes = Path(onnx_path).read_bytes()
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:
        raise BuildError(f"{onnx_path} is not a readable ONNX model: {exc}") from exc
    precision, scale = check_msn_graph(model, Path(onnx_path))
    graph_meta = read_metadata(model)
    onnx_sha = sha256_bytes(onnx_bytes)
    output = output or default_engine_path(trt, settings, onnx_sha, precision, scale)

    logger = trt.logger(verbose)
    builder = trt.module.Builder(logger)
    network = trt.create_network(builder)
    _parse(trt, network, logger, onnx_bytes, str(onnx_path))
    _check_graph_shapes(network, settings.profile)
    config = builder.create_builder_config()
    trt.set_workspace(config, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.opt_level
    trt.set_compute_capabilities(config, settings.compute_capabilities)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    to_nchw = lambda s: (s[0], 3, s[1], s[2])  # noqa: E731
    profile.set_shape(name, to_nchw(settings.profile.min), to_nchw(settings.profile.opt), to_nchw(settings.profile.max))
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(trt)

    log.info("building %s engine for %s (profile %s)", trt.label, target_label(trt, settings), settings.profile.slug())
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise BuildError(f"{trt.label} failed to build {onnx_path}" + _build_failure_hint(trt, precision))
    plan = bytes(serialized)
    if cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))

    tensors = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    tensors += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    io = [{"name": t.name, "mode": mode, "dtype": t.dtype.name.lower(), "shape": list(t.shape)} for mode, t in tensors]
    sidecar = {
        "format": SIDECAR_FORMAT,
        "tensorrt": {"flavour": trt.flavour, "version": trt.version},
        "target": {
            "compute_capabilities": settings.compute_capabilities,
            "gpu": current_gpu(),
        },
        "precision": precision,
        "scale": scale,
        "profile": asdict(settings.profile),
        "opt_level": settings.opt_level,
        "workspace_mib": settings.workspace_mib,
        "io": io,
        "onnx": {"path": str(onnx_path), "sha256": onnx_sha, "metadata": graph_meta},
        "engine_sha256": sha256_bytes(plan),
        "engine_bytes": len(plan),
        "build_seconds": round(seconds, 2),
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "command": command,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, plan)
    atomic_write_bytes(sidecar_path(output), json.dumps(sidecar, indent=2).encode())
    log.info("engine %s (%.1f MiB) built in %.1f s", output, len(plan) / 2**20, seconds)
    return output, sidecar


def sidecar_path(engine: Path) -> Path:
    return Path(str(engine) + ".json")
