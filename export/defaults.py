"""The defaults of export and of its commands, in one place (units in the names); the engines' own
(tile overlap, serving batch) live with them: engines.runtime.tiling, engines.serve.settings."""

from __future__ import annotations

from msn_deploy.msn import MIN_INPUT_SIZE

# ONNX export.
OPSET = 20  # first opset with a Gelu op: one node per GELU instead of five
SUPPORTED_OPSETS = range(18, 22)  # torch's dynamo exporter cannot write 17 (no Pad-18 -> 17 adapter)

# TensorRT builds: the optimisation profile (N, H, W in LR px), builder level and workspace.
PROFILE_MIN = (1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
PROFILE_OPT = (1, 360, 640)
PROFILE_MAX = (1, 1080, 1920)
OPT_LEVEL = 3
WORKSPACE_MIB = 2048

# Triton: max_batch_size written for artifacts with a dynamic batch axis.
TRITON_MAX_BATCH = 8
