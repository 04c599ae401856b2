"""The one exception base of msn-deploy, and what a command exits with for each kind of error.

Every error raised on purpose is an `MSNError`; its class says whether the work failed (exit 1)
or the usage or input was bad and found before any work (exit 2). Callers catch `MSNError` (or a
subclass); nobody needs `except ValueError`, which would also swallow real bugs.
"""

from __future__ import annotations


class MSNError(Exception):
    """Base of every error msn-deploy raises on purpose. `exit_code`: what a command returns."""

    exit_code = 1  # the work failed (verification below tolerance, build failure, inputs that failed)


class UsageError(MSNError):
    """Bad usage or bad input, found before any work was done."""

    exit_code = 2


class PathError(UsageError, OSError):
    """A file or folder that is missing, unwritable or of the wrong kind."""


class MissingFileError(PathError, FileNotFoundError):
    """A file or folder that does not exist."""
