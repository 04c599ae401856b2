"""The package layers import downwards only: msn <- export <- engines <- validate.

Read from the source (every import statement, at any depth, including lazy ones inside
functions), so that an upward import fails here however it is written.
"""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import REPO

LAYERS = ["msn", "export", "engines", "validate"]


def imported_packages(path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {}
    for path in sorted((REPO / layer).rglob("*.py")):
        upward = imported_packages(path) & above
        if upward:
            offenders[str(path.relative_to(REPO))] = sorted(upward)
    assert not offenders, f"upward imports (layers are {' <- '.join(LAYERS)}): {offenders}"


def test_the_check_sees_lazy_imports(tmp_path):
    """The scanner itself: an import inside a function counts as much as one at the top."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from engines.base import Engine\n    import validate.runner\n")
    assert imported_packages(module) == {"engines", "validate"}


def test_no_command_calls_another_commands_main():
    """Commands share library functions, never each other's main([...]) (tests may call them)."""
    calls = []
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\bmain\(\s*\[", line):
                    calls.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not calls, calls
