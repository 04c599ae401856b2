"""Logging setup shared by the command-line tools."""

from __future__ import annotations

import logging

from msn.files import exit_on_sigterm

# Libraries that log every pass at INFO; their detail is only useful with --verbose.
_CHATTY = ("onnx_ir", "onnxscript", "torch.onnx", "torch._dynamo", "torch.export")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


def start_cli(verbose: bool = False) -> None:
    """What every command-line tool does first: logging, and SIGTERM handled like Ctrl-C (so that
    temporary outputs are removed)."""
    setup_logging(verbose)
    exit_on_sigterm()
