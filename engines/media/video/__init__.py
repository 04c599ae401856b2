"""Upscale whole videos (see engines.media.video.pipeline); split by concern: options, encoders,
frames and colour, probing, streams, repeats, and the pipeline that runs them.

    from msn_deploy.engines.media.video import VideoOptions, upscale_video
    report = upscale_video(engines.load("official"), Path("clip.mp4"), Path("clip_x4.mkv"), VideoOptions())
"""

from msn_deploy.engines.media.video.encoders import check_encoder
from msn_deploy.engines.media.video.options import (
    OUTPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoError,
    VideoOptions,
    VideoReport,
    Window,
    check_output_name,
    check_video_options,
    encoder_options,
    is_video,
    muxer_for,
    muxer_options,
    output_frame_size,
)
from msn_deploy.engines.media.video.pipeline import upscale_video
from msn_deploy.engines.media.video.probing import check_target, open_video, truncation
from msn_deploy.engines.media.video.repeats import log_reuse
from msn_deploy.engines.media.video.streams import copy_streams

__all__ = ["OUTPUT_SUFFIXES", "VIDEO_SUFFIXES", "VideoError", "VideoOptions", "VideoReport", "Window", "check_encoder",
           "check_output_name", "check_target", "check_video_options", "copy_streams", "encoder_options", "is_video",
           "log_reuse", "muxer_for", "muxer_options", "open_video", "output_frame_size", "truncation", "upscale_video"]
