"""Parity and speed validation of MSN artifacts against eager PyTorch.

    from msn_deploy import validate
    report = validate.run(validate.ValidationSettings(ckpt="best.pth", reference=Path("reference")))
    report.passed, report.data["parity"]
"""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

from msn_deploy.validate.validator.runner import NothingToCompare, ValidationReport, ValidationSettings, run

__all__ = ["NothingToCompare", "ValidationReport", "ValidationSettings", "run"]
