"""One video in, one video out: the job, every check before the model loads, and the run, in
one process (engines.media.video.upscale_video) or in parallel segments (engines.jobs.segments).

    from msn_deploy.engines.jobs.video import VideoJob, run_video_job
    report = run_video_job(VideoJob(Path("clip.mp4"), Path("out/"), model="official"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy.engines import runtime
from msn_deploy.engines.jobs.folder import prepare_output
from msn_deploy.engines.jobs.segments import WORKERS as SEGMENT_WORKERS
from msn_deploy.engines.jobs.segments import SegmentJob, upscale_video_in_segments
from msn_deploy.engines.media.video import (
    OUTPUT_SUFFIXES,
    VideoError,
    VideoOptions,
    check_encoder,
    check_output_name,
    check_target,
    check_video_options,
    encoder_options,
    is_video,
    upscale_video,
)
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.engines.runtime.tiling import check_tiling
from msn_deploy.msn import MissingFileError, UsageError
from msn_deploy.msn.files import check_writable, refuse_overwriting_inputs
from msn_deploy.msn.formats.kinds import read_artifact_header


@dataclass(frozen=True)
class VideoJob:
    src: Path
    output: Path  # a video file name, or a folder to write `<stem>_x<scale><suffix>` into
    model: str = "official"
    runs_on: Target = Target()  # the backend, device and precision asked for ("auto": by file type)
    options: VideoOptions = field(default_factory=VideoOptions)
    overwrite: bool = False
    segment_seconds: float | None = None  # None: one process; else segments of about this length
    workers: int | None = None  # segment workers (local processes or Ray tasks)
    ray: str | None = None  # LOCAL ("local": a Ray of this machine) or HOST:PORT, for segments on Ray


@dataclass
class VideoJobReport:
    """What a video job did, in one process or in segments (segments and kept stay 0 for one process)."""

    dst: Path
    frames: int = 0
    seconds: float = 0.0
    reused: int = 0
    corrupt_packets: int = 0
    truncated: str | None = None
    copied_streams: list[str] = field(default_factory=list)
    segments: int = 0
    kept: int = 0  # segments finished by an earlier run and kept

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        """No packet was corrupt and the input is not cut short."""
        return not self.corrupt_packets and not self.truncated


def video_output_path(src: Path, output: Path, scale: int) -> Path:
    """`output` itself when it names a video, else a file in that folder named after the input
    (an AVI input gives .mkv: AVI is not written, see engines.media.video.OUTPUT_SUFFIXES)."""
    if is_video(output):
        check_output_name(output)
        return output
    if output.suffix:
        raise VideoError(f"output {output} is not a video file name ({', '.join(OUTPUT_SUFFIXES)}) or a folder")
    suffix = src.suffix if src.suffix.lower() in OUTPUT_SUFFIXES else ".mkv"
    return output / f"{src.stem}_x{scale}{suffix}"


def plan_video_job(job: VideoJob) -> Path:
    """Every check that needs no model: the input, the options, the encoder, the target size and
    the output; returns the output path. Raises UsageError subclasses."""
    if not job.src.is_file():
        raise MissingFileError(f"input {job.src} does not exist")
    if job.segment_seconds is None and (job.workers is not None or job.ray is not None):
        raise UsageError("a video runs in one process; --workers and --ray go with --segment-seconds S")
    options = job.options
    if options.tile is not None:
        check_tiling(options.tile, options.overlap)
    check_video_options(options, job.output)  # before the model is read; a folder's name has no muxer
    check_encoder(options.codec, options.pix_fmt, encoder_options(options))
    if not is_video(job.output) and not job.output.suffix:
        prepare_output(job.output, to_file=False)
    target = job.runs_on.resolve(job.model)  # by name: before a model is read or downloaded
    header = read_artifact_header(target.runnable(job.model), target.precision)
    check_target(job.src, header.scale, options)
    dst = video_output_path(job.src, job.output, header.scale)
    if dst != job.output:  # named after the input in that folder: its container is known only now
        check_video_options(options, dst)
    check_writable(dst)
    refuse_overwriting_inputs([dst], [job.src])
    if dst.exists() and not job.overwrite:
        raise UsageError(f"{dst} exists; use --overwrite to replace it")
    return dst


def run_video_job(job: VideoJob) -> VideoJobReport:
    """Plan the job (plan_video_job), then upscale the video into its output, atomically."""
    dst = plan_video_job(job)
    if job.segment_seconds is not None:
        model = ModelFiles.read(job.model)
        segment_job = SegmentJob(model, job.runs_on.resolve(model.name), job.options, job.segment_seconds,
                                 workers=job.workers or SEGMENT_WORKERS, ray=job.ray)
        done = upscale_video_in_segments(segment_job, job.src, dst)
        return VideoJobReport(dst, done.frames, done.seconds, done.reused, done.corrupt_packets, done.truncated,
                              done.copied_streams or [], done.segments, done.kept)
    engine = runtime.load(job.model, target=job.runs_on)
    done = upscale_video(engine, job.src, dst, job.options)
    return VideoJobReport(dst, done.frames, done.seconds, done.reused, done.corrupt_packets, done.truncated,
                          done.copied_streams)
