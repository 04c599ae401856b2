"""The validators: `msn-validate` (parity and speed of every candidate against eager PyTorch FP32,
its report), the prepared GPU suite and its take-along folder, and the layer-by-layer FP16 search."""
