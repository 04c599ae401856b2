"""Which image files a job reads and where each output goes: folders walked (recursively when
asked, mirroring the tree), symlink loops and the job's own output folder left out."""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from msn_deploy.engines.jobs.manifest import MANIFEST_NAME
from msn_deploy.engines.media.images import IMAGE_SUFFIXES
from msn_deploy.msn import MissingFileError, UsageError

log = logging.getLogger(__name__)

OUTPUT_STEM = re.compile(r"_x\d+$")  # what output_name() appends: never an input in the output folder


@dataclass(frozen=True)
class Task:
    """One image of a job: where it is read, and where its output goes (`key`: that output's
    path relative to the output folder, which names it in the manifest)."""

    src: Path
    dst: Path
    key: str


def output_name(src: Path, suffix: str | None, scale: int) -> str:
    """NAME_xS with the input's suffix (or `suffix`); PNG for an input whose suffix no encoder
    writes (read by content: `photo`, `x.jfif`)."""
    return f"{src.stem}_x{scale}{suffix or (src.suffix if _is_image(src.name) else '.png')}"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _regular_or_dangling(path: Path) -> bool:
    """A regular file, or a link to nothing (kept, so that the job reports it as unreadable)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return path.is_symlink()
    except OSError:
        return True  # e.g. no permission: the job reports why it cannot be read


def walk_images(root: Path, output: Path | None) -> list[Path]:
    """Image files under `root` (relative to it). A symlinked folder is followed when it leads out
    of the tree; one that leads back into it (a loop, or a second way into a folder) is skipped,
    the folder being walked where it really is, and a folder reached twice from outside is walked
    once. Output folders are not walked: `output` when it lies inside the tree, and any folder
    holding a job manifest (an earlier job's outputs). Hidden files and folders are skipped (the
    root itself is walked whatever its name)."""
    top = root.resolve()
    skip = output.resolve() if output is not None and output.is_dir() else None
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []

    def on_error(exc: OSError) -> None:
        log.warning("cannot list %s (%s); its images are left out", exc.filename, exc.strerror)

    for folder, dirs, files in os.walk(root, followlinks=True, onerror=on_error):
        here = Path(folder)
        info = here.stat()
        if (info.st_dev, info.st_ino) in seen:
            log.warning("%s is a folder already walked; skipped", here)
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        if here != root and ((skip is not None and here.resolve() == skip) or (here / MANIFEST_NAME).exists()):
            log.info("%s is %s output folder; its files are not inputs", here,
                     "this job's" if here.resolve() == skip else "another job's")
            dirs[:] = []
            continue
        # Hidden folders (.git, .thumbnails, .cache) are skipped like hidden files: not photos.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _links_into(here / d, top))
        # Regular files only: reading a FIFO or a device named *.png would block or never end.
        found += [(here / name).relative_to(root) for name in sorted(files)
                  if _is_image(name) and _regular_or_dangling(here / name)]
    return found


def _links_into(path: Path, top: Path) -> bool:
    if not path.is_symlink():
        return False
    target = path.resolve()
    if target == top or top in target.parents:
        log.warning("%s links to %s, inside the tree, which is walked where it is; skipped", path, target)
        return True
    return False


def find_tasks(paths: list[Path], output: Path, *, recursive: bool = False, suffix: str | None = None,
               scale: int = 4, to_file: bool = False) -> list[Task]:
    """Every input image with its output. A folder's images go into `output` (its tree mirrored
    with `recursive`); a file given by name goes into `output` itself, or is `output` when
    `to_file`. Earlier outputs (*_xN) in an output folder that is also an input are not inputs;
    two inputs for one output are a UsageError naming both, raised before any work."""
    tasks: list[Task] = []
    for path in paths:
        if path.is_dir():
            if recursive:
                relative = walk_images(path, output)
            else:
                relative = [Path(p.name) for p in sorted(path.iterdir())
                            if _is_image(p.name) and _regular_or_dangling(p)]
            if output.is_dir() and path.resolve() == output.resolve():
                earlier = [p for p in relative if OUTPUT_STEM.search(p.stem)]
                if earlier:
                    log.info("skipping %d earlier outputs (*_xN) in %s", len(earlier), path)
                relative = [p for p in relative if p not in earlier]
            for rel in relative:
                key = rel.parent / output_name(rel, suffix, scale)
                tasks.append(Task(path / rel, output / key, key.as_posix()))
        elif path.is_file():
            dst = output if to_file else output / output_name(path, suffix, scale)
            tasks.append(Task(path, dst, dst.name))
        else:
            raise MissingFileError(f"input {path} does not exist")
    as_png = [t.src.name for t in tasks if not suffix and not to_file and not _is_image(t.src.name)]
    if as_png:
        log.info("written as PNG (no encoder writes their suffix): %s", ", ".join(as_png))
    if not tasks:
        where = ", ".join(map(str, paths))
        hint = "" if recursive else " (add --recursive for the folders inside)"
        raise MissingFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}{hint}")
    _refuse_collisions(tasks)
    return tasks


def _refuse_collisions(tasks: list[Task]) -> None:
    claimed: dict[Path, Path] = {}
    for task in tasks:
        other = claimed.setdefault(task.dst.resolve(), task.src)
        if other != task.src:
            raise UsageError(f"{other} and {task.src} would both be written to {task.dst}; upscale them into "
                             "different folders or rename one")
