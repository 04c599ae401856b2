"""Which apps can load an ncnn graph, derived from the graph itself: each app's ncnn build registers
some layer types (and chaiNNer reads the .param in Python first, knowing each layer's parameter
ids); a graph loads in an app when all its layers and parameters are known there. The apps' lists
are in ncnn_apps.json, each with where it comes from.

    from msn_deploy.export.ncnn_apps import app_table
    print("\\n".join(app_table(NcnnParam.read(Path("msn_x4.param")))))
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources

from msn_deploy.msn.formats.ncnn_param import CONVOLUTIONS, NcnnParam


@dataclass(frozen=True)
class NcnnApp:
    name: str
    source: str  # where the lists below come from
    layers: frozenset[str] | None  # the layer types its ncnn registers; None: every layer of current ncnn
    params: dict[str, frozenset[int]] | None  # the parameter ids its own .param reader knows, per layer type
    refused: frozenset[str]  # layer types its reader refuses outright
    custom_models: bool  # False: it loads only its own models
    reads_scale: bool  # True: it reads the model's scale and input channels from the layers (chaiNNer)


@functools.cache
def known_apps() -> tuple[NcnnApp, ...]:
    data = json.loads((resources.files("msn_deploy.export") / "ncnn_apps.json").read_text(encoding="utf-8"))
    return tuple(NcnnApp(
        name, app["source"], frozenset(app["layers"]) if "layers" in app else None,
        {t: frozenset(ids) for t, ids in app["params"].items()} if "params" in app else None,
        frozenset(app.get("refused", ())), app.get("custom_models", True), app.get("reads_scale", False))
        for name, app in data.items())


def what_stops(app: NcnnApp, graph: NcnnParam) -> list[str]:
    """What keeps `app` from loading `graph` (empty: it loads), each with how many layers."""
    if not app.custom_models:
        return ["loads only its own models"]
    types = Counter(layer.type for layer in graph.layers)
    known = app.layers if app.layers is not None else (set(app.params) if app.params is not None else None)
    stops = [f"{t} ({n})" for t, n in sorted(types.items())
             if t in app.refused or (known is not None and t not in known)]
    if app.params is not None:
        unknown = Counter(f"{layer.type} param {_param_id(p)}" for layer in graph.layers
                          if layer.type in app.params and layer.type not in app.refused for p in layer.params
                          if _param_id(p) not in app.params[layer.type])
        stops += [f"{what} ({n})" for what, n in sorted(unknown.items())]
    if app.reads_scale:
        stops += _scale_and_channels(graph)
    return stops


def _scale_and_channels(graph: NcnnParam) -> list[str]:
    """chaiNNer's reading of a model from its layers: the scale is the product of the upsampling
    factors (PixelShuffle; an Interp's height scale unless a BinaryOp follows it) over every
    convolution's stride, and must be a whole number >= 1; the input channels come from the
    first convolution's weight count, as if it were not grouped. What it would refuse or misread."""
    scale, first_conv = 1.0, None
    for at, layer in enumerate(graph.layers):
        if layer.type == "PixelShuffle":
            scale *= int(layer.param("0") or 1)
        elif layer.type == "Interp":
            after = graph.layers[at + 1] if at + 1 < len(graph.layers) else None
            if after is None or (after.type != "BinaryOp" and (after.param("0") or "0") != "0"):
                scale *= float(layer.param("1") or 1)
        elif layer.type in CONVOLUTIONS:
            first_conv = first_conv or layer
            scale /= int(layer.param("3") or 1)
    stops = []
    if scale < 1 or scale != int(scale):
        stops.append(f"scale read as {scale:.3g} (strided convolutions)")
    if first_conv is not None:
        kernel = int(first_conv.param("1") or 1) * int(first_conv.param("11") or first_conv.param("1") or 1)
        read = int(first_conv.param("6") or 0) // max(int(first_conv.param("0") or 1), 1) // kernel
        groups = int(first_conv.param("7") or 1) if first_conv.type == "ConvolutionDepthWise" else 1
        if read * groups != read:  # a grouped first convolution takes `groups` times what chaiNNer reads
            stops.append(f"input channels read as {read}, not {read * groups} (first convolution)")
    return stops


def _param_id(param: str) -> int:
    """An ncnn parameter's id: arrays are written with -23300 added (`-23309=...` is id 9)."""
    key = int(param.split("=", 1)[0])
    return key if key >= 0 else -key - 23300


def app_table(graph: NcnnParam) -> list[str]:
    """A Markdown table: for each known app, whether it loads `graph` and what stops it if not."""
    rows = ["| app | loads this graph | what stops it |", "|---|---|---|"]
    for app in known_apps():
        stops = what_stops(app, graph)
        rows.append(f"| {app.name} | {'no' if stops else 'yes'} | {', '.join(stops) or '-'} |")
    return rows
