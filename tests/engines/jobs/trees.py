"""Nested trees of small images for the folder-job tests (local and on Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from msn_deploy import engines
from msn_deploy.engines.jobs.manifest import MANIFEST_NAME
from msn_deploy.engines.media.images import decode_image

SIZES = ((32, 40), (36, 36), (40, 48))  # LR (height, width)
BROKEN = ("d1/garbage.png", "d2/deep1/truncated.png", "dangling.png")  # each fails alone, for its own reason


def image_tree(root: Path, count: int = 200, seed: int = 0) -> list[str]:
    """`count` PNGs of three sizes in nested folders, plus the three BROKEN files; returns the
    good images' paths relative to `root`."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        rel = Path(f"d{i % 4}") / (f"deep{i % 2}" if i % 3 else "") / f"img{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        h, w = SIZES[i % 3]
        smooth = cv2.resize(rng.random((h // 4, w // 4, 3)).astype(np.float32), (w, h))
        cv2.imwrite(str(root / rel), np.round(smooth * 255).astype(np.uint8))
        names.append(rel.as_posix())
    (root / BROKEN[0]).write_bytes(b"this is not a png")
    whole = (root / names[0]).read_bytes()
    (root / BROKEN[1]).parent.mkdir(parents=True, exist_ok=True)
    (root / BROKEN[1]).write_bytes(whole[: len(whole) // 2])
    (root / BROKEN[2]).symlink_to(root / "nowhere.png")  # unreadable (root reads any mode; a link to nothing)
    return names


def output_key(rel: str) -> str:
    path = Path(rel)
    return (path.parent / f"{path.stem}_x4{path.suffix}").as_posix()


def manifest_records(output: Path) -> list[dict]:
    """The image records, in order; a line a crash tore is not one."""
    records = []
    for line in (output / MANIFEST_NAME).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if r["kind"] == "image"]


def done_count(output: Path) -> int:
    """Images recorded as done so far (0 before the manifest exists; a torn last line is not counted)."""
    try:
        lines = (output / MANIFEST_NAME).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if '"status": "done"' in line)


def max_level_difference_from_engine(engine: engines.Engine, src: Path, out: Path) -> int:
    """How far an output file is from what the engine gives for its input, in 8-bit levels."""
    image = decode_image(src.read_bytes(), str(src))
    expected = engine(image.rgb.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    expected = np.round(np.clip(expected, 0, 1) * 255)[..., ::-1]  # as OpenCV reads it back: BGR
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(np.float64)
    return int(np.abs(got - expected).max())
