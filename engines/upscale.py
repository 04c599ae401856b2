"""Upscale image files, folders or a video with MSN through any backend (a thin command over
`engines.jobs.run_folder_job` and `engines.jobs.run_video_job`).

    msn-upscale photo.png -o out/                 # official checkpoint (its cached graph on OpenVINO)
    msn-upscale photos/ -o out/ --recursive --model msn_x4_fp32.onnx --workers 2
    msn-upscale photos/ -o out/ --recursive --model msn_x4_fp32.onnx --ray HEAD:6379
    msn-upscale clip.mp4 -o clip_x4.mkv --model msn_x4_fp32.onnx --segment-seconds 10 --workers 2

A folder job keeps a manifest in the output folder: run the same command again after a crash or
Ctrl-C and it goes on where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import NoReturn

from msn_deploy.engines import runtime
from msn_deploy.engines.jobs.folder import FolderJob, run_folder_job
from msn_deploy.engines.jobs.ray_cluster import LOCAL
from msn_deploy.engines.jobs.video import VideoJob, run_video_job
from msn_deploy.engines.jobs.work import ImageOptions
from msn_deploy.engines.media.images import MAX_PIXELS
from msn_deploy.engines.media.target import TargetSize
from msn_deploy.engines.media.video import VideoError, VideoOptions, is_video
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP
from msn_deploy.msn import MIN_INPUT_SIZE, UsageError
from msn_deploy.msn.cli import (
    EXIT_FAILED,
    add_precision_option,
    display_size,
    exit_process,
    host_port,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
)

log = logging.getLogger("msn.upscale")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-upscale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (or image file name, for one input); end it in / to force a folder")
    p.add_argument("--model", default="official",
                   help="checkpoint, .onnx, .plan or ncnn .param (default: official checkpoint)")
    p.add_argument("--backend", default=runtime.AUTO, choices=runtime.BACKEND_CHOICES,
                   help="auto (default): on a CPU, OpenVINO (a checkpoint as its graph, exported once into the cache); "
                        "torch: eager PyTorch")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda (torch / onnxruntime / tensorrt) or vulkan (an ncnn .param on any GPU)")
    add_precision_option(p, "a checkpoint's precision (default fp32; fp16 is the fast path on a GPU), or how ncnn "
                        "computes; ONNX graphs and engines have their own. bf16: an FP32 model on the CPU's "
                        "BF16 units (OpenVINO; about 1.5x faster, about 51 dB vs FP32)")
    p.add_argument("--tile", type=non_negative_int, default=0,
                   help=f"tile size in LR px, at least {MIN_INPUT_SIZE} (bounds memory; default 0: whole image)")
    p.add_argument("--overlap", type=non_negative_int, default=TILE_OVERLAP,
                   help=f"tile overlap in LR px (default {TILE_OVERLAP})")
    p.add_argument("--format", choices=["png", "jpg"], help="output format (default: the input's)")
    p.add_argument("--target", type=display_size, metavar="WIDTHxHEIGHT",
                   help="fit the result inside this size, keeping its aspect ratio: upscale with the model, then "
                        "reduce with area averaging (e.g. 3840x2160; never more than the model's scale)")
    p.add_argument("--exact", action="store_true", help="with --target: exactly that size (the aspect may change)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS,
                   help=f"largest input image, width x height (default {MAX_PIXELS}); checked from the header")
    jobs = p.add_argument_group("long jobs")
    jobs.add_argument("--recursive", action="store_true", help="upscale the folders inside input folders too, "
                      "mirroring the tree under the output folder")
    jobs.add_argument("--workers", type=positive_int, metavar="N",
                      help="engines at once: threads on this machine (default 1), Ray actors with --ray (default "
                           "one per CPU of the cluster), video segment processes with --segment-seconds (default 2)")
    jobs.add_argument("--ray", nargs="?", const=LOCAL, type=host_port, metavar="HOST:PORT",
                      help="run the job on Ray: alone, a Ray instance of this machine for the job; with an address, "
                           "join that cluster (its nodes must see the inputs at the same paths)")
    video = p.add_argument_group("video (when the input is a video file)")
    video.add_argument("--codec", default="libx264", help="any FFmpeg video encoder (default libx264)")
    video.add_argument("--pix-fmt", default="yuv420p", help="a pixel format the encoder takes (default yuv420p)")
    video.add_argument("--crf", type=non_negative_int, default=18, help="quality for x264/x265/AV1/VP9 (default 18)")
    video.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                       help="an FFmpeg encoder option, repeatable (e.g. preset=veryfast for x264)")
    video.add_argument("--batch", type=positive_int, default=1, help="frames per engine call (default 1)")
    video.add_argument("--segment-seconds", type=positive_float, metavar="S",
                       help="split the video at keyframes into segments of about S seconds and upscale them in "
                            "parallel (--workers, or Ray tasks with --ray); a rerun keeps the finished segments")
    video.add_argument("--reuse-repeats", nargs="?", const=0.0, type=non_negative_float, metavar="LEVELS",
                       help="a frame equal to the last upscaled one reuses its output instead of running the model; "
                            "LEVELS: how far (of 255, averaged over any 16x16 block) a frame may differ and still "
                            "count as equal, for lossy sources (default 0: identical; x264 repeats measured <= 4.4)")
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


def target_of_args(args: argparse.Namespace) -> runtime.Target:
    return runtime.Target(args.backend, args.device, args.precision)


def upscale_image_files(args: argparse.Namespace, tile: int | None) -> int:
    """Every check before the model loads (engines.jobs.folder.plan_job); exit 1 when any image failed."""
    for flag, value in (("--segment-seconds", args.segment_seconds), ("--reuse-repeats", args.reuse_repeats)):
        if value is not None:
            raise UsageError(f"{flag} is for videos; the inputs are images")
    job = FolderJob(inputs=args.inputs, output=args.output, model=args.model, runs_on=target_of_args(args),
                    options=ImageOptions(tile, args.overlap, target_of(args), args.max_pixels),
                    suffix=f".{args.format}" if args.format else None, recursive=args.recursive,
                    overwrite=args.overwrite, workers=args.workers, ray=args.ray,
                    output_is_folder=args.output_is_folder)
    report = run_folder_job(job)
    if report.failed:
        log.error("%d of %d images failed:\n%s", len(report.failed), len(report.failed) + len(report.written)
                  + report.done_before + len(report.kept),
                  "\n".join(f"  {why}" for why in report.failed.values()))
        return EXIT_FAILED
    return 0


def upscale_video_file(args: argparse.Namespace, tile: int | None) -> int:
    """One video in, one video out (engines.jobs.video); exit 1 when packets were corrupt or the
    input is cut short."""
    if len(args.inputs) != 1:
        raise VideoError("give one video at a time (images and videos cannot be mixed either)")
    if args.recursive:
        raise UsageError("--recursive is for folders of images; give one video")
    options = VideoOptions(args.codec, args.pix_fmt, args.crf, args.batch, tile, args.overlap,
                           dict(args.encoder_option), target_of(args), args.reuse_repeats)
    job = VideoJob(args.inputs[0], args.output, args.model, target_of_args(args), options,
                   args.overwrite, args.segment_seconds, args.workers, args.ray)
    report = run_video_job(job)
    segments = (f" in {report.segments} segments ({report.kept} kept from before)"
                if args.segment_seconds is not None else "")
    copied = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
    reused = f"; {report.reused} repeated frames reused" if args.reuse_repeats is not None else ""
    log.info("%s -> %s: %d frames%s in %.1f s (%.2f fps)%s%s", job.src, report.dst, report.frames, segments,
             report.seconds, report.fps, copied, reused)
    return 0 if report.complete else EXIT_FAILED


def cli() -> NoReturn:
    """The msn-upscale command: `main` in a process of its own (see msn.cli.exit_process)."""
    exit_process(main())


if __name__ == "__main__":
    cli()
