"""ONNX operators that the TensorRT 10/11 and TensorRT-RTX parsers import (the subset a CNN like
MSN can produce). An exported graph with anything else fails the lint before it reaches a builder."""

from __future__ import annotations

import onnx

TENSORRT_OPS = frozenset(
    {
        "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvTranspose", "DepthToSpace", "Div", "Equal", "Erf", "Expand",
        "Gather", "Gelu", "GlobalAveragePool", "Identity", "LayerNormalization", "LeakyRelu",
        "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad", "Pow", "Range", "Reciprocal",
        "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
        "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
        "Where",
    }
)
# Modes that TensorRT imports for ops whose support depends on an attribute.
_SUPPORTED_MODES = {"Pad": {b"constant", b"reflect", b"edge"}, "Resize": {b"nearest", b"linear", b"cubic"}}


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Descriptions of nodes that TensorRT would not parse (empty when the graph is clean)."""
    problems = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{node.name or node.op_type}: custom domain {node.domain!r}")
        elif node.op_type not in TENSORRT_OPS:
            problems.append(f"{node.name or node.op_type}: op {node.op_type} is not imported by TensorRT")
        elif node.op_type in _SUPPORTED_MODES:
            mode = next((a.s for a in node.attribute if a.name == "mode"), None)
            if mode is not None and mode not in _SUPPORTED_MODES[node.op_type]:
                problems.append(f"{node.name}: {node.op_type} mode {mode.decode()} is not imported by TensorRT")
    return problems
