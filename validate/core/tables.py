"""The one Markdown table writer of the reports and benches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: float | None, spec: str, unit: str = "") -> str:
    """A figure formatted with `spec` (and its unit), or "—" where there is none."""
    return "—" if value is None else format(value, spec) + unit


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table: `columns` as its header, then one line per row of cells
    (formatted by the caller; anything else is str()-ed)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
