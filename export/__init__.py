"""Export of MSN's inference form to ONNX and TensorRT."""
