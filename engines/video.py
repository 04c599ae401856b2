"""Upscale whole videos: decode, infer and encode run concurrently; every other stream is copied.

    python -m engines.upscale clip.mp4 -o clip_x4.mkv --model msn_x4_fp32.onnx --batch 4

* Video frames go to RGB with the matrix and range the stream declares (BT.601/709/2020,
  limited/full) and back with the same; the output stream is tagged with them, and with the
  input's primaries, transfer and rotation. 8-bit sources use 8-bit RGB, deeper ones 16-bit.
* Each output frame keeps its input frame's timestamp (variable frame rate included); audio,
  subtitle and data streams are remuxed without re-encoding.
* The output is written to a temporary file beside the target and renamed at the end; a failure
  or Ctrl-C leaves nothing and says at which frame it stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engines.base import Engine
from engines.stages import END, Stage, get, put, raise_stage_error
from engines.target import TargetSize, resize_to
from export import defaults
from export.files import atomic_output
from msn import MIN_INPUT_SIZE, UsageError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")  # read
# Written. AVI is read but not written: it stores no presentation timestamps, so B-frames would come
# out of order and a variable frame rate would be lost (measured: every AVI output was off).
OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".m4v")
ATTACHMENT_MUXERS = ("matroska",)
CRF_ENCODERS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1")
QUEUE_BATCHES = 4  # bounded hand-over between stages: memory stays flat whatever the length
REPEAT_BLOCK = 16  # px: the blocks --reuse-repeats LEVELS compares


class VideoError(UsageError):
    """A video, codec or option that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class VideoOptions:
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int | None = 18
    batch: int = 1
    tile: int | None = None
    overlap: int = defaults.TILE_OVERLAP
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


def encoder_options(options: VideoOptions) -> dict[str, str]:
    """The encoder's options: the CRF where the encoder has one, then the user's own."""
    crf = {"crf": str(options.crf)} if options.crf is not None and options.codec in CRF_ENCODERS else {}
    return crf | options.encoder_options


def check_encoder(codec: str, pix_fmt: str, options: dict[str, str] | None = None) -> None:
    """Raise VideoError unless FFmpeg has this video encoder, it takes this pixel format, and it
    opens with these options: an unknown option name or a bad value is refused here, before any
    frame is decoded, rather than ignored or failing (or crashing) mid-encode."""
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install -e '.[video]'") from None

    try:
        encoder = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise VideoError(f"FFmpeg here has no encoder {codec!r}; try libx264, libx265, libsvtav1, ffv1 "
                         "(see `ffmpeg -encoders`)") from None
    if encoder.type != "video":
        raise VideoError(f"{codec!r} is a {encoder.type} encoder, not a video one")
    formats = [f.name for f in encoder.video_formats or []]
    if formats and pix_fmt not in formats:
        raise VideoError(f"encoder {codec} does not take --pix-fmt {pix_fmt}; it takes {', '.join(formats)}")
    if options:
        _probe_encoder(codec, pix_fmt, options)


def _probe_encoder(codec: str, pix_fmt: str, options: dict[str, str]) -> None:
    """Open the encoder once on a small frame size with the options; FFmpeg leaves the names it
    did not use in the dictionary, and fails to open on a value it refuses."""
    import av

    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 64, pix_fmt
    context.time_base, context.framerate = Fraction(1, 25), Fraction(25)
    context.options = dict(options)
    try:
        context.open()
    except (av.error.FFmpegError, ValueError) as exc:
        given = " ".join(f"{k}={v}" for k, v in options.items())
        hint = f"see `ffmpeg -h encoder={codec}`"
        raise VideoError(f"encoder {codec} refuses the options {given} ({exc}); {hint}") from None
    unused = sorted(context.options)
    if unused:
        raise VideoError(f"encoder {codec} has no option {', '.join(unused)}; see `ffmpeg -h encoder={codec}`")


