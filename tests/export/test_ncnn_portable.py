"""The apps' form of the ncnn graph (export.ncnn_portable) and its weights file (msn.formats.ncnn_weights):
the weights split by layer and joined back byte for byte, a graph it cannot rewrite exactly refused by
name, and each rewrite computing what it replaces on ncnn itself."""

from __future__ import annotations

import numpy as np
import pytest

from msn_deploy.export.ncnn_portable import PortableGraph
from msn_deploy.export.onnx_graph import ExportError
from msn_deploy.msn.formats.ncnn_net import NcnnNet
from msn_deploy.msn.formats.ncnn_param import Layer, NcnnParam, NcnnParamError
from msn_deploy.msn.formats.ncnn_weights import conv_weights, split_weights


def graph_of(*layers: Layer) -> NcnnParam:
    return NcnnParam.parse(NcnnParam(list(layers)).text())


def test_weights_split_by_layer_and_join_back(random_ncnn):
    graph = NcnnParam.read(random_ncnn.param)
    data = random_ncnn.weights.read_bytes()
    chunks = split_weights(graph, data)
    assert b"".join(chunks) == data and sum(1 for chunk in chunks if chunk) == sum(
        1 for layer in graph.layers if layer.type.startswith("Convolution"))
    with pytest.raises(NcnnParamError, match="another graph or is cut off"):
        split_weights(graph, data[:-4])


def test_constants_roots_and_tiles_rewritten_compute_the_same_on_ncnn(tmp_path):
    """(x - c), normalised by 1/sqrt of its channel mean square repeated over channels, * w, + b (the
    constant first), + x: the graph before and after the rewrite, on ncnn's CPU path."""
    rng = np.random.default_rng(0)
    first, c, w, b = rng.normal(size=(3, 3)).astype(np.float32), *rng.normal(size=(3, 3)).astype(np.float32)
    layers = [
        Layer("Input", "data", [], ["data"], ["0=0", "1=0", "2=3"]),
        Layer("Convolution", "first", ["data"], ["x0"], ["0=3", "1=1", "5=0", "6=9"]),
        Layer("MemoryData", "mean", [], ["m"], ["0=1", "1=1", "2=3"]),
        Layer("BinaryOp", "centre", ["x0", "m"], ["x"], ["0=1"]),
        Layer("Split", "split", ["x"], ["x1", "x2", "x3", "x4"]),
        Layer("BinaryOp", "square", ["x1", "x2"], ["sq"], ["0=2"]),
        Layer("Convolution", "average", ["sq"], ["s"], ["0=1", "1=1", "5=0", "6=3"]),
        Layer("BinaryOp", "eps", ["s"], ["se"], ["0=0", "1=1", "2=1.0e-6"]),
        Layer("UnaryOp", "rsqrt", ["se"], ["r"], ["0=6"]),
        Layer("Tile", "repeat", ["r"], ["rt"], ["-23302=3,3,1,1"]),
        Layer("BinaryOp", "normalise", ["x3", "rt"], ["n"], ["0=2"]),
        Layer("MemoryData", "weight", [], ["wt"], ["0=1", "1=1", "2=3"]),
        Layer("BinaryOp", "scale", ["n", "wt"], ["y"], ["0=2"]),
        Layer("MemoryData", "bias", [], ["bs"], ["0=1", "1=1", "2=3"]),
        Layer("BinaryOp", "shift", ["bs", "y"], ["z"], ["0=0"]),
        Layer("BinaryOp", "residual", ["z", "x4"], ["output"], ["0=0"]),
    ]
    chunks = {"first": conv_weights(first, None), "mean": c.tobytes(), "average": conv_weights(np.full(3, 1 / 3), None),
              "weight": w.tobytes(), "bias": b.tobytes()}
    before = tmp_path / "before.param"
    before.write_text(NcnnParam(layers).text())
    before.with_suffix(".bin").write_bytes(b"".join(chunks.get(layer.name, b"") for layer in layers))
    graph = NcnnParam.read(before)
    portable = PortableGraph(graph, split_weights(graph, before.with_suffix(".bin").read_bytes()))
    portable.make_portable()
    assert {layer.type for layer in graph.layers} == {"Input", "Convolution", "ConvolutionDepthWise", "BinaryOp", "Split"}
    after = tmp_path / "after.param"
    after.write_text(graph.text())
    after.with_suffix(".bin").write_bytes(portable.weights_bytes())
    x = rng.uniform(size=(3, 17, 23)).astype(np.float32)
    expected, out = NcnnNet(before).run(x), NcnnNet(after).run(x)
    assert out.shape == (3, 17, 23) and np.abs(out - expected).max() <= 2e-6 * np.abs(expected).max()


def test_a_constant_it_cannot_fold_is_refused_by_name():
    layers = [Layer("Input", "data", [], ["data"]), Layer("Convolution", "conv", ["data"], ["x"], ["0=3", "1=1", "6=9"]),
              Layer("MemoryData", "table", [], ["t"], ["0=4", "1=1", "2=3"]),
              Layer("Concat", "joined", ["x", "t"], ["output"])]
    portable = PortableGraph(graph_of(*layers), [b"", conv_weights(np.eye(3), None), bytes(48), b""])
    with pytest.raises(ExportError, match="constant table is not a per-channel"):
        portable.make_portable()
