"""CUDA graphs, captured once for every backend that replays them (PyTorch, TensorRT): MSN runs
about a thousand small kernels per image, and replaying them as one graph removes their launch
cost, which at video sizes is of the order of the work itself."""

from __future__ import annotations

from collections.abc import Callable

import torch


class GraphReplay:
    """One input shape's CUDA graph: a static input, the captured forward, its static output.
    `forward` runs on the current stream and returns a new output tensor."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> None:
        self.input = torch.zeros_like(example)
        # Warm up on a side stream first, as capture requires: cuDNN picks its algorithms, lazy
        # initialisation, compilation and TensorRT's first-run allocations happen here, never
        # inside the capture.
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                forward(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (a video encoder, a server's decoders) may use CUDA meanwhile.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = forward(self.input)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.input.copy_(batch)
        self.graph.replay()
        return self.output.clone()  # the static output is overwritten by the next replay
