"""The precision vocabulary of every MSN artifact and engine, and the dtype names behind it.

Every layer names a precision with these words: "fp32" and "fp16", what artifacts are exported in,
and "bf16", what an FP32 graph computes in on a CPU's BF16 units (OpenVINO; the graph stays FP32).
TensorRT's, numpy's and a user's dtype names (float, half, float16 ...) are translated here, once.
"""

from __future__ import annotations

from msn_deploy.msn.errors import UsageError

ARTIFACT_PRECISIONS = ("fp32", "fp16")  # of every artifact; a checkpoint runs in either
PRECISIONS = (*ARTIFACT_PRECISIONS, "bf16")  # what an engine computes in
DEFAULT_PRECISION = "fp32"
# The artifact a compute precision runs from, where the two differ.
_RUNS_FROM = {"bf16": "fp32"}

# TensorRT's own names (float, half) and numpy's (float32, float16) for the two dtypes MSN uses.
_DTYPES = {"float32": "float32", "float": "float32", "fp32": "float32",
           "float16": "float16", "half": "float16", "fp16": "float16"}


class ArtifactError(UsageError):
    """A graph, engine or sidecar that is missing, unreadable, foreign or inconsistent."""


def canonical_dtype(name: object, where: str = "dtype") -> str:
    """'float32' or 'float16' for any of the names TensorRT, numpy or a user gives them."""
    dtype = _DTYPES.get(str(name).lower()) if isinstance(name, str) else None
    if dtype is None:
        raise ArtifactError(f"{where} is {name!r}; MSN artifacts use float32 or float16")
    return dtype


def canonical_precision(name: str) -> str:
    """'fp32' or 'fp16'."""
    return {"float32": "fp32", "float16": "fp16"}[canonical_dtype(name, "precision")]


def artifact_precision(precision: str) -> str:
    """The precision of the artifact that computes in `precision` (an FP32 graph for bf16)."""
    return _RUNS_FROM.get(precision, precision)


def check_precision(precision: str, choices: tuple[str, ...] = PRECISIONS, what: str = "precision") -> str:
    """`precision` itself when it is one of `choices`; a UsageError that lists them otherwise."""
    if precision not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}, got {precision!r}")
    return precision
