"""The apps' form of an ncnn graph: the same function written with layers that older ncnn builds
and chaiNNer's .param reader know (see export.ncnn_apps), each rewrite exact.

* A constant (MemoryData) added to, subtracted from or multiplying a feature map becomes a 1x1
  convolution with that constant as bias or weight (depthwise; a full one at the input, where
  chaiNNer reads the input channels from the first convolution). chaiNNer refuses MemoryData.
* sqrt and 1/sqrt (UnaryOp, off in upscayl-ncnn's build) become BinaryOp powers 0.5 and -0.5.
* A Tile that repeats one channel for a product becomes that product's broadcast (Tile is off in
  upscayl-ncnn's build).
* A strided convolution becomes a stride-1 one followed by a 1x1 max pooling with that stride:
  chaiNNer reads a model's scale from its layers and divides it by every convolution's stride,
  which makes MSN's ESA branch look like a x4 / 4^16 model it refuses.
* Parameters an app's reader does not know and ncnn ignores are dropped: a Convolution's 7 (its
  group count, always 1 there) and a two-input Interp's size expression (it takes the second
  input's size without it; older ncnn cannot parse it).

GELU stays a GELU layer (Erf is newer than the apps' ncnn) and no layer carries the per-layer
precision flag (param 31): the project's own runtime adds both when it loads the graph
(msn.formats.ncnn_net).
"""

from __future__ import annotations

import numpy as np

from msn_deploy.export.onnx_graph import ExportError
from msn_deploy.msn.formats.ncnn_param import ADD, CONVOLUTIONS, MUL, POW, SUB, Layer, NcnnParam
from msn_deploy.msn.formats.ncnn_weights import conv_weights, is_fp16, memory_data

ROOT_POWERS = {"5": 0.5, "6": -0.5}  # UnaryOp's sqrt and rsqrt