@dataclass(frozen=True)
class _Colour:
    """What the input declares (read off its first frame), carried to the output."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int
    deep: bool  # more than 8 bits per sample: work in 16-bit RGB
    rotation: int  # display rotation, degrees counter-clockwise


def _colour_of(frame) -> _Colour:
    from av.video.reformatter import ColorRange, Colorspace

    # Unspecified matrices are treated as FFmpeg does (BT.601); unspecified range as limited (MPEG).
    colorspace = int(frame.colorspace) or int(Colorspace.ITU601)
    color_range = int(frame.color_range) or int(ColorRange.MPEG)
    deep = any(c.bits > 8 for c in frame.format.components)
    return _Colour(colorspace, color_range, int(frame.color_primaries), int(frame.color_trc), deep,
                   int(frame.rotation or 0))


def _to_rgb(frame, colour: _Colour) -> np.ndarray:
    """Decoded frame -> HxWx3 float32 in [0, 1], with the stream's own matrix and range."""
    fmt, peak = ("rgb48le", 65535.0) if colour.deep else ("rgb24", 255.0)
    # One swscale thread: the inference stage owns the cores (and sliced conversion of some
    # formats gave wrong rows under load with the FFmpeg 8.1 that PyAV 18 bundles).
    rgb = frame.reformat(format=fmt, src_colorspace=colour.colorspace, src_color_range=colour.color_range, threads=1)
    return rgb.to_ndarray().astype(np.float32) / peak


def _from_rgb(rgb: np.ndarray, colour: _Colour, pix_fmt: str):
    """HxWx3 float in [0, 1] -> a frame in the encoder's pixel format, matrix, range and tags."""
    import av

    peak, fmt, dtype = (65535.0, "rgb48le", np.uint16) if colour.deep else (255.0, "rgb24", np.uint8)
    pixels = np.round(np.clip(rgb, 0.0, 1.0) * peak).astype(dtype)
    frame = av.VideoFrame.from_ndarray(pixels, format=fmt)
    return frame.reformat(format=pix_fmt, dst_colorspace=colour.colorspace, dst_color_range=colour.color_range,
                          dst_color_primaries=colour.primaries or None, dst_color_trc=colour.trc or None, threads=1)


