"""Metadata props stamped into every exported graph, and reading them back."""

from __future__ import annotations

import onnx
import torch

from export.onnx_graph import ExportOptions
from msn import MIN_INPUT_SIZE, MSNConfig

EXPORTER = "msn-deploy 0.1.0"


def stamp_metadata(
    model: onnx.ModelProto, config: MSNConfig, options: ExportOptions, checkpoint_sha256: str, *, fold_pointwise: bool
) -> None:
    props = {
        "model_name": "MSN",
        "scale": str(config.upscale),
        "num_feat": str(config.num_feat),
        "num_block": str(config.num_block),
        "min_input_size": str(MIN_INPUT_SIZE),
        "input_range": "[0, 1] RGB, NCHW",
        "output_range": "unclamped; clamp to [0, 1] when converting to an image",
        "precision": options.precision,
        "io_dtype": options.io_dtype,
        "checkpoint_sha256": checkpoint_sha256,
        "exporter": EXPORTER,
        "torch_version": torch.__version__,
        "opset": str(options.opset),
        "strip_convs": "dense 3x3" if fold_pointwise else "1x1 + depthwise 3x3",
    }
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "msn-deploy", EXPORTER.split()[-1]
    model.doc_string = f"MSN x{config.upscale} super-resolution ({options.precision}), inference form"


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
