"""How much of the engine's speed the video pipeline keeps: frames/s of the whole decode ->
infer -> encode pipeline against inference alone on the same frames, in one process.

    msn-video-bench --model msn_x4_fp32.onnx --size 360x640 --frames 24 --out reports/video

Without --input a synthetic clip (smooth moving colours, x264) is made first. Inference alone is
timed on frames decoded beforehand; both runs follow a warm-up batch, so OpenVINO's per-shape
compile is not counted in either.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from msn_deploy import engines
from msn_deploy.engines.media.video import VideoOptions, VideoReport, upscale_video
from msn_deploy.msn import MissingFileError
from msn_deploy.msn.cli import hw_size, key_value, non_negative_int, positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.video_bench")


def synthetic_clip(path: Path, frames: int, h: int, w: int, *, rate: int = 24, hold: int = 1,
                   keyframe_every: int | None = None) -> Path:
    """`frames` frames of smooth colour moving one block a picture (x264, yuv420p); each picture
    held for `hold` frames; with `keyframe_every`, a keyframe exactly that often."""
    import av

    rng = np.random.default_rng(0)
    coarse = rng.random((h // 40 + 2, w // 40 + 2, 3))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if keyframe_every:
            stream.codec_context.gop_size = keyframe_every
            stream.codec_context.options = {"keyint_min": str(keyframe_every), "sc_threshold": "0"}
        for i in range(frames):
            img = np.kron(np.roll(coarse, i // hold, axis=1), np.ones((40, 40, 1)))[:h, :w]
            frame = av.VideoFrame.from_ndarray(np.round(img * 255).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p", threads=1)))
        out.mux(stream.encode(None))
    return path


def decoded_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.reformat(format="rgb24", threads=1).to_ndarray() for f in container.decode(video=0)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-video-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="anything engines.load takes")
    p.add_argument("--backend", default="auto", choices=engines.BACKEND_CHOICES)
    p.add_argument("--input", type=Path, help="a video (default: a synthetic clip)")
    p.add_argument("--size", type=hw_size, default=(360, 640), help="HxW of the synthetic clip (default 360x640)")
    p.add_argument("--frames", type=positive_int, default=24, help="frames of the synthetic clip")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--codec", default="libx264")
    p.add_argument("--pix-fmt", default="yuv420p")
    p.add_argument("--crf", type=non_negative_int, default=18)
    p.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE", type=key_value)
    p.add_argument("--out", type=Path, default=Path("reports/video"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def bench_video(engine: engines.Engine, clip: Path,
                options: VideoOptions) -> tuple[int, float, VideoReport, tuple[int, int]]:
    """(frames, inference-only seconds, the pipeline's report, LR HxW) for one clip, in one process."""
    frames = decoded_frames(clip).astype(np.float32) / 255
    engine(frames[: options.batch].transpose(0, 3, 1, 2))  # warm-up: compile for this shape
    started = time.perf_counter()
    for i in range(0, len(frames), options.batch):
        engine(frames[i : i + options.batch].transpose(0, 3, 1, 2))
    infer_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        report = upscale_video(engine, clip, Path(tmp) / "out.mkv", options)
    return len(frames), infer_s, report, frames.shape[1:3]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run_bench(args), verbose=args.verbose)


def run_bench(args: argparse.Namespace) -> None:
    h, w = args.size
    if args.input is not None and not args.input.is_file():
        raise MissingFileError(f"--input {args.input} does not exist")
    engine = engines.load(args.model, args.backend)
    make_output_folder(args.out)
    options = VideoOptions(args.codec, args.pix_fmt, args.crf, args.batch, encoder_options=dict(args.encoder_option))
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.input or synthetic_clip(Path(tmp) / "clip.mp4", args.frames, h, w)
        count, infer_s, report, (lr_h, lr_w) = bench_video(engine, clip, options)
    result = {
        "machine": machine_info(),
        "clip": str(args.input or f"synthetic {h}x{w} x264"),
        "frames": count,
        "lr_size": f"{lr_h}x{lr_w}",
        "backend": f"{engine.backend} {engine.precision}",
        "batch": args.batch,
        "encoder": " ".join([args.codec, args.pix_fmt, f"crf {args.crf}",
                             *(f"{k}={v}" for k, v in args.encoder_option)]),
        "inference_fps": count / infer_s,
        "pipeline_fps": report.fps,
        "pipeline_share": report.fps / (count / infer_s),
    }
    columns = ["LR size", "frames", "backend", "batch", "encoder", "inference only fps", "pipeline fps",
               "pipeline / inference"]
    row = (result["lr_size"], result["frames"], result["backend"], args.batch, result["encoder"],
           f"{result['inference_fps']:.3f}", f"{result['pipeline_fps']:.3f}", f"{result['pipeline_share']:.1%}")
    table = "\n".join(markdown_table(columns, [row])) + "\n"
    write_report(args.out, "video_bench", result, f"Machine: {machine_line(result['machine'])}\n\n{table}")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