def open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path} is not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if min(width, height) < MIN_INPUT_SIZE:
        container.close()
        raise VideoError(f"{path} is {width}x{height}; MSN needs frames of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
    return container, stream


@dataclass
class _Frame:
    index: int
    pts: int | None
    rgb: np.ndarray


def upscale_video(engine: Engine, src: Path, dst: Path, options: VideoOptions, window: Window | None = None,
                  progress: bool = True) -> VideoReport:
    """Upscale every frame of `src`'s first video stream into `dst`; see the module docstring.
    With a `window`, only its frames, into a video-only `dst` (engines.jobs.segments joins them)."""
    import av

    check_encoder(options.codec, options.pix_fmt, encoder_options(options))
    check_output_name(dst)
    container, in_video = open_video(src)
    if window is not None and window.start is not None:
        # Back to the keyframe at or before the start; the frames before it are decoded and dropped.
        container.seek(window.start, stream=in_video, backward=True, any_frame=False)
    report = VideoReport()
    total = _frame_count(in_video)
    frames_in: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES * options.batch)
    frames_out: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES * options.batch)
    passthrough: queue.Queue = queue.Queue()  # packets of copied streams, muxed by the encoder thread
    stop = threading.Event()
    first_frame: queue.Queue = queue.Queue(maxsize=1)

    # AVI stores no presentation timestamps: what FFmpeg reads back for B-frames is out of order.
    # Frames do come out in display order, so the n-th one is shown at n frame durations.
    frame_step = _sequential_step(container, in_video)

    def decode() -> None:
        colour, index, last_pts = None, 0, None
        for packet in container.demux(in_video) if window is not None else container.demux():
            if stop.is_set():
                return
            if packet.stream.index != in_video.index:
                if packet.dts is not None:
                    passthrough.put(packet)
                continue
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as exc:
                report.corrupt_packets += 1
                log.warning("corrupt video packet at pts %s skipped (%s)", packet.pts, exc)
                continue
            for frame in decoded:
                if window is not None and window.start is not None and frame.pts < window.start:
                    continue
                if window is not None and window.end is not None and frame.pts >= window.end:
                    # Frames leave the decoder in display order: none still to come is inside the window.
                    if colour is None:
                        first_frame.put(None)
                    put(frames_in, END, stop)
                    return
                if colour is None:
                    colour = _colour_of(frame)
                    first_frame.put(colour)
                    if frame.interlaced_frame:
                        log.warning("%s is interlaced: its frames are upscaled as progressive pictures (combing "
                                    "stays); deinterlace first, e.g. ffmpeg -i IN -vf bwdif OUT", src)
                pts = frame.pts if frame_step is None else index * frame_step
                if not put(frames_in, _Frame(index, pts, _to_rgb(frame, colour)), stop):
                    return
                index += 1
                last_pts = pts if pts is not None else last_pts
        if colour is None:
            first_frame.put(None)
        if window is None:
            report.truncated = truncation(container, in_video, index, last_pts)
        put(frames_in, END, stop)

    with atomic_output(dst) as tmp:
        output = av.open(str(tmp), "w", format=muxer_for(dst))
        try:
            decoder = Stage("decode", decode)
            decoder.start()
            colour = _first(first_frame, decoder)
            if colour is None:
                raise VideoError(f"{src} has no decodable video frames")
            out_video = _add_video_stream(output, in_video, engine.scale, options, colour)
            report.rotation = colour.rotation
            copied = copy_streams(container, output, in_video, dst) if window is None else {}
            report.copied_streams = [f"{s.type}:{s.codec_context.name}" for s in copied.values()]
            encoder = Stage("encode", lambda: _encode(output, out_video, in_video.time_base, copied, frames_out,
                                                       passthrough, colour, options.pix_fmt, stop))
            encoder.start()
            started = time.perf_counter()
            with tqdm(total=total, unit="frame", desc=src.name, dynamic_ncols=True, disable=not progress) as bar:
                try:
                    _infer_frames(engine, frames_in, frames_out, options, stop, bar, [decoder, encoder], report)
                    put(frames_out, END, stop)
                    encoder.join()
                except BaseException:
                    stop.set()
                    raise
                finally:
                    report.seconds = time.perf_counter() - started
            for stage in (decoder, encoder):
                stage.join(timeout=30)
                if stage.error is not None:
                    raise stage.error
        except BaseException as exc:
            stop.set()
            log.error("stopped at frame %d of %s (%s); no output was written", report.frames, src,
                      type(exc).__name__ if isinstance(exc, KeyboardInterrupt) else exc)
            raise
        finally:
            output.close()
            container.close()
    if report.corrupt_packets:
        log.warning("%s: %d corrupt video packets were skipped", src, report.corrupt_packets)
    log_reuse(src, report.reused, report.frames)
    if report.truncated:
        log.warning("%s looks truncated: %s", src, report.truncated)
    return report


def log_reuse(src: Path, reused: int, frames: int) -> None:
    if reused:
        log.info("%s: %d of %d frames repeated the one before and reused its output", src, reused, frames)


def _sequential_step(container, stream) -> int | None:
    """For containers without presentation timestamps (AVI): one frame's duration in the stream's
    time base, to number frames by; None where the container's own timestamps are used."""
    rate = stream.average_rate or stream.guessed_rate
    if container.format.name != "avi" or not rate or not stream.time_base:
        return None
    return max(1, round(1 / (rate * stream.time_base)))


def _declared_seconds(container, stream) -> float | None:
    """The video stream's own duration: its header field, Matroska's DURATION tag, or the
    container's when the video is its only stream (audio may run longer than the video)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    if container.duration and len(container.streams) == 1:
        return container.duration / 1e6
    return None


def truncation(container, stream, frames: int, last_pts: int | None) -> str | None:
    """Why the decoded frames fall short of what the file declares (None when they do not): fewer
    frames than the header's count, or the last frame ending well before the declared duration."""
    if stream.frames and frames < stream.frames:
        return f"{frames} of the {stream.frames} frames it declares were decoded"
    rate = stream.average_rate or stream.guessed_rate
    declared_s = _declared_seconds(container, stream)
    if last_pts is None or not rate or not declared_s:
        return None
    frame_s = 1 / float(rate)
    start_s = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    end_s = float(last_pts * stream.time_base) - start_s + frame_s
    if declared_s - end_s > max(2 * frame_s, 0.1):
        return (f"decoding stopped at {end_s:.2f} s of the {declared_s:.2f} s it declares "
                f"(about {round((declared_s - end_s) / frame_s)} frames missing)")
    return None


