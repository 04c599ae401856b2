"""What a video job is asked for: the options, the names read and written, the window of a
segment, the report, and the output frame size."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy.engines.media.target import TargetSize
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP
from msn_deploy.msn import UsageError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")  # read
# Written. AVI is read but not written: it stores no presentation timestamps, so B-frames would come
# out of order and a variable frame rate would be lost (measured: every AVI output was off).
OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".m4v")
# The CRF scale of each encoder that has one (FFmpeg clamps a value outside it without a word).
CRF_RANGES = {"libx264": 51, "libx265": 51, "libsvtav1": 63, "libvpx-vp9": 63, "libaom-av1": 63}
# WebM holds VP8, VP9 and AV1 video only.
WEBM_ENCODERS = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e")
# --reuse-repeats LEVELS above this would call real changes repeats (a codec's noise on a held
# picture measured up to 4.4 levels per block; a change that matters moves some block by tens).
MAX_REPEAT_LEVELS = 32.0


class VideoError(UsageError):
    """A video, codec or option that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class VideoOptions:
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int | None = 18
    batch: int = 1
    tile: int | None = None
    overlap: int = TILE_OVERLAP
    encoder_options: dict[str, str] = field(default_factory=dict)  # FFmpeg private options, e.g. preset
    target: TargetSize | None = None  # reduce each upscaled frame to fit this output size
    # A frame equal to the last upscaled one (to this many levels of 255 per 16x16 block on average,
    # 0: identical) reuses its output; None: off.
    reuse_repeats: float | None = None


@dataclass(frozen=True)
class Window:
    """A part of the video stream by presentation timestamp (the stream's time base): frames with
    start <= pts < end; None is open. A window is written as a video-only file (a segment)."""

    start: int | None = None
    end: int | None = None


@dataclass
class VideoReport:
    frames: int = 0
    seconds: float = 0.0
    corrupt_packets: int = 0
    copied_streams: list[str] = field(default_factory=list)
    truncated: str | None = None  # why the input looks cut short (fewer frames than it declares)
    reused: int = 0  # frames that repeated the last upscaled one (options.reuse_repeats)
    pts: list[int] = field(default_factory=list)  # of the frames written, in the input stream's time base
    rotation: int = 0  # the display rotation the input declares (degrees counter-clockwise)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def check_output_name(dst: Path) -> None:
    if dst.suffix.lower() == ".avi":
        raise VideoError(f"{dst}: AVI cannot store presentation timestamps (B-frames would come out of order and a "
                         "variable frame rate would be lost); write .mkv (any codec) or .mp4 instead")
    if dst.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VideoError(f"output {dst} is not a video name this tool writes ({', '.join(OUTPUT_SUFFIXES)})")


def muxer_for(dst: Path) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".avi": "avi"}.get(
        dst.suffix.lower())


def muxer_options(dst: Path) -> dict[str, str]:
    """Matroska and WebM would shift every stream so that none starts before 0: AAC copied from an
    MP4 starts 1024 samples early (its priming, which MP4 marks as skipped), so every video frame
    came out ~21 ms late. The input's times are kept instead, negative ones included."""
    return {"avoid_negative_ts": "disabled"} if muxer_for(dst) in ("matroska", "webm") else {}


def encoder_options(options: VideoOptions) -> dict[str, str]:
    """The encoder's options: the CRF where the encoder has one, then the user's own."""
    crf = {"crf": str(options.crf)} if options.crf is not None and options.codec in CRF_RANGES else {}
    return crf | options.encoder_options


def output_frame_size(lr_height: int, lr_width: int, scale: int, options: VideoOptions,
                      rotation: int = 0) -> tuple[int, int]:
    """(height, width) of the output frames as stored: the model's scale, or the target's fit (even
    sizes, which chroma-subsampled formats need). A target is in display orientation, as for EXIF
    images: frames stored a quarter turn from how they display (`rotation`) fit it turned."""
    if options.target is None:
        return lr_height * scale, lr_width * scale
    if rotation % 180:
        width, height = options.target.output_size(lr_width, lr_height, scale, even=True)
        return height, width
    return options.target.output_size(lr_height, lr_width, scale, even=True)


def check_video_options(options: VideoOptions, dst: Path) -> None:
    """Refuse values FFmpeg would clamp or a muxer refuse mid-run, and a repeat threshold that
    would freeze the picture: before any frame is decoded."""
    top = CRF_RANGES.get(options.codec)
    if options.crf is not None and top is not None and not 0 <= options.crf <= top:
        raise VideoError(f"--crf {options.crf} is outside {options.codec}'s scale 0-{top} (lower is better; 18 is "
                         "visually lossless for x264)")
    if options.reuse_repeats is not None and not 0 <= options.reuse_repeats <= MAX_REPEAT_LEVELS:
        raise VideoError(f"--reuse-repeats {options.reuse_repeats:g} is outside 0-{MAX_REPEAT_LEVELS:g} levels: above "
                         "that, real changes would count as repeats and the picture would freeze (0: identical "
                         "frames only; 4-8 absorbs a lossy codec's noise)")
    if muxer_for(dst) == "webm" and options.codec not in WEBM_ENCODERS:
        raise VideoError(f"{dst}: WebM holds VP9 or AV1 video, not {options.codec}; use --codec libvpx-vp9 (or "
                         "libsvtav1), or write .mkv / .mp4")
