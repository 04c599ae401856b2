"""Checking an encoder, its pixel format and its options before any frame is decoded; the
options that carry the input's HDR10 metadata."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from fractions import Fraction

from msn_deploy.engines.media.video.frames import Hdr10
from msn_deploy.engines.media.video.options import VideoError

log = logging.getLogger(__name__)

# Encoders that take HDR10 metadata, and the option that holds their parameters (KEY=VALUE:...).
HDR10_PARAMS = {"libx265": "x265-params", "libsvtav1": "svtav1-params"}


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
        with scheduling_kept():
            context.open()
    except (av.error.FFmpegError, ValueError) as exc:
        given = " ".join(f"{k}={v}" for k, v in options.items())
        hint = f"see `ffmpeg -h encoder={codec}`"
        raise VideoError(f"encoder {codec} refuses the options {given} ({exc}); {hint}") from None
    unused = sorted(context.options)
    if unused:
        raise VideoError(f"encoder {codec} has no option {', '.join(unused)}; see `ffmpeg -h encoder={codec}`")


def with_hdr10(codec: str, options: dict[str, str], hdr: Hdr10 | None) -> dict[str, str]:
    """The encoder's options with the input's HDR10 metadata added (FFmpeg passes frame metadata to
    no encoder: the encoders' own parameters carry it); the user's own values of it are kept."""
    key = HDR10_PARAMS.get(codec)
    if hdr is None:
        return options
    if key is None:
        log.warning("the input's HDR10 metadata (mastering display, light levels) cannot be written by %s; it is "
                    "dropped (use --codec libx265 or libsvtav1 with --pix-fmt yuv420p10le to keep it)", codec)
        return options
    given = [p for p in options.get(key, "").split(":") if p]
    names = {p.split("=", 1)[0] for p in given}
    params = [p for p in _hdr10_params(codec, hdr) if p.split("=", 1)[0] not in names]
    return options | {key: ":".join(given + params)} if params else options


def _hdr10_params(codec: str, hdr: Hdr10) -> list[str]:
    x265 = codec == "libx265"
    params = []
    if hdr.display is not None:
        rx, ry, gx, gy, bx, by, wx, wy, low, high = hdr.display
        if x265:  # whole numbers: chromaticity in 0.00002 units, luminance in 0.0001 cd/m2
            xy = lambda x, y: f"({round(x * 50000)},{round(y * 50000)})"  # noqa: E731
            luminance = f"L({round(high * 10000)},{round(low * 10000)})"
        else:  # SVT-AV1: decimals
            xy = lambda x, y: f"({x:.5f},{y:.5f})"  # noqa: E731
            luminance = f"L({high:.4f},{low:.4f})"
        name = "master-display" if x265 else "mastering-display"
        params.append(f"{name}=G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}{luminance}")
    if hdr.light is not None:
        params.append(f"{'max-cll' if x265 else 'content-light'}={hdr.light[0]},{hdr.light[1]}")
    return params


@contextlib.contextmanager
def scheduling_kept() -> Iterator[None]:
    """Put back the calling thread's scheduling policy after opening encoders: SVT-AV1 run as root
    makes the thread that opens it real-time (SCHED_FIFO 99), and every process started from it
    afterwards inherits that; a real-time process on a busy core never yields it (a test hung so)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if os.sched_getscheduler(0) != policy or os.sched_getparam(0) != param:
            os.sched_setscheduler(0, policy, param)
