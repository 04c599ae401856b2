"""An ncnn graph run the way chaiNNer runs it, in chaiNNer's own ncnn build: the PyPI wheel
ncnn-vulkan==2023.6.18, installed by .ci/setup.sh into .chainner-ncnn/ (a folder of its own: the
wheel also ships a top-level `ncnn` that would shadow the current one). It runs in a subprocess
(chainner_ncnn_worker.py) so that the two ncnn builds never share a process.

As chaiNNer's NCNN Upscale Image node does: 8-bit RGB pixels in, scaled to [0, 1] by ncnn, the
blobs named by the graph's first and last layers, FP16 storage and arithmetic exactly when the
graph's first convolution holds float16 weights, Vulkan device 0 or the CPU.

    from msn_deploy.validate.core.chainner_ncnn import run_like_chainner
    sr = run_like_chainner(Path("msn_x4.param"), rgb_uint8, vulkan=True)  # HxWx3 float32
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from msn_deploy.msn.errors import MSNError, UsageError
from msn_deploy.msn.formats.kinds import ncnn_weights_path
from msn_deploy.msn.formats.ncnn_param import CONVOLUTIONS, NcnnParam
from msn_deploy.msn.formats.ncnn_weights import is_fp16, read_weights

CHAINNER_NCNN = "ncnn-vulkan==2023.6.18"  # chaiNNer's pin (its requirements); .ci/setup.sh installs it
CHAINNER_NCNN_ENV = "MSN_CHAINNER_NCNN_DIR"  # another folder that wheel was installed into (pip --target)
WORKER = Path(__file__).with_name("chainner_ncnn_worker.py")
RUN_TIMEOUT_S = 600


class ChainnerNcnnMissing(UsageError):
    """chaiNNer's ncnn wheel is not installed where this module looks."""


class ChainnerNcnnRefused(MSNError):
    """chaiNNer's ncnn build did not load or run the graph; the message holds ncnn's own words."""


def chainner_ncnn_dir() -> Path:
    """The folder chaiNNer's ncnn wheel is in: $MSN_CHAINNER_NCNN_DIR, or the one .ci/setup.sh filled."""
    configured = os.environ.get(CHAINNER_NCNN_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / ".chainner-ncnn"


def chainner_ncnn_missing() -> str | None:
    """Why chaiNNer's ncnn cannot run here, or None."""
    folder = chainner_ncnn_dir()
    if not (folder / "ncnn_vulkan").is_dir():
        return (f"chaiNNer's ncnn ({CHAINNER_NCNN}) is not installed in {folder}: run .ci/setup.sh, or "
                f"pip install --no-deps --target DIR {CHAINNER_NCNN} and set {CHAINNER_NCNN_ENV}=DIR")
    return None


def graph_is_fp16(param: Path) -> bool:
    """What chaiNNer runs a graph in: FP16 when its first convolution's weights are float16."""
    graph = NcnnParam.read(param)
    chunks = read_weights(graph, ncnn_weights_path(param))
    return next(is_fp16(chunk) for layer, chunk in zip(graph.layers, chunks, strict=True) if layer.type in CONVOLUTIONS)


def run_like_chainner(param: Path, rgb: np.ndarray, vulkan: bool = False) -> np.ndarray:
    """Upscale one HxWx3 uint8 RGB image with the graph `param` (+ its .bin) in chaiNNer's ncnn;
    the float32 HxWx3 output in [0, 1] (unclipped), as chaiNNer receives it."""
    missing = chainner_ncnn_missing()
    if missing:
        raise ChainnerNcnnMissing(missing)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UsageError(f"chaiNNer feeds ncnn 8-bit RGB images (HxWx3 uint8), not {rgb.dtype} {rgb.shape}")
    graph = NcnnParam.read(param)
    blobs = [graph.layers[0].tops[0], graph.layers[-1].tops[0]]  # chaiNNer's choice of input and output
    with tempfile.TemporaryDirectory(prefix="msn-chainner-") as tmp:
        source, result = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(source, rgb)
        command = [sys.executable, str(WORKER), str(param), str(ncnn_weights_path(param)), *blobs, str(source),
                   str(result), "vulkan" if vulkan else "cpu", "fp16" if graph_is_fp16(param) else "fp32"]
        env = {**os.environ, "PYTHONPATH": str(chainner_ncnn_dir())}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise ChainnerNcnnRefused(f"chaiNNer's ncnn did not finish {param.name} in {RUN_TIMEOUT_S} s") from None
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip().splitlines()
            raise ChainnerNcnnRefused(f"chaiNNer's ncnn could not run {param.name}: {' | '.join(said[-6:])}")
        return np.load(result)
