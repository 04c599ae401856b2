"""One writer of report files for every validator and bench: the JSON (the data, as it is) and its
Markdown page side by side, each written atomically, so that a reader never finds half of one."""

from __future__ import annotations

import json
from pathlib import Path

from msn_deploy.msn.files import atomic_write_bytes


def write_report(folder: Path, stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """`folder/stem.json` and `folder/stem.md`. NaN stays NaN in the JSON (a failed row says so);
    anything else that JSON has no type for (a path) is written as its text."""
    paths = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_bytes(paths[0], json.dumps(data, indent=2, allow_nan=True, default=str).encode())
    atomic_write_bytes(paths[1], markdown.encode())
    return paths
