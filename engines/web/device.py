"""The "on this device" mode of msn-serve's page: the service hands the browser the ONNX graph of
the model it serves, the onnxruntime-web files and the page's module, and the photo stays in the
browser. The graph is found here, where the service starts; the runtime files are read where the
ingress runs (42 MiB: too large to ship with the deployment, as the model is)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from msn_deploy.engines.runtime.graph_cache import cached_graph
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.web.site import ORT_FILES, SiteOptions, browser_refusal, ort_web_dist, page_settings
from msn_deploy.msn import MSNError
from msn_deploy.msn.formats.graph import MSNGraph
from msn_deploy.msn.formats.kinds import GRAPH, artifact_kind

MODULE_NAME = "msn-web.js"  # the page's upscaling module, shared with the static site
MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}


@dataclass(frozen=True)
class BrowserGraph:
    """The graph the browser runs, or why there is none."""

    data: bytes | None
    scale: int = 0
    min_size: int = 0
    reason: str = ""


def browser_graph(model: ModelFiles, precision: str | None) -> BrowserGraph:
    """The ONNX graph of the model a service runs: an ONNX model as it is, a checkpoint's graph in
    the service's precision (exported once into the cache); none for compiled artifacts."""
    kind = artifact_kind(model.name)
    if not (kind is GRAPH or kind.weights):
        return BrowserGraph(None, reason=f"this service runs {model.name}, a compiled {kind.name}; browsers need "
                                         "its ONNX graph or checkpoint (serve one of those to offer this mode)")
    try:
        if kind is GRAPH:
            data = model.data
            graph = MSNGraph.from_bytes(data, model.name)
        else:
            path = cached_graph(model.source, precision or "fp32")
            data = path.read_bytes()
            graph = MSNGraph.read(path)
    except MSNError as exc:
        return BrowserGraph(None, reason=f"{model.name} cannot be given to browsers ({exc})")
    refusal = browser_refusal(graph)
    if refusal:
        return BrowserGraph(None, reason=refusal)
    return BrowserGraph(data, graph.scale, graph.metadata.min_input_size)


def browser_runtime(graph: BrowserGraph) -> tuple[Path | None, str]:
    """The onnxruntime-web folder on this machine, or why the mode is off (no graph, no runtime)."""
    if graph.data is None:
        return None, graph.reason
    try:
        return ort_web_dist(), ""
    except MSNError as exc:
        return None, f"this service has no onnxruntime-web: {exc}"


class BrowserFiles:
    """What the page's "on this device" mode fetches from the service, and whether it can."""

    def __init__(self, graph: BrowserGraph) -> None:
        self.graph = graph
        self.ort, self.reason = browser_runtime(graph)
        self.module = (resources.files("msn_deploy.engines.web") / "page" / MODULE_NAME).read_bytes()  # read once

    @property
    def available(self) -> bool:
        return not self.reason

    def config(self, graph_url: str) -> dict[str, object]:
        """The page's settings for the mode (the browser's own pixel limit and tile size)."""
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {"available": True, "graph": graph_url, "graph_bytes": len(self.graph.data),
                **page_settings(self.graph.scale, self.graph.min_size, SiteOptions())}

    def runtime_file(self, name: str) -> Path | None:
        """An onnxruntime-web file the page loads (only those: never a path the client makes up)."""
        return self.ort / name if self.ort is not None and name in ORT_FILES else None


def media_type(name: str) -> str:
    return MEDIA_TYPES[Path(name).suffix]
