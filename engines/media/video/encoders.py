"""Checking an encoder, its pixel format and its options before any frame is decoded."""

from __future__ import annotations

from fractions import Fraction

from engines.media.video.options import VideoError


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
