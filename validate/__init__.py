"""Parity and speed validation of MSN artifacts against eager PyTorch."""
