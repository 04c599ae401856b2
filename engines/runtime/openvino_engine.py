"""OpenVINO backend: the fastest CPU runtime for MSN's FP32 graph, one compiled model per shape.

OpenVINO's CPU plugin runs a graph compiled for one static shape about twice as fast as the same
graph left dynamic (measured on MSN), and a static compile takes about a second. So the engine
reshapes and compiles once per input shape and keeps the most recent ones in a bounded LRU cache,
and each compiled shape is kept on disk (`compile_cache_dir`, OpenVINO's own export of the compiled
model), so that the next process (the next command, a folder worker, a segment process, a Serve
replica) imports it in about a third of the time instead of compiling it again, without reading
the graph (OpenVINO's own cache would read, reshape and hash the model first: 0.2 s more per
process, measured).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import numpy as np

from msn_deploy.engines.runtime.base import DeviceError, Engine, ShapeProfile
from msn_deploy.engines.runtime.memory import cpu_peak_bytes_per_pixel
from msn_deploy.engines.runtime.shape_cache import ShapeCache
from msn_deploy.msn import UsageError
from msn_deploy.msn.checkpoint import cache_root
from msn_deploy.msn.files import atomic_output
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.threads import check_threads

log = logging.getLogger(__name__)

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
BLOB_SUFFIX = ".blob"  # a compiled shape on disk: `compile_cache_dir(...) / "1x3x360x640.blob"`
# One compile at a time in a process. OpenVINO's own compile cache switched the process's C locale
# while it wrote a blob, so two threads compiling at once left LC_CTYPE at "C" for good (measured:
# Python then read UTF-8 files as ASCII; a test still guards it). In turn, of two threads that ask
# for one shape, the second imports the first one's blob instead of compiling the shape again.
_COMPILING = threading.Lock()


def cpu_has_bf16(core: object | None = None) -> bool:
    """Whether OpenVINO's CPU plugin finds BF16 units here (AVX512_BF16 or AMX)."""
    if core is None:
        import openvino as ov

        core = ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_cache_dir(graph: bytes, version: str, device: str, config: dict[str, object]) -> Path:
    """Where the compiled shapes of `graph` under this configuration are kept, one blob per shape.

    The folder is named by all that decides a blob's contents: the graph's bytes, OpenVINO's
    version, the device and the whole configuration (OpenVINO's own cache keys leave settings out:
    a model compiled with INFERENCE_PRECISION_HINT f32 was loaded for a bf16 compile, measured
    with OpenVINO 2026.4)."""
    key = hashlib.sha256(graph)
    key.update(repr((version, device, sorted(config.items()))).encode())
    return cache_root() / "openvino" / key.hexdigest()[:32]


