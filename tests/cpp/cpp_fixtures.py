"""Write the inputs and the Python runtime's outputs that the C++ suite compares itself with.

    python tests/cpp/cpp_fixtures.py OUT_DIR

OUT_DIR gets a random-weight MSN graph (`msn_random.onnx`; `msn_random_b2.onnx` is the same
network with its batch fixed to 2 and its size to the first case's), a 16-bit RGB input as PNG and raw
little-endian uint16 (HWC), and the Python OpenVINO runtime's output for it, whole and tiled, in
the same two forms. `cases.txt` lists each case as: name height width channels tile overlap.
`palette_in.png` is a palette PNG with partly transparent entries (tRNS) and `palette_expected.png`
what msn-upscale writes for it (RGBA: the alpha resized bicubically). The C++ tests (ctest) run the
same graph through libmsn_infer and the msn_upscale CLI and must match these pixels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msn_deploy.engines.jobs.work import ImageOptions, upscale_image
from msn_deploy.engines.media.images import read_image, write_image
from msn_deploy.engines.media.upscaled import encode_upscaled
from msn_deploy.engines.runtime.openvino_engine import OpenVINOEngine
from msn_deploy.export import ExportOptions, export_onnx
from msn_deploy.msn import random_model
from msn_deploy.msn.sample_images import smooth_test_image

# (name, LR height, LR width, tile, overlap): one whole-image case and one that tiles 3x2.
CASES = [("whole", 45, 61, 0, 32), ("tiled", 70, 52, 32, 8)]


def export_random_graph(path: Path, **options: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "random.pth"
        torch.save(random_model(seed=3).state_dict(), ckpt)
        export_onnx(ckpt, path, ExportOptions(simplify=False, verify=False, **options))


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = out_dir / "msn_random.onnx"
    export_random_graph(graph)
    _, h, w, _, _ = CASES[0]
    export_random_graph(out_dir / "msn_random_b2.onnx", static_hw=(h, w), batch=2)
    engine = OpenVINOEngine(graph)
    lines = []
    for i, (name, h, w, tile, overlap) in enumerate(CASES):
        rgb = smooth_test_image(1, h, w, seed=i)[0].numpy().transpose(1, 2, 0)
        write_image(out_dir / f"{name}_in.png", rgb, None, False, 65535)
        image = read_image(out_dir / f"{name}_in.png")  # exactly what the C++ side reads back
        sr = engine(image.rgb.transpose(2, 0, 1)[None], tile=tile or None, overlap=overlap)[0].transpose(1, 2, 0)
        write_image(out_dir / f"{name}_expected.png", sr, None, False, 65535)
        for suffix in ("in", "expected"):
            pixels = read_image(out_dir / f"{name}_{suffix}.png").rgb
            np.round(pixels * 65535).astype("<u2").tofile(out_dir / f"{name}_{suffix}.u16")
        lines.append(f"{name} {h} {w} 3 {tile} {overlap}")
    (out_dir / "cases.txt").write_text("\n".join(lines) + "\n")
    write_palette_case(out_dir, engine)
    (out_dir / "not_a_graph.onnx").write_text("a file that is not an ONNX graph\n")


def write_palette_case(out_dir: Path, engine: OpenVINOEngine) -> None:
    """A 16-colour palette image whose entries are opaque, half and fully transparent in blocks:
    hard alpha edges, where one resize filter differs from another by tens of levels."""
    rng = np.random.default_rng(7)
    indices = np.kron(rng.integers(0, 16, (9, 12)), np.ones((5, 5), int)).astype(np.uint8)  # 45x60
    palette = Image.fromarray(indices, "P")
    palette.putpalette(rng.integers(0, 256, 48, dtype=np.uint8).tobytes())
    palette.save(out_dir / "palette_in.png", transparency=bytes([255, 0, 128, 64] * 4))
    sr = upscale_image(engine, read_image(out_dir / "palette_in.png"), ImageOptions())
    (out_dir / "palette_expected.png").write_bytes(encode_upscaled(".png", sr))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