def _frame_count(stream) -> int | None:
    """Frames in the stream, for the progress bar: the header's count, else duration x rate."""
    if stream.frames:
        return stream.frames
    if stream.duration and stream.time_base and stream.average_rate:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    container_duration = stream.container.duration  # microseconds, when the stream has none
    if container_duration and stream.average_rate:
        return round(container_duration / 1e6 * float(stream.average_rate))
    return None


def _first(first_frame: queue.Queue, decoder: Stage) -> _Colour | None:
    """Wait for the decoder's first frame (or its failure)."""
    while True:
        try:
            return first_frame.get(timeout=0.1)
        except queue.Empty:
            if not decoder.is_alive():
                if decoder.error is not None:
                    raise decoder.error from None
                return None


def muxer_for(dst: Path) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".avi": "avi"}.get(
        dst.suffix.lower())


def _add_video_stream(output, in_video, scale: int, options: VideoOptions, colour: _Colour):
    rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
    stream = output.add_stream(options.codec, rate=rate)
    stream.height, stream.width = output_frame_size(in_video.codec_context.height, in_video.codec_context.width,
                                                    scale, options)
    stream.pix_fmt = options.pix_fmt
    stream.time_base = in_video.time_base
    context = stream.codec_context
    context.time_base = in_video.time_base
    context.colorspace, context.color_range = colour.colorspace, colour.color_range
    if colour.primaries:
        context.color_primaries = colour.primaries
    if colour.trc:
        context.color_trc = colour.trc
    context.options = encoder_options(options)
    stream.metadata.update({k: v for k, v in in_video.metadata.items() if k in ("language", "title")})
    if colour.rotation:
        stream.set_display_rotation(colour.rotation)
    return stream


def copy_streams(container, output, in_video, dst: Path) -> dict[int, object]:
    """Add every audio, subtitle and data stream to the output for packet copy; embed
    attachments where the container carries them; say what is dropped."""
    copied = {}
    for stream in container.streams:
        if stream.index == in_video.index:
            continue
        if stream.type == "video":
            log.warning("video stream %d is dropped: only the first video stream (%d) is upscaled", stream.index,
                        in_video.index)
            continue
        if stream.type == "attachment":
            if output.format.name in ATTACHMENT_MUXERS:
                output.add_attachment(stream.name, stream.mimetype, bytes(stream.data))
            else:
                log.warning("attachment %r (%s) is dropped: only .mkv outputs carry attachments", stream.name,
                            stream.mimetype)
            continue
        if stream.type not in ("audio", "subtitle", "data"):
            log.warning("stream %d (%s) is dropped", stream.index, stream.type)
            continue
        try:
            copied[stream.index] = output.add_stream_from_template(stream)
        except (ValueError, NotImplementedError) as exc:
            log.warning("stream %d (%s) cannot go into %s and is dropped: %s", stream.index, stream.type,
                        output.format.name, exc)
    return copied


def _batches(frames_in: queue.Queue, size: int, stop: threading.Event) -> Iterator[list[_Frame]]:
    batch: list[_Frame] = []
    while True:
        item = get(frames_in, stop)
        if item is END:
            break
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def output_frame_size(lr_height: int, lr_width: int, scale: int, options: VideoOptions) -> tuple[int, int]:
    """(height, width) of the output frames: the model's scale, or the target's fit (even sizes,
    which chroma-subsampled formats need)."""
    if options.target is None:
        return lr_height * scale, lr_width * scale
    return options.target.output_size(lr_height, lr_width, scale, even=True)


def check_target(src: Path, scale: int, options: VideoOptions) -> None:
    """Refuse a target the video's frames cannot reach, before the model loads."""
    if options.target is not None:
        container, stream = open_video(src)
        try:
            output_frame_size(stream.codec_context.height, stream.codec_context.width, scale, options)
        finally:
            container.close()


