"""Upscale image files or a video with MSN through any backend.

    python -m engines.upscale photo.png -o out/                 # PyTorch, official checkpoint
    python -m engines.upscale photos/ -o out/ --model msn_x4_fp16.onnx --tile 256
    python -m engines.upscale clip.mp4 -o clip_x4.mkv --model msn_x4_fp32.onnx --batch 4
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from tqdm import tqdm

import engines
from engines.base import EngineError
from engines.images import IMAGE_SUFFIXES, ImageError, read_image, upscale_alpha, write_image
from engines.tiling import DEFAULT_OVERLAP, check_tiling
from engines.video import VIDEO_SUFFIXES, VideoError, VideoOptions, check_encoder, is_video, upscale_video
from msn import MIN_INPUT_SIZE, CheckpointError, InputError
from msn.arguments import non_negative_int, positive_int
from msn.files import check_folder_writable, check_writable, refuse_overwriting_inputs
from msn.logs import start_cli

log = logging.getLogger("msn.upscale")


OUTPUT_STEM = re.compile(r"_x\d+$")  # what output_path() appends: never an input in the output folder


def collect_inputs(paths: list[Path], output: Path) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if output.is_dir() and path.resolve() == output.resolve():
                # Upscaling into the input folder: earlier outputs are not new inputs.
                earlier = [p for p in images if OUTPUT_STEM.search(p.stem)]
                if earlier:
                    log.info("skipping %d earlier outputs (*_xN) in %s", len(earlier), path)
                images = [p for p in images if p not in earlier]
            files += images
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


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as preset=veryfast, got {text!r}")
    return key.strip(), value.strip()


def prepare_output(output: Path, single: bool) -> None:
    """Check (and create) the output location before any model is loaded or image is read."""
    if single and output.suffix.lower() in IMAGE_SUFFIXES:
        check_writable(output)
        return
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {output} is an existing file, not a folder; give a folder (or one image "
                                 f"name ending in {', '.join(IMAGE_SUFFIXES)} for a single input)")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create output folder {output} ({exc.strerror})") from None
    check_folder_writable(output)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (or file, for one input)")
    p.add_argument("--model", default="official", help="checkpoint, .onnx or .plan (default: official checkpoint)")
    p.add_argument("--backend", default="auto", choices=engines.BACKENDS)
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch / onnxruntime backends)")
    p.add_argument("--tile", type=non_negative_int, default=0,
                   help=f"tile size in LR px, at least {MIN_INPUT_SIZE} (bounds memory; default 0: whole image)")
    p.add_argument("--overlap", type=non_negative_int, default=DEFAULT_OVERLAP, help="tile overlap in LR px")
    p.add_argument("--format", choices=["png", "jpg"], help="output format (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    video = p.add_argument_group("video (when the input is a video file)")
    video.add_argument("--codec", default="libx264", help="any FFmpeg video encoder (default libx264)")
    video.add_argument("--pix-fmt", default="yuv420p", help="a pixel format the encoder takes (default yuv420p)")
    video.add_argument("--crf", type=non_negative_int, default=18, help="quality for x264/x265/AV1/VP9 (default 18)")
    video.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                       help="an FFmpeg encoder option, repeatable (e.g. preset=veryfast for x264)")
    video.add_argument("--batch", type=positive_int, default=1, help="frames per engine call (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_cli(args.verbose)
    tile = args.tile or None
    if any(is_video(p) for p in args.inputs):
        return upscale_video_file(args, tile)
    try:
        if tile is not None:
            check_tiling(tile, args.overlap)
        files = collect_inputs(args.inputs, args.output)
        single = len(files) == 1
        prepare_output(args.output, single)
        engine = engines.load(args.model, args.backend, device=args.device)
    except (OSError, CheckpointError, EngineError, ValueError) as exc:
        log.error("%s", exc)
        return 2
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
            sr = engine(image.rgb.transpose(2, 0, 1)[None], tile=tile, overlap=args.overlap)[0].transpose(1, 2, 0)
            alpha = upscale_alpha(image.alpha, engine.scale) if image.alpha is not None else None
            write_image(dst, sr, alpha, image.grayscale, image.max_value)
        except (ImageError, InputError, EngineError, OSError) as exc:
            log.error("%s: %s", src, exc)
            failed += 1
            continue
        log.info("%s -> %s", src, dst)
    return 1 if failed else 0


def video_output_path(src: Path, output: Path) -> Path:
    if is_video(output):
        return output
    if output.suffix:
        raise VideoError(f"output {output} is not a video file name ({', '.join(VIDEO_SUFFIXES)}) or a folder")
    return output / f"{src.stem}_x4{src.suffix}"


def upscale_video_file(args: argparse.Namespace, tile: int | None) -> int:
    """One video in, one video out; every check before the model loads."""
    try:
        if len(args.inputs) != 1:
            raise VideoError("give one video at a time (images and videos cannot be mixed either)")
        src = args.inputs[0]
        if not src.is_file():
            raise FileNotFoundError(f"input {src} does not exist")
        if tile is not None:
            check_tiling(tile, args.overlap)
        check_encoder(args.codec, args.pix_fmt)
        if not is_video(args.output) and not args.output.suffix:
            prepare_output(args.output, single=False)
        dst = video_output_path(src, args.output)
        check_writable(dst)
        refuse_overwriting_inputs([dst], [src])
        if dst.exists() and not args.overwrite:
            raise FileExistsError(f"{dst} exists; use --overwrite to replace it")
        engine = engines.load(args.model, args.backend, device=args.device)
        options = VideoOptions(args.codec, args.pix_fmt, args.crf, args.batch, tile, args.overlap,
                               dict(args.encoder_option))
        report = upscale_video(engine, src, dst, options)
    except KeyboardInterrupt:
        return 130
    except (OSError, CheckpointError, EngineError, ValueError) as exc:
        log.error("%s", exc)
        return 2 if not isinstance(exc, (EngineError, InputError)) else 1
    copied = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
    log.info("%s -> %s: %d frames in %.1f s (%.2f fps)%s", src, dst, report.frames, report.seconds, report.fps, copied)
    return 1 if report.corrupt_packets else 0


if __name__ == "__main__":
    sys.exit(main())
