"""Parity and speed validation of MSN artifacts against eager PyTorch.

    from msn_deploy import validate
    report = validate.run(validate.ValidationSettings(ckpt="best.pth", reference=Path("reference")))
    report.passed, report.data["parity"]
"""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

import importlib

# The validator loads torch and every runtime: imported on first use, so that each command's
# --help (every command here lives in this package) answers at once (PEP 562).
_API = ("NothingToCompare", "ValidationReport", "ValidationSettings", "run")

__all__ = list(_API)


def __getattr__(name: str) -> object:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("msn_deploy.validate.validator.runner"), name)