class PortableGraph:
    """An ncnn graph with its weights (`weights[layer name]`), rewritten in place by `make_portable`."""

    def __init__(self, graph: NcnnParam, chunks: list[bytes]) -> None:
        names = [layer.name for layer in graph.layers]
        if len(set(names)) != len(names):
            raise ExportError("the ncnn graph names two layers alike; it cannot be rewritten by name")
        self.graph = graph
        self.weights = {layer.name: chunk for layer, chunk in zip(graph.layers, chunks, strict=True) if chunk}

    def weights_bytes(self) -> bytes:
        return b"".join(self.weights.get(layer.name, b"") for layer in self.graph.layers)

    def make_portable(self) -> None:
        self.constants_as_convolutions()
        self.roots_as_powers()
        self.tiles_as_broadcasts()
        self.strides_as_subsampling()
        self.drop_ignored_params()

    def constants_as_convolutions(self) -> None:
        consumers = self.graph.consumers()
        inputs = set(self.graph.inputs())
        first_conv = next(layer for layer in self.graph.layers if layer.type in CONVOLUTIONS)
        fp16 = is_fp16(self.weights[first_conv.name])
        replaced: dict[int, Layer | None] = {}
        for constant in [layer for layer in self.graph.layers if layer.type == "MemoryData"]:
            users = consumers.get(constant.tops[0], [])
            op = users[0] if len(users) == 1 else None
            if op is None or not _per_channel_op(constant, op):
                raise ExportError(f"constant {constant.name} is not a per-channel add, subtract or multiply; "
                                  "the apps' ncnn form cannot hold it")
            values = memory_data(self.weights.pop(constant.name)).astype(np.float64)
            (x,) = [b for b in op.bottoms if b != constant.tops[0]]
            if op.param("0") == str(MUL):
                weight, bias = values, None
            elif op.param("0") == str(SUB) and op.bottoms[0] == x:  # x - c
                weight, bias = np.ones_like(values), -values
            else:  # x + c, or c - x
                weight, bias = np.full_like(values, -1.0 if op.param("0") == str(SUB) else 1.0), values
            n = len(values)
            params = [f"0={n}", "1=1", "11=1", f"5={int(bias is not None)}"]
            if x in inputs:  # a full convolution: chaiNNer takes the input channels from the first one
                conv = Layer("Convolution", op.name, [x], op.tops, [*params, f"6={n * n}"])
                kernel = np.diag(weight)
                # in float16 like the graph's other kernels (chaiNNer picks FP16 from this one) when exact: 1 and 0 are
                half = fp16 and np.array_equal(kernel.astype(np.float16).astype(np.float64), kernel)
                self.weights[op.name] = conv_weights(kernel, bias, half)
            else:
                conv = Layer("ConvolutionDepthWise", op.name, [x], op.tops, [*params, f"6={n}", f"7={n}"])
                self.weights[op.name] = conv_weights(weight, bias)
            replaced[id(constant)], replaced[id(op)] = None, conv
        self.graph.layers = [replaced.get(id(layer), layer) for layer in self.graph.layers
                             if replaced.get(id(layer), layer) is not None]

    def roots_as_powers(self) -> None:
        for layer in self.graph.layers:
            if layer.type != "UnaryOp":
                continue
            power = ROOT_POWERS.get(layer.param("0") or "0")
            if power is None:
                raise ExportError(f"UnaryOp {layer.name} (op {layer.param('0')}) has no exact form in older ncnn")
            layer.type = "BinaryOp"
            kept = [p for p in layer.params if p.split("=", 1)[0] not in ("0", "1", "2")]
            layer.params = [f"0={POW}", "1=1", f"2={power}", *kept]

    def tiles_as_broadcasts(self) -> None:
        consumers = self.graph.consumers()
        kept = []
        for layer in self.graph.layers:
            if layer.type != "Tile":
                kept.append(layer)
                continue
            users = consumers.get(layer.tops[0], [])
            repeats = (layer.param("-23302") or "").split(",")[1:]  # count, then one repeat per axis
            if len(users) != 1 or users[0].type != "BinaryOp" or len(repeats) != 3 or repeats[1:] != ["1", "1"]:
                raise ExportError(f"Tile {layer.name} is not a channel repeat into a product; older ncnn has no Tile")
            users[0].bottoms = [layer.bottoms[0] if b == layer.tops[0] else b for b in users[0].bottoms]
        self.graph.layers = kept

    def strides_as_subsampling(self) -> None:
        rewritten = []
        for layer in self.graph.layers:
            rewritten.append(layer)
            if layer.type not in CONVOLUTIONS:
                continue
            stride_w = int(layer.param("3") or 1)
            stride_h = int(layer.param("13") or stride_w)
            if (stride_w, stride_h) == (1, 1):
                continue
            (top,) = layer.tops
            dense = f"{layer.name}_dense"
            layer.tops = [dense]
            layer.params = [p for p in layer.params if p.split("=", 1)[0] not in ("3", "13")] + ["3=1", "13=1"]
            # max over a 1x1 window = the sample itself; pad mode 1 (valid) keeps floor((n - 1) / s) + 1
            rewritten.append(Layer("Pooling", f"{layer.name}_subsample", [dense], [top],
                                   ["0=0", "1=1", "11=1", f"2={stride_w}", f"12={stride_h}", "3=0", "5=1"]))
        self.graph.layers = rewritten

    def drop_ignored_params(self) -> None:
        for layer in self.graph.layers:
            if layer.type == "Convolution":
                layer.params = [p for p in layer.params if not p.startswith("7=")]
            elif layer.type == "Interp" and len(layer.bottoms) == 2:
                layer.params = [p for p in layer.params if not p.startswith("9=")]


def _per_channel_op(constant: Layer, op: Layer) -> bool:
    """Whether `op` adds, subtracts or multiplies by `constant`, one value per channel."""
    one_per_channel = all(constant.param(key) in (None, "1") for key in ("0", "1", "11"))  # w, h, d
    return (op.type == "BinaryOp" and len(op.bottoms) == 2 and op.param("0") in (str(ADD), str(SUB), str(MUL))
            and one_per_channel)
