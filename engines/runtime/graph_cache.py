"""A checkpoint's ONNX graph, exported once into the cache, so that checkpoints run on the fast CPU runtimes.

Eager PyTorch is the slowest way to run MSN on a CPU: the same weights as an ONNX graph run 3-4x
faster on OpenVINO (docs/BENCHMARKS.md). So `engines.load(checkpoint)` on a CPU, and a checkpoint
given to the ONNX Runtime or OpenVINO backend, runs the checkpoint's inference form as a graph. The
graph is exported the first time (a log line says so and how long it took), verified against the
training form like any export, renamed into place only then, and kept in
`$MSN_CACHE_DIR/graphs/` under a name made of everything that decides its bytes: the
checkpoint's sha256, the exporter's version, torch's version and the precision. A lock makes
processes that start at once (video segment workers, Ray actors) export it once between them.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import logging
import os
import re
import time
from pathlib import Path

from msn_deploy.msn.checkpoint import cache_root, resolve_checkpoint, sha256_of
from msn_deploy.msn.formats.graph import EXPORTER, MSNGraph
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS, ArtifactError, check_precision

log = logging.getLogger(__name__)


def graph_cache_dir() -> Path:
    return cache_root() / "graphs"


def cached_graph_name(checkpoint_sha256: str, precision: str) -> str:
    """The cache's file name: sha256, exporter and torch version, precision (one graph for each)."""
    # torch's version from its metadata: a run of a cached graph never loads torch itself
    tools = re.sub(r"[^A-Za-z0-9.]+", "-", f"{EXPORTER} torch {importlib.metadata.version('torch')}")
    return f"msn-{checkpoint_sha256[:20]}-{tools}-{precision}.onnx"


def _usable(path: Path, checkpoint_sha256: str, *, say_why: bool = False) -> bool:
    """A cached graph that reads as an MSN graph of this checkpoint (a damaged one is exported again)."""
    if not path.is_file():
        return False
    try:
        return MSNGraph.read(path).metadata.checkpoint_sha256 == checkpoint_sha256
    except ArtifactError as exc:
        if say_why:
            log.warning("cached graph %s is unusable (%s); exporting it again", path, exc)
        return False


def cached_graph(checkpoint: str | os.PathLike, precision: str = "fp32", folder: Path | None = None) -> Path:
    """The verified ONNX graph of `checkpoint` (a file or known name) in `precision`, exported
    into `folder` (default: the cache's, `graph_cache_dir()`) the first time. Raises what
    `export.export_onnx` raises for a bad checkpoint."""
    check_precision(precision, ARTIFACT_PRECISIONS)
    source = resolve_checkpoint(checkpoint)
    sha256 = sha256_of(source)
    folder = folder or graph_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cached_graph_name(sha256, precision)
    if _usable(path, sha256):
        return path
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting it: wait, then use its graph
        if _usable(path, sha256, say_why=True):
            return path
        from msn_deploy.export import ExportOptions, export_onnx

        log.info("exporting %s to an %s ONNX graph for the fast CPU runtimes (once; kept as %s)",
                 checkpoint, precision.upper(), path)
        started = time.perf_counter()
        result = export_onnx(source, path, ExportOptions(fp16=precision == "fp16"))
        log.info("exported and verified in %.1f s (%s)", time.perf_counter() - started, result.verification)
    return path