class OpenVINOEngine(Engine):
    backend = "openvino"

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> OpenVINOEngine:
        return cls(artifact, device, bf16=precision == "bf16", **options)

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        *,
        threads: int | None = None,
        hint: str = "LATENCY",
        cache_size: int = 4,
        disk_cache: bool = True,
        bf16: bool = False,
    ) -> None:
        """`device` is an OpenVINO device name ("cpu", "gpu" for Intel GPUs); `cache_size` bounds
        how many shapes stay compiled in memory, `disk_cache` whether compiled shapes are kept on
        disk for later processes (under $MSN_CACHE_DIR/openvino); `threads` caps the CPU plugin's
        inference threads (and leaves them unpinned, for engines that share the machine).
        `bf16` runs an FP32 graph on the CPU's BF16 units: about 1.5-2x faster, about 51 dB vs
        float64 (docs/BENCHMARKS.md); DeviceError on a CPU without them."""
        import openvino as ov

        self._requests: ShapeCache[object] = ShapeCache(cache_size, "OpenVINO model compiled")
        if hint.upper() not in HINTS:
            raise UsageError(f"hint must be one of {HINTS}, got {hint!r}")
        check_threads(threads)
        path = Path(path)
        graph = MSNGraph.read(path)
        self.core = ov.Core()
        self.ov_device = device.upper()
        if self.ov_device not in self.core.available_devices:
            raise DeviceError(f"OpenVINO has no device {device!r} here (has {self.core.available_devices})")
        # The graph is parsed only when a shape has to be compiled (a cached shape needs only its blob),
        # from these bytes: a Serve replica's copy of the file is gone by then.
        self._graph_bytes = path.read_bytes()
        self._model = None
        self.config: dict[str, object] = {"PERFORMANCE_HINT": hint.upper()}
        precision = graph.precision
        if bf16:
            precision = self._check_bf16(graph)
        if self.ov_device == "CPU":
            # Some CPUs default to bf16 execution, which would break FP32 parity: only when asked.
            self.config["INFERENCE_PRECISION_HINT"] = "bf16" if bf16 else "f32"
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = threads
                # A thread budget means other engines share the machine (workers, replicas). OpenVINO
                # would pin each engine's threads from the first core, so two one-thread engines in
                # two processes ran on one core at half speed each (measured); leave placement to the OS.
                self.config["ENABLE_CPU_PINNING"] = False
        self.cache_size = cache_size
        self.disk_cache = (compile_cache_dir(self._graph_bytes, ov.get_version(), self.ov_device, self.config)
                           if disk_cache else None)
        super().__init__(graph.scale, np.dtype(graph.io_dtype), ShapeProfile.of_graph(graph), precision)
        self.peak_bytes_per_pixel = cpu_peak_bytes_per_pixel(self.backend, device.lower())
        self.path, self.device, self.metadata = path, device, graph.metadata

    def _check_bf16(self, graph: MSNGraph) -> str:
        if graph.precision != "fp32":
            raise UsageError(f"bf16 runs an FP32 graph on the CPU's BF16 units; {graph.path} is "
                             f"{graph.precision.upper()}")
        if self.ov_device != "CPU":
            raise DeviceError(f"bf16 runs on OpenVINO's CPU device, not {self.ov_device}")
        if not cpu_has_bf16(self.core):
            raise DeviceError("this CPU has no BF16 units (AVX512_BF16 or AMX, by OpenVINO's capability list "
                              f"{self.core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}); use fp32")
        return "bf16"

    def describe(self) -> dict[str, object]:
        return super().describe() | {"device": self.ov_device, "compiled_shapes": self._requests.shapes()}

    def _request_for(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for `shape`, compiling (and evicting) as needed."""
        return self._requests.get(shape, lambda: self._compile(shape))

    def _compile(self, shape: tuple[int, ...]):
        started = time.perf_counter()
        blob = self.disk_cache / f"{'x'.join(map(str, shape))}{BLOB_SUFFIX}" if self.disk_cache else None
        with _COMPILING:
            compiled = self._import(blob) if blob is not None and blob.is_file() else None
            how = "loaded from the disk cache"
            if compiled is None:
                if self._model is None:
                    self._model = self.core.read_model(self._graph_bytes)
                model = self._model.clone()
                model.reshape({model.input(0).get_any_name(): list(shape)})
                compiled, how = self.core.compile_model(model, self.ov_device, self.config), "compiled"
                if blob is not None:
                    self._export(compiled, blob)
        log.info("openvino: %s for %s in %.2f s", how, "x".join(map(str, shape)), time.perf_counter() - started)
        return compiled.create_infer_request()

    def _import(self, blob: Path):
        """The compiled model kept in `blob`, or None (with a warning) when it cannot be loaded."""
        try:
            return self.core.import_model(blob.read_bytes(), self.ov_device, self.config)
        except (OSError, RuntimeError) as exc:
            log.warning("openvino: the cached %s cannot be loaded (%s); compiling it again", blob.name, exc)
            return None

    def _export(self, compiled, blob: Path) -> None:
        """Keep `compiled` in `blob` for later processes (written whole, then renamed: concurrent
        writers of one shape each leave a complete file)."""
        try:
            exported = compiled.export_model()
            blob.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(blob) as tmp:
                tmp.write_bytes(exported.getvalue() if hasattr(exported, "getvalue") else exported)
        except (OSError, RuntimeError) as exc:
            log.warning("openvino: the compiled shape is not kept on disk (%s)", exc)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        request = self._request_for(tuple(batch.shape))
        request.infer({0: batch})  # read in place, not copied
        # The output tensor is the request's own buffer, reused by the next call: copy it out.
        return np.array(request.get_output_tensor(0).data, copy=True)
