"""Upscale whole videos: decode, infer and encode run concurrently; every other stream is copied.

    python -m msn_deploy.engines.upscale clip.mp4 -o clip_x4.mkv --model msn_x4_fp32.onnx --batch 4

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
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from msn_deploy.engines.media.stages import END, Stage, get, put, raise_stage_error
from msn_deploy.engines.media.target import resize_to
from msn_deploy.engines.media.video.encoders import check_encoder, scheduling_kept
from msn_deploy.engines.media.video.frames import Colour, Frame, colour_of, from_rgb, to_rgb
from msn_deploy.engines.media.video.options import (
    VideoError,
    VideoOptions,
    VideoReport,
    Window,
    check_output_name,
    check_video_options,
    encoder_options,
    muxer_for,
    muxer_options,
    output_frame_size,
)
from msn_deploy.engines.media.video.probing import frame_count, open_video, sequential_step, truncation
from msn_deploy.engines.media.video.repeats import Repeats, log_reuse
from msn_deploy.engines.media.video.streams import add_video_stream, copy_streams
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.msn.files import atomic_output

log = logging.getLogger(__name__)

QUEUE_BATCHES = 4  # bounded hand-over between stages: memory stays flat whatever the length
STAGE_JOIN_S = 30  # a stage notices a stop within one frame; this bounds a stage stuck in FFmpeg


def upscale_video(engine: Engine, src: Path, dst: Path, options: VideoOptions, window: Window | None = None,
                  progress: bool = True) -> VideoReport:
    """Upscale every frame of `src`'s first video stream into `dst`; see the module docstring.
    With a `window`, only its frames, into a video-only `dst` (engines.jobs.segments joins them)."""
    import av

    check_output_name(dst)
    check_video_options(options, dst)
    check_encoder(options.codec, options.pix_fmt, encoder_options(options))
    container, in_video = open_video(src)
    if window is not None and window.start is not None:
        # Back to the keyframe at or before the start; the frames before it are decoded and dropped.
        container.seek(window.start, stream=in_video, backward=True, any_frame=False)
    report = VideoReport()
    decoding = _Decoding(container, in_video, src, window, report, queue.Queue(maxsize=QUEUE_BATCHES * options.batch))
    with atomic_output(dst) as tmp:
        output = av.open(str(tmp), "w", format=muxer_for(dst), options=muxer_options(dst))
        try:
            _run_stages(engine, decoding, output, dst, options, progress)
        finally:
            output.close()
            container.close()
    if report.corrupt_packets:
        log.warning("%s: %d corrupt video packets were skipped", src, report.corrupt_packets)
    log_reuse(src, report.reused, report.frames)
    if report.truncated:
        log.warning("%s looks truncated: %s", src, report.truncated)
    return report


class _Decoding:
    """The decode stage: demuxes the input, puts its video frames (RGB, in display order) on
    `frames`, other streams' packets on `passthrough` (muxed by the encoder thread), and the first
    frame's colour (None: no frame) on `first_frame`."""

    def __init__(self, container, in_video, src: Path, window: Window | None, report: VideoReport,
                 frames: queue.Queue) -> None:
        self.container, self.in_video, self.src, self.window, self.report = container, in_video, src, window, report
        self.frames = frames
        self.passthrough: queue.Queue = queue.Queue()
        self.first_frame: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        # AVI stores no presentation timestamps: what FFmpeg reads back for B-frames is out of order.
        # Frames do come out in display order, so the n-th one is shown at n frame durations.
        self.frame_step = sequential_step(container, in_video)

    def run(self) -> None:
        colour, index, last_pts = None, 0, None
        window = self.window
        for packet in self.container.demux(self.in_video) if window is not None else self.container.demux():
            if self.stop.is_set():
                return
            if packet.stream.index != self.in_video.index:
                if packet.dts is not None:
                    self.passthrough.put(packet)
                continue
            for frame in self._decoded(packet):
                if window is not None and window.start is not None and frame.pts < window.start:
                    continue
                if window is not None and window.end is not None and frame.pts >= window.end:
                    # Frames leave the decoder in display order: none still to come is inside the window.
                    if colour is None:
                        self.first_frame.put(None)
                    put(self.frames, END, self.stop)
                    return
                if colour is None:
                    colour = self._first_colour(frame)
                pts = frame.pts if self.frame_step is None else index * self.frame_step
                if not put(self.frames, Frame(index, pts, to_rgb(frame, colour)), self.stop):
                    return
                index += 1
                last_pts = pts if pts is not None else last_pts
        if colour is None:
            self.first_frame.put(None)
        if window is None:
            self.report.truncated = truncation(self.container, self.in_video, index, last_pts)
        put(self.frames, END, self.stop)

    def _decoded(self, packet) -> list:
        import av

        try:
            return packet.decode()
        except av.error.InvalidDataError as exc:
            self.report.corrupt_packets += 1
            log.warning("corrupt video packet at pts %s skipped (%s)", packet.pts, exc)
            return []

    def _first_colour(self, frame) -> Colour:
        colour = colour_of(frame)
        self.first_frame.put(colour)
        if frame.interlaced_frame:
            log.warning("%s is interlaced: its frames are upscaled as progressive pictures (combing stays); "
                        "deinterlace first, e.g. ffmpeg -i IN -vf bwdif OUT", self.src)
        return colour


