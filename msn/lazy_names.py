"""Names a package offers but imports on first use (PEP 562), for the packages whose modules load
torch or the exporter: a command that only reads its arguments, or runs a graph, never pays for
them. Every access goes to the module, so a test that patches a name there is seen through the
package too."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def names_on_first_use(package: str, modules: dict[str, str]) -> tuple[Callable[[str], object],
                                                                         Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: each name in `modules` is read from the module
    named beside it (a full module name) when it is first asked for."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(modules[name]), name)

    def __dir__() -> list[str]:
        return sorted({*namespace, *modules})

    return __getattr__, __dir__
