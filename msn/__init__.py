"""MSN (NTIRE 2024 ESR, DASE-IDEALab) in PyTorch: training form, inference form, loading."""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

import importlib

from msn_deploy.msn.checkpoint import (
    KNOWN_CHECKPOINTS,
    Checkpoint,
    ChecksumError,
    read_checkpoint,
    resolve_checkpoint,
    sha256_of,
)
from msn_deploy.msn.config import MIN_INPUT_SIZE, CheckpointError, MSNConfig
from msn_deploy.msn.errors import MissingFileError, MSNError, PathError, UsageError
from msn_deploy.msn.validation import InputError

# The networks load torch (about a second): imported on first use, so that a command that runs a
# graph, or only parses its arguments, never pays for it (PEP 562).
_ON_FIRST_USE = {
    "MSN": "arch",
    "MSNInference": "inference",
    "to_inference_form": "inference",
    "build_model": "loading",
    "load_model": "loading",
    "random_model": "loading",
    "check_input": "tensor_checks",
}


def __getattr__(name: str) -> object:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "KNOWN_CHECKPOINTS",
    "MIN_INPUT_SIZE",
    "MSN",
    "Checkpoint",
    "CheckpointError",
    "ChecksumError",
    "InputError",
    "MSNConfig",
    "MSNError",
    "MissingFileError",
    "PathError",
    "UsageError",
    "MSNInference",
    "build_model",
    "check_input",
    "load_model",
    "random_model",
    "read_checkpoint",
    "resolve_checkpoint",
    "sha256_of",
    "to_inference_form",
]
