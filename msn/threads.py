"""PyTorch's CPU threads on a machine shared with other work: passive waiting, and a thread budget.

GNU OpenMP (torch's CPU thread pool) lets an idle worker spin for 300,000 iterations before it
sleeps. When another process holds a core, the spinning workers take turns with the thread that
has the work, and a 2-thread forward runs 14x slower than a 1-thread one (docs/BENCHMARKS.md).
`OMP_WAIT_POLICY=PASSIVE` makes them sleep at once (spin count 0), which costs ~5% when the
machine is idle. libgomp reads the variable once, when torch loads it, so this module sets it
before anything imports torch: `msn` imports it first, and every other package of this project
imports `msn` first. Processes started from this one (video segment workers, a local Ray
cluster's workers) inherit it. A value the user set is kept.

This module must not import torch.
"""

from __future__ import annotations

import os
import sys

from msn_deploy.msn.errors import UsageError

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def _set_wait_policy() -> bool:
    """Set passive waiting unless the user chose a policy; whether torch will wait passively."""
    torch_loaded_before = "torch" in sys.modules
    os.environ.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")
    return not torch_loaded_before and os.environ[WAIT_POLICY_VARIABLE].upper() == "PASSIVE"


# False when torch was imported before msn without the variable set, or when the user chose another
# policy: TorchEngine then warns that its threads spin.
PASSIVE_WAITING = _set_wait_policy()


def check_threads(threads: int | None) -> int | None:
    """A thread budget as given (None: the runtime's default), or UsageError for one below 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads
