"""Batches on their way into engines that compute in torch (PyTorch, TensorRT, ONNX Runtime on
CUDA), and torch batches into host runtimes. Only these paths import torch (engines.runtime.base)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}


class PinnedStaging:
    """One reused page-locked host buffer per dtype for host -> GPU copies (grown, never shrunk):
    pinned memory copies at full PCIe speed, asynchronously, without the driver's extra staging."""

    def __init__(self) -> None:
        self._buffers: dict[torch.dtype, tuple[torch.Tensor, torch.cuda.Event]] = {}

    def to_device(self, batch: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        buffer, copied = self._buffers.get(dtype, (None, None))
        if buffer is None or buffer.numel() < batch.numel():
            buffer, copied = torch.empty(batch.numel(), dtype=dtype, pin_memory=True), torch.cuda.Event()
            self._buffers[dtype] = (buffer, copied)
        else:
            copied.synchronize()  # the previous copy out of this buffer has finished: refill it
        staged = buffer[: batch.numel()].view(batch.shape)
        staged.copy_(batch)
        out = staged.to(device, non_blocking=True)
        copied.record(torch.cuda.current_stream(device))
        return out


def to_torch_device(batch: np.ndarray | torch.Tensor, device: torch.device, io_dtype: np.dtype,
                    staging: PinnedStaging) -> torch.Tensor:
    """`batch` as a contiguous tensor on `device` in `io_dtype` (no copy when it is there already)."""
    dtype = TORCH_DTYPES[np.dtype(io_dtype)]
    if not isinstance(batch, torch.Tensor):
        with warnings.catch_warnings():  # read-only arrays (e.g. np.broadcast_to) are only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            batch = torch.from_numpy(np.ascontiguousarray(batch))  # torch takes no negative strides
    if batch.device.type == "cpu" and device.type == "cuda":
        return staging.to_device(batch, device, dtype)
    return batch.to(device=device, dtype=dtype).contiguous()


def to_host_array(batch: torch.Tensor) -> np.ndarray:
    """A torch batch as a numpy array for a host runtime (a view where torch allows one; dtypes
    numpy lacks, e.g. bfloat16, become float32)."""
    if batch.dtype not in TORCH_DTYPES.values():
        batch = batch.float()
    return batch.cpu().numpy()
