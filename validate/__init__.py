"""Parity and speed validation of MSN artifacts against eager PyTorch.

    from msn_deploy import validate
    report = validate.run(validate.ValidationSettings(ckpt="best.pth", reference=Path("reference")))
    report.passed, report.data["parity"]
"""

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

from msn_deploy.msn.lazy_names import names_on_first_use

# The validator loads torch and every runtime: imported on first use, so that each command's
# --help (every command here lives in this package) answers at once.
_RUNNER = "msn_deploy.validate.validator.runner"
_API = {"NothingToCompare": _RUNNER, "ValidationReport": _RUNNER, "run": _RUNNER,
        "ValidationSettings": "msn_deploy.validate.validator.settings"}
__getattr__, __dir__ = names_on_first_use(__name__, _API)

__all__ = list(_API)