def _run_stages(engine: Engine, decoding: _Decoding, output, dst: Path, options: VideoOptions, progress: bool) -> None:
    """Decode, infer (here) and encode side by side into `output`; on any failure every stage is
    stopped and joined before the containers close."""
    src, in_video, report, stop = decoding.src, decoding.in_video, decoding.report, decoding.stop
    frames_out: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES * options.batch)
    stages: list[Stage] = []
    try:
        decoder = Stage("decode", decoding.run)
        stages.append(decoder)
        decoder.start()
        colour = _first(decoding.first_frame, decoder)
        if colour is None:
            raise VideoError(f"{src} has no decodable video frames")
        warn_if_depth_is_lost(src, colour, options.pix_fmt)
        out_video = add_video_stream(output, in_video, engine.scale, options, colour)
        report.rotation = colour.rotation
        copied = copy_streams(decoding.container, output, in_video, dst) if decoding.window is None else {}
        report.copied_streams = [f"{s.type}:{s.codec_context.name}" for s in copied.values()]
        with scheduling_kept():  # the encoder opens here, in this thread, rather than in the stage
            output.start_encoding()
        encoder = Stage("encode", lambda: _encode(output, out_video, in_video.time_base, copied, frames_out,
                                                   decoding.passthrough, colour, options.pix_fmt, stop))
        stages.append(encoder)
        encoder.start()
        started = time.perf_counter()
        with tqdm(total=frame_count(in_video), unit="frame", desc=src.name, dynamic_ncols=True,
                  disable=not progress) as bar:
            try:
                _infer_frames(engine, decoding.frames, frames_out, options, stop, bar, [decoder, encoder], report)
                put(frames_out, END, stop)
                encoder.join()
            except BaseException:
                stop.set()
                raise
            finally:
                report.seconds = time.perf_counter() - started
        for stage in stages:
            stage.join(timeout=STAGE_JOIN_S)
            if stage.error is not None:
                raise stage.error
    except BaseException as exc:
        stop.set()
        # The stages use both containers: closing one under a thread still inside FFmpeg crashed
        # the process (a segment worker stopped by SIGTERM then left its temporary part behind).
        for stage in stages:
            stage.join(timeout=STAGE_JOIN_S)
        log.error("stopped at frame %d of %s (%s); no output was written", report.frames, src,
                  type(exc).__name__ if isinstance(exc, KeyboardInterrupt) else exc)
        raise


def _first(first_frame: queue.Queue, decoder: Stage) -> Colour | None:
    """Wait for the decoder's first frame (or its failure)."""
    while True:
        try:
            return first_frame.get(timeout=0.1)
        except queue.Empty:
            if not decoder.is_alive():
                if decoder.error is not None:
                    raise decoder.error from None
                return None


def _batches(frames_in: queue.Queue, size: int, stop: threading.Event) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
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


def _infer_frames(engine: Engine, frames_in, frames_out, options: VideoOptions, stop, bar, stages,
                  report: VideoReport) -> None:
    """Run the engine over the decoded frames; report.frames counts the frames done so far."""
    repeats = Repeats(options.reuse_repeats)
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
                picture = resize_to(picture, *output_frame_size(*frame.rgb.shape[:2], engine.scale, options,
                                                                     report.rotation))
            if not put(frames_out, Frame(frame.index, frame.pts, picture), stop):
                return
        report.frames += len(batch)
        report.pts += [f.pts for f in batch]
        report.reused += len(batch) - len(fresh)
        bar.update(len(batch))


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
        frame = from_rgb(item.rgb, colour, pix_fmt)
        frame.pts = item.pts
        frame.time_base = pts_time_base
        mux_passthrough()
        output.mux(out_video.encode(frame))
    if stop.is_set():
        return
    output.mux(out_video.encode(None))
    mux_passthrough()


def warn_if_depth_is_lost(src: Path, colour: Colour, pix_fmt: str) -> None:
    """A 10-bit (or deeper) source written in an 8-bit pixel format loses its depth: say so, with the flag."""
    import av

    bits = max(c.bits for c in av.VideoFormat(pix_fmt).components)
    if colour.deep and bits <= 8:
        log.warning("%s has more than 8 bits per sample; --pix-fmt %s writes 8: pass --pix-fmt yuv420p10le (x264, "
                    "x265, AV1) to keep the depth", src, pix_fmt)
