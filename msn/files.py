"""Atomic file output: write beside the target, then rename, so no reader sees a partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from msn_deploy.msn import MissingFileError, PathError, UsageError


def check_folder_writable(folder: Path) -> None:
    """Create and remove a probe file: os.access says yes to root even on a read-only mount."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PathError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None


def make_output_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` (and its parents) for a command's outputs and check it can be written: a
    file in the way, or a folder that cannot be written, is one PathError naming it."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = "is a file" if blocker == folder else f"cannot be made: {blocker} is a file"
        raise PathError(f"output folder {folder} {what}; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"output folder {folder} cannot be made ({exc.strerror or exc})") from None
    check_folder_writable(folder)
    return folder


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before expensive work, if `path` cannot be created."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PathError(f"output {path} is a directory; give a file name")
    if not parent.is_dir():
        existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise PathError(f"output {path}: {existing} is a file, not a folder")
        raise MissingFileError(f"output folder {parent} does not exist")
    check_folder_writable(parent)
    return path


def refuse_overwriting_inputs(outputs: list[str | os.PathLike], inputs: list[str | os.PathLike | None]) -> None:
    """Raise UsageError if any output path is one of the command's own input files."""
    existing = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    for output in map(Path, outputs):
        for source in existing:
            same = output.resolve() == source.resolve() or (output.exists() and os.path.samefile(output, source))
            if same:
                raise UsageError(f"output {output} would replace the input {source}; choose another output path")


def give_usual_permissions(path: Path) -> None:
    """The permissions a new file or folder gets from open()/mkdir() under this process's umask:
    tempfile makes its files and folders private, and outputs are for others to read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` if the block succeeds."""
    path = check_writable(path)
    # The name's start only: a legal name near the 255-byte limit must leave room for the temp additions.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        give_usual_permissions(Path(tmp))  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
