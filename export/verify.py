"""Run an exported graph on ONNX Runtime against the PyTorch training form, and judge it.

The reference is the training form (the eager model as the authors wrote it), not the module
that was traced, so a wrong inference form fails here too, not only a wrong export of it.
ONNX Runtime is called directly: the exporter sits below the engines and uses none of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from msn_deploy.export.parity import ParityResult, Tolerance
from msn_deploy.msn import MSN, MSNError
from msn_deploy.msn.sample_images import smooth_test_image

log = logging.getLogger(__name__)


class VerificationError(MSNError):
    """The exported graph does not compute what the PyTorch model computes (exit 1: the work failed)."""


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    """One CPU run of the graph at `path` on x (cast to the graph's input dtype); float32 out."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
    return session.run(None, {graph_input.name: x.astype(dtype)})[0].astype(np.float32)


def verify_onnx(path: Path, model: MSN, fp16: bool, shape: tuple[int, int, int]) -> ParityResult:
    """Compare ONNX Runtime (CPU) with the float32 PyTorch training form on one input."""
    x = smooth_test_image(*shape)
    with torch.no_grad():
        expected = model.float()(x).numpy()
    result = Tolerance().judge(run_onnxruntime(path, x.numpy()), expected, "fp16" if fp16 else "fp32")
    log.info("verification on %s: %s", "x".join(map(str, shape)), result)
    return result
