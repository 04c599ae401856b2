"""Running an ncnn graph (`.param` + `.bin`) on ncnn's CPU path or a Vulkan device: the one place
that calls ncnn, for the exporter's verification and the engines' ncnn backend."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msn_deploy.msn.errors import MSNError, UsageError
from msn_deploy.msn.formats.kinds import ncnn_weights_path as weights_path
from msn_deploy.msn.formats.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParam

log = logging.getLogger(__name__)


class NoVulkanDevice(UsageError):
    """device="vulkan" on a machine where ncnn finds no Vulkan device."""


@contextlib.contextmanager
def stderr_to_debug_log(what: str) -> Iterator[None]:
    """ncnn writes its own lines to the process's stderr (file descriptor 2): while it works, they
    go to the debug log, so that a user sees this module's one-line error, not ncnn's words."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as said:
        os.dup2(said.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            said.seek(0)
            text = said.read().decode(errors="replace").strip()
            if text:
                log.debug("%s: %s", what, text)


@functools.cache
def vulkan_devices() -> tuple[str, ...]:
    """The Vulkan devices ncnn sees here (empty without a Vulkan loader or driver)."""
    import ncnn

    with stderr_to_debug_log("ncnn's Vulkan probe"):
        return tuple(ncnn.get_gpu_info(i).device_name() for i in range(ncnn.get_gpu_count()))


@dataclass(frozen=True)
class NcnnSettings:
    vulkan: bool = False  # False: ncnn's CPU path
    fp16: bool = False  # fp16 storage and arithmetic where the device has them; fp32 otherwise
    threads: int | None = None  # CPU threads (None: ncnn's default, the machine's big cores)
    gpu_index: int = 0


def runtime_form(graph: NcnnParam) -> NcnnParam:
    """The exported graph as this runtime loads it: GELUs computed exactly with Erf (ncnn's Vulkan
    GELU is an approximation), the statistics kept in FP32 when the rest runs in FP16, strided
    convolutions strided again (4% faster on the CPU). The file holds none of these, so that the
    older ncnn builds in apps load it (export.ncnn_portable)."""
    graph.exact_gelu()
    graph.fold_subsampling()
    graph.keep_statistics_fp32()
    return graph


class NcnnNet:
    """One loaded graph; `run` upscales one CHW float32 image in [0, 1]."""

    def __init__(self, param: Path, settings: NcnnSettings = NcnnSettings()) -> None:
        import ncnn

        devices = vulkan_devices() if settings.vulkan else ()
        if settings.vulkan and not devices:
            raise NoVulkanDevice("ncnn finds no Vulkan device here; install the GPU's Vulkan driver (Debian: "
                                 "mesa-vulkan-drivers and libvulkan1), or use --device cpu")
        if settings.vulkan and settings.gpu_index >= len(devices):
            listed = ", ".join(f"vulkan:{i} {name}" for i, name in enumerate(devices))
            raise NoVulkanDevice(f"no Vulkan device {settings.gpu_index}; ncnn finds {listed}")
        self.settings = settings
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_vulkan_compute = settings.vulkan
        # ncnn turns fp16 (and bf16) storage on by default where a CPU has it: FP32 must mean FP32.
        opt.use_fp16_storage = opt.use_fp16_arithmetic = opt.use_fp16_packed = settings.fp16
        opt.use_bf16_storage = False
        if settings.threads:
            opt.num_threads = settings.threads
        if settings.vulkan:
            self.net.set_vulkan_device(settings.gpu_index)
        graph = runtime_form(NcnnParam.read(Path(param)))
        with stderr_to_debug_log(f"ncnn loading {param}"):
            loaded = self.net.load_param_mem(graph.text()) == 0 and \
                self.net.load_model(str(weights_path(param))) == 0
        if not loaded:
            raise UsageError(f"ncnn could not load {param} with {weights_path(param).name}; export them again with "
                             "msn-export-ncnn")

    def run(self, chw: np.ndarray) -> np.ndarray:
        import ncnn

        # A Mat made from an array only borrows its memory (keep the array alive until the copy),
        # with a channel stride ncnn's Vulkan upload does not expect for odd sizes: clone() copies
        # it into a Mat of ncnn's own layout.
        array = np.ascontiguousarray(chw, dtype=np.float32)
        image = ncnn.Mat(array).clone()
        extractor = self.net.create_extractor()
        extractor.input(INPUT_BLOB, image)
        status, out = extractor.extract(OUTPUT_BLOB)
        if status != 0:
            raise MSNError(f"ncnn failed to run the graph (status {status})")
        return np.array(out, copy=True)
