"""The output's streams: the upscaled video stream, and every other stream copied or dropped."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

from msn_deploy.engines.media.video.encoders import with_hdr10
from msn_deploy.engines.media.video.frames import Colour
from msn_deploy.engines.media.video.options import VideoOptions, encoder_options, output_frame_size

log = logging.getLogger(__name__)

ATTACHMENT_MUXERS = ("matroska",)


def add_video_stream(output, in_video, scale: int, options: VideoOptions, colour: Colour):
    rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
    stream = output.add_stream(options.codec, rate=rate)
    stream.height, stream.width = output_frame_size(in_video.codec_context.height, in_video.codec_context.width,
                                                    scale, options, colour.rotation)
    stream.pix_fmt = options.pix_fmt
    stream.time_base = in_video.time_base
    context = stream.codec_context
    context.time_base = in_video.time_base
    context.colorspace, context.color_range = colour.colorspace, colour.color_range
    if colour.primaries:
        context.color_primaries = colour.primaries
    if colour.trc:
        context.color_trc = colour.trc
    context.options = with_hdr10(options.codec, encoder_options(options), colour.hdr10)
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
