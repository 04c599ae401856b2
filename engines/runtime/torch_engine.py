"""PyTorch backend: MSN's inference form on CPU or CUDA, FP32 or FP16, eager, compiled, or
replayed as CUDA graphs.

The GPU path that `engines.load(checkpoint, device="cuda", precision="fp16")` gives is the FP16
inference form, whose statistics stay float32 islands (msn.stats: a plain float16 model overflows
on bright photos), replayed as one CUDA graph per input shape. MSN runs about a thousand small
kernels per image; replaying them as one graph removes their launch cost, which at video sizes is
of the order of the work itself. A graph is captured the first time a shape is seen and kept for
the `cache_size` most recent shapes (each owns its memory pool), like the OpenVINO engine's
compiled shapes. `compile=True` runs torch.compile'd code (per static shape) inside the same
graphs; `channels_last` stores activations NHWC, which some GPUs' convolutions prefer.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from pathlib import Path

import numpy as np
import torch

from msn_deploy.engines.runtime.base import DeviceError, Engine, ShapeProfile
from msn_deploy.engines.runtime.cuda_graphs import GraphReplay
from msn_deploy.engines.runtime.memory import cpu_peak_bytes_per_pixel
from msn_deploy.engines.runtime.shape_cache import ShapeCache
from msn_deploy.engines.runtime.targets import BACKENDS
from msn_deploy.msn import MSN, MSNInference, UsageError, load_model, to_inference_form
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS, DEFAULT_PRECISION, check_precision
from msn_deploy.msn.threads import PASSIVE_WAITING, WAIT_POLICY_VARIABLE, check_threads

log = logging.getLogger(__name__)

DTYPES = dict(zip(ARTIFACT_PRECISIONS, (torch.float32, torch.float16)))


def check_torch_device(device: str) -> torch.device:
    """The torch device for a device name, or DeviceError for one torch cannot use here."""
    kind, _, index = device.partition(":")
    if kind not in BACKENDS["torch"].devices or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
                          "use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return torch.device("cuda", int(index) if index else torch.cuda.current_device())


def warn_if_threads_spin() -> None:
    """Say (once) when torch's CPU threads spin: 14x slower beside another busy process (msn.threads)."""
    if not PASSIVE_WAITING and torch.get_num_threads() > 1:
        _warn_spinning_threads()


@functools.cache
def _warn_spinning_threads() -> None:
    log.warning("torch was imported before msn, so its %d CPU threads spin while they wait and run many times "
                "slower when another process is busy: set %s=PASSIVE before importing torch, or use threads=1",
                torch.get_num_threads(), WAIT_POLICY_VARIABLE)


class TorchEngine(Engine):
    backend = "torch"

    @classmethod
    def open_on(cls, artifact: str | Path, device: str, precision: str | None, **options) -> TorchEngine:
        return cls(str(artifact), device=device, precision=precision or DEFAULT_PRECISION, **options)

    def __init__(
        self,
        model: MSN | MSNInference | str,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
        cuda_graphs: bool | None = None,
        channels_last: bool = False,
        inference_form: bool = True,
        cache_size: int = 4,
        threads: int | None = None,
    ) -> None:
        """`inference_form=False` runs the training form as loaded (the eager reference, FP32 only).
        `cuda_graphs` defaults to on for the inference form on a CUDA device; `cache_size` bounds
        how many input shapes keep a captured graph. `threads` sets torch's CPU thread budget,
        which is the whole process's: torch has one thread pool (msn.threads)."""
        self.tensor_device = check_torch_device(device)
        if check_threads(threads) is not None:
            torch.set_num_threads(threads)
        check_precision(precision, ARTIFACT_PRECISIONS)
        if precision == "fp16" and not inference_form:
            raise UsageError("FP16 needs the inference form: the training form's whole-image sums overflow float16")
        self._graphs: ShapeCache[GraphReplay] = ShapeCache(cache_size, "CUDA graph")
        on_cuda = self.tensor_device.type == "cuda"
        if cuda_graphs is None:
            cuda_graphs = on_cuda and inference_form
        if cuda_graphs and not on_cuda:
            raise DeviceError("CUDA graphs need a CUDA device; use device='cuda' or leave cuda_graphs off")
        if isinstance(model, str) or hasattr(model, "__fspath__"):
            model = load_model(model, deploy=inference_form)
        elif isinstance(model, MSN) and inference_form:
            model = to_inference_form(model)
        else:
            model = copy.deepcopy(model)  # .to(dtype) below must not change the caller's model
        dtype = DTYPES[precision]
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.model = model.to(device=self.tensor_device, dtype=dtype, memory_format=memory_format).eval()
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.form = "inference" if isinstance(model, MSNInference) else "training"
        self.compiled, self.cuda_graphs, self.channels_last = compile, cuda_graphs, channels_last
        self.cache_size = cache_size
        if not on_cuda:
            warn_if_threads_spin()
            if precision == "fp16":
                log.warning("FP16 on a CPU: PyTorch emulates float16 convolutions there (measured about 70x slower "
                            "than FP32); use FP32 on a CPU, or FP16 on a GPU (device='cuda')")
        super().__init__(model.config.upscale, np.float16 if precision == "fp16" else np.float32, ShapeProfile(),
                         precision)
        self.peak_bytes_per_pixel = cpu_peak_bytes_per_pixel(self.backend, self.tensor_device.type)

    def describe(self) -> dict[str, object]:
        return super().describe() | {
            "device": str(self.tensor_device), "form": self.form, "compile": self.compiled,
            "cuda_graphs": self.cuda_graphs, "channels_last": self.channels_last,
        }

    def _graph_for(self, batch: torch.Tensor) -> GraphReplay:
        return self._graphs.get(tuple(batch.shape), lambda: self._capture(batch))

    def _capture(self, batch: torch.Tensor) -> GraphReplay:
        started = time.perf_counter()
        graph = GraphReplay(self.forward, batch)
        log.info("torch: captured a CUDA graph for %s in %.2f s", "x".join(map(str, batch.shape)),
                 time.perf_counter() - started)
        return graph

    @torch.no_grad()
    def _infer(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            return self._graph_for(batch)(batch)
        return self.forward(batch)
