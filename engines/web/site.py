"""`export_site`: a folder any static host can serve: the page, its script, MSN's ONNX graph and
the onnxruntime-web runtime (taken from the npm registry at set-up time, never from a CDN)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from msn_deploy.engines.runtime.graph_cache import cached_graph
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP, check_tiling
from msn_deploy.msn import MissingFileError, UsageError
from msn_deploy.msn.files import check_folder_writable, give_usual_permissions
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.kinds import GRAPH, artifact_kind

log = logging.getLogger(__name__)

ORT_WEB_VERSION = "1.31.1"  # pinned in .ci/setup.sh, which installs it under .web/
ORT_WEB_ENV = "MSN_ORT_WEB_DIR"  # another onnxruntime-web dist/ folder
# The two builds the page loads: plain wasm (SIMD, threads where the page is cross-origin
# isolated), and the WebGPU build (with its own wasm, for the CPU parts).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
PAGE_FILES = ("index.html", "upscaler.js", "msn-web.js", "serve.py")
GRAPH_NAME = "msn_x4.onnx"
DEFAULT_TILE = 256  # LR px per tile in the browser: bounds its memory, as --tile does for the runtime
DEFAULT_MAX_PIXELS = 1_000_000  # LR px the page accepts (its output and blend buffers grow 16x that)


@dataclass(frozen=True)
class SiteOptions:
    # The graph the page downloads: fp16 (382 KiB) or fp32; None: fp16 from a checkpoint, a graph's own.
    precision: str | None = None
    tile: int = DEFAULT_TILE
    overlap: int = TILE_OVERLAP
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class WebSite:
    folder: Path
    graph: Path
    size_bytes: int

    def summary(self) -> str:
        return (f"Wrote {self.folder} ({self.size_bytes / 2**20:.1f} MiB): serve it from any static host, e.g. "
                f"python {self.folder / 'serve.py'} (cross-origin isolated, so the wasm backend uses threads)")


def ort_web_dist() -> Path:
    """The onnxruntime-web dist/ folder: $MSN_ORT_WEB_DIR, or the one .ci/setup.sh installed."""
    configured = os.environ.get(ORT_WEB_ENV)
    folder = Path(configured) if configured else \
        Path(__file__).resolve().parents[2] / ".web" / "node_modules" / "onnxruntime-web" / "dist"
    missing = [name for name in ORT_FILES if not (folder / name).is_file()]
    if missing:
        raise MissingFileError(f"onnxruntime-web {ORT_WEB_VERSION} is not at {folder} (missing {', '.join(missing)}); "
                               f"run: npm install --prefix .web onnxruntime-web@{ORT_WEB_VERSION} "
                               f"(or set {ORT_WEB_ENV} to its dist/ folder)")
    return folder


def check_options(options: SiteOptions) -> None:
    if options.precision not in (None, "fp16", "fp32"):
        raise UsageError(f"precision must be fp16 or fp32, got {options.precision!r}")
    check_tiling(options.tile, options.overlap)
    if options.max_pixels < options.tile * options.tile:
        raise UsageError(f"max pixels {options.max_pixels} is below one {options.tile}x{options.tile} tile")


def page_settings(scale: int, min_size: int, options: SiteOptions) -> dict[str, object]:
    """What msn-web.js upscales with, on the static page and msn-serve's alike: the graph's scale
    and smallest input, the tiling and the pixel limit."""
    return {"scale": scale, "min_size": min_size, "tile": options.tile, "overlap": options.overlap,
            "max_pixels": options.max_pixels}


def browser_refusal(graph: MSNGraph) -> str | None:
    """Why the page (the static site, or msn-serve's "on this device" mode) cannot run `graph`, or
    None: it feeds one float32 image, or one tile, of any size from MSN's minimum up."""
    if graph.io_dtype != "float32":
        return (f"{graph.path.name} takes {graph.io_dtype} tensors; the page gives float32: export the graph with "
                "float32 I/O (export/to_onnx.py's default)")
    n, h, w = graph.input_dims
    if h is not None or w is not None or n not in (None, 1):
        fixed = "x".join("?" if v is None else str(v) for v in (n, 3, h, w))
        return (f"{graph.path.name} takes only {fixed} inputs; the page feeds one image (or tile) of any size: "
                "export a dynamic graph (export/to_onnx.py without --static or --batch)")
    return None


def site_graph(model: str | os.PathLike, precision: str | None) -> MSNGraph | None:
    """The ONNX graph `model` already is (checked against `precision`), or None for a checkpoint
    (its graph comes from the cache); UsageError for what browsers cannot run."""
    kind = artifact_kind(model)
    if kind.weights:
        return None
    if kind is not GRAPH:
        raise UsageError(f"{model} is a compiled {kind.name}; the browser runs ONNX graphs: pass its checkpoint "
                         "or an .onnx graph")
    graph = MSNGraph.read(model)
    refusal = browser_refusal(graph)
    if refusal:
        raise UsageError(refusal)
    if precision not in (None, graph.precision):
        raise UsageError(f"{model} is an {graph.precision} graph; leave out the precision or pass the checkpoint "
                         f"to get {precision}")
    return graph


def export_site(folder: str | os.PathLike, model: str | os.PathLike = "official",
                options: SiteOptions | None = None) -> WebSite:
    """Write the in-browser upscaler into `folder` (new, or empty) for `model`, a checkpoint (or
    known name), whose graph comes from the cache (exported there once, as msn-upscale's default
    does), or an ONNX graph from export/to_onnx.py. Either is copied. Everything is checked before
    any work, and the folder appears complete or not at all."""
    options = options or SiteOptions()
    check_options(options)
    graph = site_graph(model, options.precision)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{folder} exists and is not an empty folder; choose a new one")
    # An empty folder that exists (the current one, a link to one) is filled where it is; a new
    # one is staged beside it and renamed into place.
    fill = folder.exists()
    parent = folder if fill else folder.parent
    if not parent.is_dir():
        raise MissingFileError(f"folder {parent} does not exist")
    check_folder_writable(parent)
    dist = ort_web_dist()
    if graph is None:
        graph = MSNGraph.read(cached_graph(model, options.precision or "fp16"))
    staging = Path(tempfile.mkdtemp(prefix=".msn-site.", dir=parent))
    give_usual_permissions(staging)  # a web server must read it
    try:
        shutil.copyfile(graph.path, staging / GRAPH_NAME)
        metadata = graph.metadata
        (staging / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(dist / name, staging / "ort" / name)
        page = resources.files("msn_deploy.engines.web") / "page"
        for name in PAGE_FILES:
            (staging / name).write_bytes((page / name).read_bytes())
        config = {"precision": metadata.precision, "graph": GRAPH_NAME, "ort_web": ORT_WEB_VERSION,
                  **page_settings(metadata.scale, metadata.min_input_size, options)}
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        if fill:  # config.json last: a folder half filled has no config
            for entry in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):
                os.replace(entry, folder / entry.name)
            staging.rmdir()
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return WebSite(folder, folder / GRAPH_NAME, size)


@contextlib.contextmanager
def serving(site: WebSite, timeout_s: float = 30) -> Iterator[str]:
    """The site's own serve.py on a free port of 127.0.0.1 (cross-origin isolated, as a user would
    run it), for scripts and tests: yields its URL, and stops it afterwards."""
    server = subprocess.Popen([sys.executable, str(site.folder / "serve.py"), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        yield server.stdout.readline().split()[1]  # "serving http://127.0.0.1:PORT/"
    finally:
        server.terminate()
        server.wait(timeout_s)