def _infer_frames(engine: Engine, frames_in, frames_out, options: VideoOptions, stop, bar, stages,
                  report: VideoReport) -> None:
    """Run the engine over the decoded frames; report.frames counts the frames done so far."""
    repeats = _Repeats(options.reuse_repeats)
    for batch in _batches(frames_in, options.batch, stop):
        raise_stage_error(stages)
        fresh = repeats.fresh_frames(batch)
        sr = engine(np.stack([f.rgb.transpose(2, 0, 1) for f in fresh]), tile=options.tile,
                    overlap=options.overlap) if fresh else []
        upscaled = dict(zip((id(f) for f in fresh), sr))
        for frame in batch:
            out = repeats.output_for(frame, upscaled)
            picture = out.transpose(1, 2, 0)
            if options.target is not None:
                picture = resize_to(picture, *output_frame_size(*frame.rgb.shape[:2], engine.scale, options))
            if not put(frames_out, _Frame(frame.index, frame.pts, picture), stop):
                return
        report.frames += len(batch)
        report.pts += [f.pts for f in batch]
        report.reused += len(batch) - len(fresh)
        bar.update(len(batch))


class _Repeats:
    """Which frames repeat the last one the model saw, and the output each one takes.

    Equal means identical, or with `levels`, no REPEAT_BLOCK x REPEAT_BLOCK block differing by
    more than `levels` (of 255) on average: a lossy codec re-encodes a held picture a few levels
    off here and there (measured up to 4.4 at x264 crf 18), while a change that matters (a moving
    mouth in a static shot) moves some block by tens of levels. Frames are compared with the last
    *upscaled* frame, not the one just before, so a slow fade cannot creep past the threshold a
    step at a time."""

    def __init__(self, levels: float | None) -> None:
        self.levels = levels
        self.reference: _Frame | None = None  # the last frame the model saw
        self.last_output: np.ndarray | None = None

    def _same(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return False
        if self.levels == 0:
            return np.array_equal(a, b)
        difference = np.abs(a - b).mean(axis=2)
        h, w = difference.shape
        blocks = cv2.resize(difference, (-(-w // REPEAT_BLOCK), -(-h // REPEAT_BLOCK)), interpolation=cv2.INTER_AREA)
        return float(blocks.max()) * 255 <= self.levels

    def fresh_frames(self, batch: list[_Frame]) -> list[_Frame]:
        """The frames of `batch` the model must see (in order); the others repeat the one before them."""
        if self.levels is None:
            return batch
        fresh = []
        for frame in batch:
            if self.reference is None or not self._same(frame.rgb, self.reference.rgb):
                fresh.append(frame)
                self.reference = frame
        return fresh

    def output_for(self, frame: _Frame, upscaled: dict[int, np.ndarray]) -> np.ndarray:
        out = upscaled.get(id(frame))
        if out is None:  # a repeat: the output of the last fresh frame, which came before it
            return self.last_output
        self.last_output = out
        return out


def _encode(output, out_video, pts_time_base: Fraction, copied, frames_out, passthrough, colour, pix_fmt: str,
            stop) -> None:
    """Encode and mux. Frames carry their input pts in the input stream's time base: saying so
    (frame.time_base) lets PyAV rescale them exactly into the encoder's time base, and the muxer
    then into whatever time base the output container chose for itself when it was opened."""
    def mux_passthrough() -> None:
        while True:
            try:
                packet = passthrough.get_nowait()
            except queue.Empty:
                return
            target = copied.get(packet.stream.index)
            if target is not None:  # packets of dropped streams are discarded
                packet.stream = target
                output.mux(packet)

    while True:
        item = get(frames_out, stop)
        if item is END:
            break
        frame = _from_rgb(item.rgb, colour, pix_fmt)
        frame.pts = item.pts
        frame.time_base = pts_time_base
        mux_passthrough()
        output.mux(out_video.encode(frame))
    if stop.is_set():
        return
    output.mux(out_video.encode(None))
    mux_passthrough()
