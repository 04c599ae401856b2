"""Upscale image files or a video with MSN through any backend (a thin command over
`upscale_images` and `engines.video.upscale_video`).

    python -m engines.upscale photo.png -o out/                 # PyTorch, official checkpoint
    python -m engines.upscale photos/ -o out/ --model msn_x4_fp16.onnx --tile 256
    python -m engines.upscale clip.mp4 -o clip_x4.mkv --model msn_x4_fp32.onnx --batch 4
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

import engines
from engines.base import Engine
from engines.images import IMAGE_SUFFIXES, MAX_PIXELS, read_header, read_image, upscale_alpha, write_image
from engines.target import TargetSize, resize_to
from engines.tiling import check_tiling
from engines.video import (
    OUTPUT_SUFFIXES,
    VideoError,
    VideoOptions,
    check_encoder,
    check_output_name,
    check_target,
    encoder_options,
    is_video,
    upscale_video,
)
from export import defaults
from export.artifacts import EngineSidecar, MSNGraph
from export.cli import EXIT_FAILED, display_size, key_value, non_negative_int, positive_int, run_cli
from export.files import check_folder_writable, check_writable, refuse_overwriting_inputs
from msn import MIN_INPUT_SIZE, MissingFileError, MSNError, PathError, UsageError, read_checkpoint

log = logging.getLogger("msn.upscale")


OUTPUT_STEM = re.compile(r"_x\d+$")  # what output_path() appends: never an input in the output folder


def model_scale(model: str) -> int:
    """The scale of a checkpoint, graph or engine, read from its header (nothing is loaded)."""
    suffix = Path(model).suffix.lower()
    if suffix == ".onnx":
        return MSNGraph.read(model).scale
    if suffix in (".plan", ".engine"):
        return EngineSidecar.read(model).scale
    return read_checkpoint(model).config.upscale


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
            raise MissingFileError(f"input {path} does not exist")
    if not files:
        raise MissingFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return files


def writes_one_file(output: Path, inputs: int, as_folder: bool = False) -> bool:
    """Whether `output` names the one output image (rather than a folder of outputs)."""
    return inputs == 1 and output.suffix.lower() in IMAGE_SUFFIXES and not as_folder


def output_path(src: Path, out: Path, to_file: bool, suffix: str | None, scale: int) -> Path:
    return out if to_file else out / f"{src.stem}_x{scale}{suffix or src.suffix}"


def prepare_output(output: Path, to_file: bool, as_folder: bool = False) -> None:
    """Check (and create) the output location before any model is loaded or image is read.

    A name with a suffix that is not an image format is refused rather than made a folder
    (`-o result.xyz` is never meant as one), unless it was typed ending in / (`as_folder`)."""
    if to_file:
        check_writable(output)
        return
    if output.exists() and not output.is_dir():
        raise PathError(f"output {output} is an existing file, not a folder; give a folder (or one image "
                        f"name ending in {', '.join(IMAGE_SUFFIXES)} for a single input)")
    if output.suffix and not as_folder and not output.is_dir():
        raise UsageError(f"output {output} ends in {output.suffix}, which is not an image format this tool writes "
                         f"({', '.join(IMAGE_SUFFIXES)}), or there are several inputs; give a folder (a name without "
                         "a suffix, or ending in /)")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"cannot create output folder {output} ({exc.strerror})") from None
    check_folder_writable(output)


def plan_outputs(files: list[Path], output: Path, suffix: str | None, scale: int, to_file: bool) -> dict[Path, Path]:
    """Input -> output path for every file; UsageError when two inputs would write one output."""
    plan: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for src in files:
        dst = output_path(src, output, to_file, suffix, scale)
        other = claimed.setdefault(dst.resolve(), src)
        if other != src:
            raise UsageError(f"{other} and {src} would both be written to {dst}; upscale them into different "
                             "folders or rename one")
        plan[src] = dst
    return plan


@dataclass
class ImagesReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that exist (no overwrite)
    failed: dict[Path, str] = field(default_factory=dict)  # input -> why


def upscale_images(engine: Engine, files: list[Path], output: Path, *, suffix: str | None = None,
                   overwrite: bool = False, tile: int | None = None, overlap: int = defaults.TILE_OVERLAP,
                   max_pixels: int = MAX_PIXELS, to_file: bool | None = None,
                   target: TargetSize | None = None) -> ImagesReport:
    """Upscale each file into `output` (a folder, or a file name for one input), keeping bit
    depth, channels and ICC profile and applying the EXIF orientation; with `target`, each result
    is then reduced to fit it (engines.target). A file that fails is
    reported and the rest go on; inputs are never replaced and existing outputs are kept unless
    `overwrite`; two inputs that would write one output are refused before any work."""
    single = len(files) == 1
    to_file = writes_one_file(output, len(files)) if to_file is None else to_file
    plan = plan_outputs(files, output, suffix, engine.scale, to_file)
    inputs = {f.resolve() for f in files}
    report = ImagesReport()
    try:
        for src in tqdm(files, desc="upscaling", unit="img", disable=single):
            dst = plan[src]
            if dst.resolve() in inputs:
                report.failed[src] = "output would overwrite an input; choose another -o"
            elif dst.exists() and not overwrite:
                log.warning("%s exists; skipping (use --overwrite)", dst)
                report.skipped.append(dst)
            else:
                try:
                    image = read_image(src, max_pixels)
                    x = image.rgb.transpose(2, 0, 1)[None]
                    size = target.output_size(*x.shape[2:], engine.scale) if target is not None else None
                    sr = engine(x, tile=tile, overlap=overlap)[0].transpose(1, 2, 0)
                    alpha = upscale_alpha(image.alpha, engine.scale) if image.alpha is not None else None
                    if size is not None:
                        sr = resize_to(sr, *size)
                        alpha = resize_to(alpha, *size) if alpha is not None else None
                    write_image(dst, sr, alpha, image.grayscale, image.max_value, image.icc_profile)
                except (MSNError, OSError) as exc:
                    report.failed[src] = str(exc)
                else:
                    log.info("%s -> %s", src, dst)
                    report.written.append(dst)
            if src in report.failed:
                log.error("%s: %s", src, report.failed[src])
    except KeyboardInterrupt:
        done = len(report.written) + len(report.skipped) + len(report.failed)
        log.error("interrupted after %d of %d images (%d written)", done, len(files), len(report.written))
        raise
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-upscale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (or image file name, for one input); end it in / to force a folder")
    p.add_argument("--model", default="official", help="checkpoint, .onnx or .plan (default: official checkpoint)")
    p.add_argument("--backend", default="auto", choices=engines.BACKENDS)
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch / onnxruntime backends)")
    p.add_argument("--precision", choices=["fp32", "fp16"],
                   help="a checkpoint's precision (default fp32; fp16 is the fast path on a GPU); "
                        "graphs and engines have their own")
    p.add_argument("--tile", type=non_negative_int, default=0,
                   help=f"tile size in LR px, at least {MIN_INPUT_SIZE} (bounds memory; default 0: whole image)")
    p.add_argument("--overlap", type=non_negative_int, default=defaults.TILE_OVERLAP,
                   help=f"tile overlap in LR px (default {defaults.TILE_OVERLAP})")
    p.add_argument("--format", choices=["png", "jpg"], help="output format (default: the input's)")
    p.add_argument("--target", type=display_size, metavar="WIDTHxHEIGHT",
                   help="fit the result inside this size, keeping its aspect ratio: upscale with the model, then "
                        "reduce with area averaging (e.g. 3840x2160; never more than the model's scale)")
    p.add_argument("--exact", action="store_true", help="with --target: exactly that size (the aspect may change)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS,
                   help=f"largest input image, width x height (default {MAX_PIXELS}); checked from the header")
    video = p.add_argument_group("video (when the input is a video file)")
    video.add_argument("--codec", default="libx264", help="any FFmpeg video encoder (default libx264)")
    video.add_argument("--pix-fmt", default="yuv420p", help="a pixel format the encoder takes (default yuv420p)")
    video.add_argument("--crf", type=non_negative_int, default=18, help="quality for x264/x265/AV1/VP9 (default 18)")
    video.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                       help="an FFmpeg encoder option, repeatable (e.g. preset=veryfast for x264)")
    video.add_argument("--batch", type=positive_int, default=1, help="frames per engine call (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def target_of(args: argparse.Namespace) -> TargetSize | None:
    if args.exact and args.target is None:
        raise UsageError("--exact goes with --target WIDTHxHEIGHT")
    return TargetSize(*args.target, exact=args.exact) if args.target is not None else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output_is_folder = args.output.endswith(("/", os.sep))
    args.output = Path(args.output)
    tile = args.tile or None
    if any(is_video(p) for p in args.inputs):
        return run_cli(lambda: upscale_video_file(args, tile), verbose=args.verbose)
    return run_cli(lambda: upscale_image_files(args, tile), verbose=args.verbose)


def upscale_image_files(args: argparse.Namespace, tile: int | None) -> int:
    """Every check before the model loads; exit 1 when any image failed."""
    if tile is not None:
        check_tiling(tile, args.overlap)
    files = collect_inputs(args.inputs, args.output)
    target = target_of(args)
    to_file = writes_one_file(args.output, len(files), args.output_is_folder)
    prepare_output(args.output, to_file, as_folder=args.output_is_folder)
    suffix = f".{args.format}" if args.format else None
    scale = model_scale(args.model)
    plan_outputs(files, args.output, suffix, scale, to_file)  # collisions, before the model loads
    if target is not None and len(files) == 1:  # one image: a target it cannot reach is bad usage
        header = read_header(files[0].read_bytes(), str(files[0]), args.max_pixels)
        height, width = (header.width, header.height) if header.orientation in (5, 6, 7, 8) else (
            header.height, header.width)
        target.output_size(height, width, scale)
    engine = engines.load(args.model, args.backend, device=args.device, precision=args.precision)
    report = upscale_images(engine, files, args.output, suffix=suffix, overwrite=args.overwrite, tile=tile,
                            overlap=args.overlap, max_pixels=args.max_pixels, to_file=to_file, target=target)
    if report.failed:
        log.error("%d of %d images failed", len(report.failed), len(files))
        return EXIT_FAILED
    return 0


def video_output_path(src: Path, output: Path, scale: int) -> Path:
    """`output` itself when it names a video, else a file in that folder named after the input
    (an AVI input gives .mkv: AVI is not written, see engines.video.OUTPUT_SUFFIXES)."""
    if is_video(output):
        check_output_name(output)
        return output
    if output.suffix:
        raise VideoError(f"output {output} is not a video file name ({', '.join(OUTPUT_SUFFIXES)}) or a folder")
    suffix = src.suffix if src.suffix.lower() in OUTPUT_SUFFIXES else ".mkv"
    return output / f"{src.stem}_x{scale}{suffix}"


def upscale_video_file(args: argparse.Namespace, tile: int | None) -> int:
    """One video in, one video out; every check before the model loads; exit 1 when packets were
    corrupt or the input is cut short."""
    if len(args.inputs) != 1:
        raise VideoError("give one video at a time (images and videos cannot be mixed either)")
    src = args.inputs[0]
    if not src.is_file():
        raise MissingFileError(f"input {src} does not exist")
    if tile is not None:
        check_tiling(tile, args.overlap)
    options = VideoOptions(args.codec, args.pix_fmt, args.crf, args.batch, tile, args.overlap,
                           dict(args.encoder_option), target_of(args))
    check_encoder(args.codec, args.pix_fmt, encoder_options(options))
    if not is_video(args.output) and not args.output.suffix:
        prepare_output(args.output, to_file=False)
    scale = model_scale(args.model)
    check_target(src, scale, options)
    dst = video_output_path(src, args.output, scale)
    check_writable(dst)
    refuse_overwriting_inputs([dst], [src])
    if dst.exists() and not args.overwrite:
        raise UsageError(f"{dst} exists; use --overwrite to replace it")
    engine = engines.load(args.model, args.backend, device=args.device, precision=args.precision)
    report = upscale_video(engine, src, dst, options)
    copied = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
    log.info("%s -> %s: %d frames in %.1f s (%.2f fps)%s", src, dst, report.frames, report.seconds, report.fps, copied)
    return EXIT_FAILED if report.corrupt_packets or report.truncated else 0


if __name__ == "__main__":
    sys.exit(main())
