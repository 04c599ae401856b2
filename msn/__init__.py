"""MSN (NTIRE 2024 ESR, DASE-IDEALab) in PyTorch: training form, inference form, loading."""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

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
from msn_deploy.msn.lazy_names import names_on_first_use
from msn_deploy.msn.validation import InputError

# The networks load torch (about a second): imported on first use.
__getattr__, __dir__ = names_on_first_use(__name__, {
    "MSN": "msn_deploy.msn.arch",
    "MSNInference": "msn_deploy.msn.inference",
    "to_inference_form": "msn_deploy.msn.inference",
    "build_model": "msn_deploy.msn.loading",
    "load_model": "msn_deploy.msn.loading",
    "random_model": "msn_deploy.msn.loading",
    "check_input": "msn_deploy.msn.tensor_checks",
})

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
