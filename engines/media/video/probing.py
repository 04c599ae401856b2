"""Opening a video and reading what it declares: size, frame count, duration, truncation."""

from __future__ import annotations

from pathlib import Path

from msn_deploy.engines.media.video.options import VideoError, VideoOptions, output_frame_size
from msn_deploy.msn import MIN_INPUT_SIZE


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


def check_target(src: Path, scale: int, options: VideoOptions) -> None:
    """Refuse a target the video's frames cannot reach, before the model loads (the first frame
    says how the frames display: the target is in display orientation)."""
    if options.target is not None:
        container, stream = open_video(src)
        try:
            output_frame_size(stream.codec_context.height, stream.codec_context.width, scale, options,
                              _display_rotation(container, stream))
        finally:
            container.close()


def _display_rotation(container, stream) -> int:
    """The rotation the stream's first frame declares (degrees counter-clockwise; 0 when none decodes)."""
    import av

    try:
        return int(next(container.decode(stream)).rotation or 0)
    except (StopIteration, av.error.FFmpegError):
        return 0


def sequential_step(container, stream) -> int | None:
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


def frame_count(stream) -> int | None:
    """Frames in the stream, for the progress bar: the header's count, else duration x rate."""
    if stream.frames:
        return stream.frames
    if stream.duration and stream.time_base and stream.average_rate:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    container_duration = stream.container.duration  # microseconds, when the stream has none
    if container_duration and stream.average_rate:
        return round(container_duration / 1e6 * float(stream.average_rate))
    return None
