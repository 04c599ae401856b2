"""ncnn's weights file (`.bin`): the bytes of each layer, in the order of the `.param`, so that a
graph can be rewritten together with its weights and written again.

A layer's weights are a sequence of loads: a tagged array (4-byte tag, then float32 values or, tag
FP16_TAG, float16 values padded to 4 bytes) for convolution kernels, raw float32 values for biases
and constants. Only the layers MSN's graphs hold are known here; any other layer with weights is
refused rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msn_deploy.msn.formats.ncnn_param import CONVOLUTIONS, Layer, NcnnParam, NcnnParamError

FP32_TAG = bytes(4)
FP16_TAG = (0x01306B47).to_bytes(4, "little")
# Layers that read nothing from the .bin (their parameters are all in the .param).
WEIGHTLESS = frozenset({"Input", "BinaryOp", "Split", "Concat", "Slice", "Eltwise", "Pooling", "Reduction", "UnaryOp",
                        "Interp", "Tile", "PixelShuffle", "Erf", "GELU", "Sigmoid", "ReLU", "Crop", "Reshape"})


def _int(layer: Layer, key: str, default: int = 0) -> int:
    value = layer.param(key)
    return default if value is None else int(value)


def _layer_size(layer: Layer, data: bytes, at: int) -> int:
    """How many bytes of the .bin, from offset `at`, belong to `layer`."""
    if layer.type in WEIGHTLESS:
        return 0
    if layer.type == "MemoryData":
        dims = [_int(layer, key) for key in ("0", "1", "11", "2")]  # w, h, d, c
        return 4 * int(np.prod([d for d in dims if d]))
    if layer.type == "Padding":
        return 4 * _int(layer, "6")  # per-channel pad values
    if layer.type in CONVOLUTIONS:
        n = _int(layer, "6")
        tag = data[at : at + 4]
        if tag == FP32_TAG:
            size = 4 + 4 * n
        elif tag == FP16_TAG:
            size = 4 + (2 * n + 3) // 4 * 4
        else:
            raise NcnnParamError(f"layer {layer.name}: weights tagged {tag.hex()}, neither float32 nor float16")
        return size + (4 * _int(layer, "0") if _int(layer, "5") else 0)
    raise NcnnParamError(f"layer {layer.name}: weights of an ncnn {layer.type} layer are not known here")


def split_weights(graph: NcnnParam, data: bytes) -> list[bytes]:
    """Each layer's bytes of the .bin `data`, in the graph's order; raises NcnnParamError when they
    do not add up to the file (a .bin of another graph, or cut off)."""
    chunks, at = [], 0
    for layer in graph.layers:
        size = _layer_size(layer, data, at)
        chunks.append(data[at : at + size])
        at += size
    if at != len(data):
        raise NcnnParamError(f"the weights file holds {len(data)} bytes, but the graph reads {at}: it belongs to "
                             "another graph or is cut off")
    return chunks


def read_weights(graph: NcnnParam, path: Path) -> list[bytes]:
    return split_weights(graph, path.read_bytes())


def is_fp16(chunk: bytes) -> bool:
    """Whether a convolution's weights are stored as float16 (the tag that apps read the precision from)."""
    return chunk[:4] == FP16_TAG


def conv_weights(kernel: np.ndarray, bias: np.ndarray | None, fp16: bool = False) -> bytes:
    """A convolution's bytes: the tagged kernel (float16 if asked), then the bias as float32."""
    body = FP16_TAG + kernel.astype("<f2").tobytes() if fp16 else FP32_TAG + kernel.astype("<f4").tobytes()
    body += bytes(-len(body) % 4)
    return body + (bias.astype("<f4").tobytes() if bias is not None else b"")


def memory_data(chunk: bytes) -> np.ndarray:
    """A MemoryData layer's constants."""
    return np.frombuffer(chunk, "<f4")
