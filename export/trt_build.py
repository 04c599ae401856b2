"""Build a TensorRT (or TensorRT-RTX) engine from an MSN ONNX graph, with its JSON sidecar.

The sidecar (`msn.formats.sidecar.EngineSidecar`) records everything that invalidates an engine
(TensorRT flavour and version, target GPU or compute capabilities, precision, profile, ONNX
sha256), so that the runtime can say what to rebuild instead of failing inside TensorRT.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from msn_deploy.export import defaults
from msn_deploy.msn import MIN_INPUT_SIZE, MSNError, UsageError, sha256_of
from msn_deploy.msn.checkpoint import cache_dir
from msn_deploy.msn.files import atomic_write_bytes, check_writable, refuse_overwriting_inputs
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.precision import canonical_dtype
from msn_deploy.msn.formats.sidecar import EngineSidecar, TensorIO, sidecar_path
from msn_deploy.msn.formats.tensorrt import TensorRT, current_gpu, import_tensorrt

log = logging.getLogger(__name__)

Shape = tuple[int, int, int]  # N, H, W (LR px)


class BuildError(MSNError):
    """The ONNX graph could not be parsed or built, with the node or setting at fault (exit 1)."""


@dataclass(frozen=True)
class Profile:
    """The optimisation profile: smallest, typical and largest input, each (N, H, W) in LR px."""

    min: Shape = defaults.PROFILE_MIN
    opt: Shape = defaults.PROFILE_OPT
    max: Shape = defaults.PROFILE_MAX

    def __post_init__(self) -> None:
        if min(self.min[1:]) < MIN_INPUT_SIZE:
            raise UsageError(f"profile min {self.min} is below MSN's minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
        if min(self.min) < 1:
            raise UsageError(f"profile min {self.min} must be positive")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not lo <= mid <= hi:
                raise UsageError("profile must satisfy min <= opt <= max per axis: "
                                 f"{self.min} / {self.opt} / {self.max}")

    def slug(self) -> str:
        return "_".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class BuildSettings:
    """How `build_engine` builds. Every field but `timing_cache` changes the engine, so each goes
    into the sidecar and the default file name."""

    profile: Profile = field(default_factory=Profile)
    opt_level: int = defaults.OPT_LEVEL
    workspace_mib: int = defaults.WORKSPACE_MIB
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX AOT targets, e.g. ("SM86", "SM89")
    backend: str = "auto"  # tensorrt, tensorrt_rtx, or auto (tensorrt when installed)
    timing_cache: Path | None = None  # read and updated when given

    def __post_init__(self) -> None:
        if not 0 <= self.opt_level <= 5:
            raise UsageError(f"optimisation level must be 0..5, not {self.opt_level}")
        if self.workspace_mib < 1:
            raise UsageError(f"workspace must be at least 1 MiB, not {self.workspace_mib}")
        object.__setattr__(self, "compute_capabilities", tuple(c.upper() for c in self.compute_capabilities))


@dataclass(frozen=True)
class EngineResult:
    """What build_engine wrote: the plan, its sidecar (also as an object) and the build time."""

    path: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    size_bytes: int
    seconds: float


def target_label(settings: BuildSettings) -> str:
    if settings.compute_capabilities:
        return "+".join(c.lower() for c in settings.compute_capabilities)
    gpu = current_gpu()
    return f"{gpu['compute_capability']}".lower() if gpu else "current"


def default_engine_path(trt: TensorRT, settings: BuildSettings, onnx_sha: str, precision: str, scale: int) -> Path:
    """A cache path whose name spells out what invalidates the engine."""
    name = (
        f"msn_x{scale}_{precision}_{trt.label}_{target_label(settings)}_"
        f"{settings.profile.slug()}_O{settings.opt_level}_{onnx_sha[:12]}.plan"
    )
    return cache_dir().parent / "engines" / name


def check_output_paths(path: str | os.PathLike | None, timing_cache: Path | None,
                       inputs: list[str | os.PathLike | None]) -> None:
    """Every problem with where the engine, its sidecar and the timing cache go, before any work."""
    if path is not None:
        check_writable(path)
        check_writable(sidecar_path(path))
        refuse_overwriting_inputs([path, sidecar_path(path)], [*inputs, timing_cache])
    if timing_cache is not None:
        check_writable(timing_cache)
        refuse_overwriting_inputs([timing_cache], inputs)


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
        operator = err.node_operator() if hasattr(err, "node_operator") else "?"
        problems.append(f"node {node or '?'} ({operator}): {err.desc()}")
    raise BuildError(f"{trt.label} could not parse {source}: " + "; ".join(problems or ["unknown parser error"]))


def _check_graph_shapes(network, profile: Profile) -> None:
    shape = network.get_input(0).shape
    for axis, i in ((0, 0), (2, 1), (3, 2)):  # NCHW axis, index into the profile's (N, H, W)
        fixed, lo, hi = shape[axis], profile.min[i], profile.max[i]
        if fixed != -1 and not (lo == hi == fixed):
            raise UsageError(f"the graph fixes axis {axis} to {fixed}, but the profile asks {lo}..{hi}; "
                             "export with dynamic shapes or match the profile to the graph")


def _build_failure_hint(trt: TensorRT, precision: str) -> str:
    if trt.flavour == "tensorrt_rtx" and precision == "fp32" and current_gpu() is None:
        # Measured with tensorrt_rtx 1.7.1.116: the FP32 build asks for its whole workspace as
        # device memory and fails with OutOfMemory on a machine without a GPU, at any workspace.
        return ("; TensorRT-RTX cannot build FP32 engines without a GPU (it fails with OutOfMemory at any "
                "--workspace): build the FP16 graph (export with --fp16), or build on a machine with an RTX GPU")
    return "; rerun with --verbose for TensorRT's log"


def build_engine(onnx_path: str | os.PathLike, path: str | os.PathLike | None = None,
                 settings: BuildSettings | None = None, *, command: str = "") -> EngineResult:
    """Build a TensorRT / TensorRT-RTX engine of an MSN graph from export_onnx, plus its sidecar.

    Without `path` the engine goes to the cache under a name that spells out what invalidates
    it. Both files are written atomically. `command` is recorded in the sidecar. Raises
    UsageError subclasses (no TensorRT, not an MSN graph, bad paths) before building and
    BuildError when TensorRT cannot parse or build the graph. TensorRT's own log is shown at
    DEBUG level (--verbose).
    """
    settings = settings or BuildSettings()
    onnx_path = Path(onnx_path)
    trt = import_tensorrt(settings.backend)
    graph = MSNGraph.read(onnx_path)
    check_output_paths(path, settings.timing_cache, [onnx_path])
    onnx_bytes = onnx_path.read_bytes()
    onnx_sha = sha256_of(onnx_bytes)
    output = Path(path) if path is not None else default_engine_path(trt, settings, onnx_sha, graph.precision,
                                                                     graph.scale)

    logger = trt.logger(log.isEnabledFor(logging.DEBUG))
    builder = trt.module.Builder(logger)
    network = trt.create_network(builder)
    _parse(trt, network, logger, onnx_bytes, str(onnx_path))
    _check_graph_shapes(network, settings.profile)
    config = builder.create_builder_config()
    trt.set_workspace(config, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.opt_level
    trt.set_compute_capabilities(config, list(settings.compute_capabilities))
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    to_nchw = lambda s: (s[0], 3, s[1], s[2])  # noqa: E731
    profile.set_shape(name, to_nchw(settings.profile.min), to_nchw(settings.profile.opt), to_nchw(settings.profile.max))
    config.add_optimization_profile(profile)
    cache = None
    timing_cache = settings.timing_cache
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(trt)

    log.info("building %s engine for %s (profile %s)", trt.label, target_label(settings), settings.profile.slug())
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise BuildError(f"{trt.label} failed to build {onnx_path}" + _build_failure_hint(trt, graph.precision))
    plan = bytes(serialized)
    if cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))

    tensors = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    tensors += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    sidecar = EngineSidecar(
        flavour=trt.flavour, version=trt.version, compute_capabilities=list(settings.compute_capabilities),
        gpu=current_gpu(), precision=graph.precision, scale=graph.scale,
        profile={k: list(v) for k, v in asdict(settings.profile).items()}, opt_level=settings.opt_level,
        workspace_mib=settings.workspace_mib,
        io=[TensorIO(t.name, mode, canonical_dtype(t.dtype.name.lower()), list(t.shape)) for mode, t in tensors],
        onnx_path=str(onnx_path), onnx_sha256=onnx_sha, onnx_metadata=graph.metadata.to_props(),
        engine_sha256=sha256_of(plan), engine_bytes=len(plan), build_seconds=round(seconds, 2),
        built_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), host=platform.node(),
        command=command,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, plan)
    side = sidecar.write(output)
    log.info("engine %s (%.1f MiB) built in %.1f s", output, len(plan) / 2**20, seconds)
    return EngineResult(output, side, sidecar, len(plan), seconds)
