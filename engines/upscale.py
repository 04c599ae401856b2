"""Upscale image files with MSN through any backend.

    python -m engines.upscale photo.png -o out/                 # PyTorch, official checkpoint
    python -m engines.upscale photos/ -o out/ --model msn_x4_fp16.onnx --tile 256
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

import engines
from engines.base import EngineError
from engines.images import IMAGE_SUFFIXES, ImageError, read_image, upscale_alpha, write_image
from engines.tiling import DEFAULT_OVERLAP
from msn import CheckpointError, InputError
from msn.logs import setup_logging

log = logging.getLogger("msn.upscale")


def collect_inputs(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return files


def output_path(src: Path, out: Path, single: bool, suffix: str | None) -> Path:
    if single and out.suffix.lower() in IMAGE_SUFFIXES:
        return out
    return out / f"{src.stem}_x4{suffix or src.suffix}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (or file, for one input)")
    p.add_argument("--model", default="official", help="checkpoint, .onnx or .plan (default: official checkpoint)")
    p.add_argument("--backend", default="auto", choices=engines.BACKENDS)
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch / onnxruntime backends)")
    p.add_argument("--tile", type=int, help="tile size in LR px (bounds memory; default: whole image)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in LR px")
    p.add_argument("--format", choices=["png", "jpg"], help="output format (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        files = collect_inputs(args.inputs)
        engine = engines.load(args.model, args.backend, device=args.device)
    except (FileNotFoundError, CheckpointError, EngineError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    single = len(files) == 1
    if not (single and args.output.suffix.lower() in IMAGE_SUFFIXES):
        args.output.mkdir(parents=True, exist_ok=True)
    inputs = {f.resolve() for f in files}
    failed = 0
    for src in tqdm(files, desc="upscaling", unit="img", disable=single):
        dst = output_path(src, args.output, single, f".{args.format}" if args.format else None)
        if dst.resolve() in inputs:
            log.error("%s: output would overwrite an input; choose another -o", src)
            failed += 1
            continue
        if dst.exists() and not args.overwrite:
            log.warning("%s exists; skipping (use --overwrite)", dst)
            continue
        try:
            image = read_image(src)
            sr = engine(image.rgb.transpose(2, 0, 1)[None], tile=args.tile, overlap=args.overlap)[0].transpose(1, 2, 0)
            alpha = upscale_alpha(image.alpha, engine.scale) if image.alpha is not None else None
            write_image(dst, sr, alpha, image.grayscale, image.max_value)
        except (ImageError, InputError) as exc:
            log.error("%s: %s", src, exc)
            failed += 1
            continue
        log.info("%s -> %s", src, dst)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
