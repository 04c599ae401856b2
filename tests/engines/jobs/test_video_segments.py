"""Long videos in parallel segments and the reuse of repeated frames: the joined output equals
the one-process output, every input timestamp is kept, a rerun keeps the finished segments."""

from __future__ import annotations

import logging
import os
import signal
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from msn_deploy.engines import upscale
from msn_deploy.engines.jobs.segments import parts_folder
from tests.engines.jobs.test_folder_jobs import job_process, wait_for
from tests.util import SUBPROCESS_TIMEOUT_S, exit_code

av = pytest.importorskip("av", reason="PyAV is not installed (pip install -e '.[video]')")

from tests.engines.media.test_video import H, W, coded_clip, frame_times, frames_rgb, make_clip  # noqa: E402

FFV1 = ["--codec", "ffv1", "--pix-fmt", "bgr0"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from msn_deploy.msn import random_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(random_model(seed=0, num_feat=8, num_block=1).state_dict(), path)
    return path


def vfr_pts(count: int) -> list[int]:
    """Milliseconds, 80 ms after every third frame and 40 ms otherwise."""
    pts, t = [], 0
    for i in range(count):
        pts.append(t)
        t += 80 if i % 3 == 0 else 40
    return pts


def decoded(path) -> tuple[list[Fraction], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return [f.pts * stream.time_base for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def packet_times(path, kind: str) -> list[float]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [float(p.pts * stream.time_base) for p in container.demux(stream) if p.size]


@pytest.mark.parametrize("split", [[], ["--segment-seconds", "0.4"]], ids=["one-process", "segments"])
def test_aac_from_an_mp4_into_matroska_moves_no_time(tmp_path, tiny_ckpt, split):
    """Hardening round 3, #10: AAC copied from an MP4 starts 1024 samples before 0 (its priming);
    Matroska shifted every stream to start at 0, so each video frame came out 21 ms late."""
    src = make_clip(tmp_path / "in.mp4", frames_rgb(12), codec="libx264", pix_fmt="yuv420p", audio=True)
    assert packet_times(src, "audio")[0] == pytest.approx(-1024 / 48000)
    out = tmp_path / "out.mkv"
    assert upscale.main([str(src), "-o", str(out), "--model", str(tiny_ckpt), *FFV1, *split]) == 0
    assert frame_times(out) == pytest.approx(frame_times(src), abs=1e-3)
    assert packet_times(out, "audio") == pytest.approx(packet_times(src, "audio"), abs=1e-3)


MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # P3-D65, 1000 cd/m2


def hdr10_clip(path, count: int = 12):
    """A 10-bit HEVC clip in BT.2020 / PQ with HDR10 metadata: mastering display and MaxCLL 1000,
    MaxFALL 400. 64x64: x265 corrupts its heap on some smaller frames (40x32, 48x48)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx265", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p10le"
        context = video.codec_context
        context.color_primaries, context.color_trc, context.colorspace = 9, 16, 9  # BT.2020, PQ, BT.2020 NCL
        context.options = {"x265-params": f"master-display={MASTERING}:max-cll=1000,400:keyint=6:log-level=error"}
        for i, rgb in enumerate(frames_rgb(count)):
            rgb = cv2.resize(rgb, (64, 64))
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16) * 257, format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=9, threads=1)
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def hdr10_of(path):
    from msn_deploy.engines.media.video.frames import hdr10_of

    with av.open(str(path)) as container:
        return hdr10_of(next(container.decode(container.streams.video[0])))


@pytest.mark.parametrize(("codec", "split"), [("libx265", []), ("libx265", ["--segment-seconds", "0.24"]),
                                              ("libsvtav1", [])], ids=["x265", "x265-segments", "svt-av1"])
def test_hdr10_metadata_is_carried_to_the_encoders_that_take_it(tmp_path, tiny_ckpt, codec, split, caplog):
    """Hardening round 3, #9: HDR10 to x265 10-bit dropped the mastering display and light levels."""
    src = hdr10_clip(tmp_path / "hdr10.mkv")
    expected = hdr10_of(src)
    assert expected.light == (1000, 400) and expected.display[-1] == pytest.approx(1000)
    out = tmp_path / "out.mkv"
    caplog.set_level(logging.INFO)
    policy = os.sched_getscheduler(0), os.sched_getparam(0)
    assert upscale.main([str(src), "-o", str(out), "--model", str(tiny_ckpt), "--codec", codec, "--pix-fmt",
                         "yuv420p10le", *split]) == 0
    # SVT-AV1 as root made the thread that opened it real-time (SCHED_FIFO 99), and with it every
    # process started later: a busy core then never yielded and the suite hung.
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == policy
    if split:
        assert "in 2 segments" in caplog.text
    got = hdr10_of(out)
    assert got.light == expected.light
    assert got.display == pytest.approx(expected.display, abs=2e-5 if codec == "libx265" else 1e-4)


def test_an_encoder_that_cannot_carry_hdr10_says_so(tmp_path, tiny_ckpt, caplog):
    src = hdr10_clip(tmp_path / "hdr10.mkv", count=2)
    assert upscale.main([str(src), "-o", str(tmp_path / "out.mkv"), "--model", str(tiny_ckpt), *FFV1]) == 0
    assert "HDR10 metadata (mastering display, light levels) cannot be written by ffv1" in caplog.text
    assert hdr10_of(tmp_path / "out.mkv") is None


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """48 VFR frames (FFV1: a keyframe every 12) with an AAC track."""
    return make_clip(tmp_path_factory.mktemp("clip") / "vfr.mkv", frames_rgb(48), pts=vfr_pts(48), audio=True)


@pytest.fixture(scope="module")
def one_process(vfr_clip, tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "one.mkv"
    assert upscale.main([str(vfr_clip), "-o", str(out), "--model", str(tiny_ckpt), *FFV1]) == 0
    return out


def test_segments_join_into_the_one_process_output(vfr_clip, one_process, tiny_ckpt, tmp_path, caplog):
    out = tmp_path / "seg.mkv"
    caplog.set_level(logging.INFO)
    assert upscale.main([str(vfr_clip), "-o", str(out), "--model", str(tiny_ckpt), *FFV1,
                         "--segment-seconds", "0.4", "--workers", "2"]) == 0
    assert "48 frames in 4 segments" in caplog.text  # FFV1 makes a keyframe every 12 frames: cut there
    pts, frames = decoded(out)
    want_pts, want_frames = decoded(one_process)
    assert pts == want_pts and len(frames) == 48
    assert all(np.array_equal(a, b) for a, b in zip(frames, want_frames))  # lossless: frame for frame
    assert audio_packets(out) == audio_packets(vfr_clip)  # copied once, untouched
    assert not parts_folder(out).exists()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_b_frame_segments_keep_every_input_timestamp(tmp_path, tiny_ckpt, suffix):
    """x264 with B-frames in and out, cut at its keyframes, at NTSC rates (steps of 1001/30000 s,
    which no millisecond grid holds): the frame count and every frame's time are the
    one-process output's, and for .mp4 exactly the input's."""
    src = tmp_path / "in.mp4"
    time_base = Fraction(1, 90000)
    with av.open(str(src), "w") as container:  # a keyframe every 12 frames; VFR: one frame in three held twice
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = 12
        stream.codec_context.options = {"keyint_min": "12", "sc_threshold": "0"}
        t = 0
        for i, rgb in enumerate(frames_rgb(60)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = t, time_base
            t += 6006 if i % 3 == 0 else 3003
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    one, out = tmp_path / f"one{suffix}", tmp_path / f"seg{suffix}"
    base = [str(src), "--model", str(tiny_ckpt)]
    assert upscale.main([*base, "-o", str(one)]) == 0
    assert upscale.main([*base, "-o", str(out), "--segment-seconds", "0.5", "--workers", "2"]) == 0
    times = decoded(out)[0]
    assert len(times) == 60 and times == decoded(one)[0]
    if suffix == ".mp4":
        assert times == decoded(src)[0]
    else:  # Matroska keeps milliseconds
        assert [float(t) for t in times] == pytest.approx([float(t) for t in decoded(src)[0]], abs=5.01e-4)


@pytest.mark.slow
@pytest.mark.parametrize("rerun_seconds", ["0.2", "0.3", "0.8"],
                         ids=["same-command", "same-cuts", "other-segment-seconds"])
def test_ctrl_c_then_a_rerun_keeps_the_finished_segments(vfr_clip, one_process, tiny_ckpt, tmp_path, caplog,
                                                         rerun_seconds):
    """A rerun keeps the parts done when it cuts the video where the first run did (the same command,
    or another --segment-seconds that falls on the same keyframes); one that cuts elsewhere (0.8 s:
    every other keyframe) can use none of them and starts afresh (hardening round 3, H)."""
    out = tmp_path / "seg.mkv"
    args = [str(vfr_clip), "-o", str(out), "--model", str(tiny_ckpt), *FFV1, "--segment-seconds", "0.2",
            "--workers", "1"]
    parts = parts_folder(out)
    job = job_process(args)
    wait_for(lambda: any(parts.glob("[0-9]*.json")) or job.poll() is not None, SUBPROCESS_TIMEOUT_S,
             "the first segment")
    job.send_signal(signal.SIGSTOP)  # so that what is left to do is known when the signal comes
    assert job.poll() is None and not out.exists()
    job.send_signal(signal.SIGINT)
    job.send_signal(signal.SIGCONT)
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 130, log
    kept = len(list(parts.glob("[0-9]*.json")))
    assert kept >= 1 and not out.exists() and not list(parts.glob(".*.tmp")), log
    caplog.set_level(logging.INFO)
    assert upscale.main([*args[:-3], rerun_seconds, *args[-2:]]) == 0
    if rerun_seconds != "0.8":
        assert f"{kept} of " in caplog.text and "segments are done already" in caplog.text
    else:
        assert "starting afresh" in caplog.text and "done already" not in caplog.text
        assert "48 frames in 2 segments" in caplog.text
    pts, frames = decoded(out)
    want_pts, want_frames = decoded(one_process)
    assert pts == want_pts and all(np.array_equal(a, b) for a, b in zip(frames, want_frames))


def on_twos(count: int, noise: int = 0) -> list[np.ndarray]:
    """Animation on twos: each picture held for two frames (the second off by `noise` levels)."""
    frames = []
    for picture in frames_rgb(count // 2):
        frames.append(picture)
        held = picture.astype(int) + noise * (np.indices(picture.shape).sum(axis=0) % 2)
        frames.append(np.clip(held, 0, 255).astype(np.uint8))
    return frames


def test_held_frames_reuse_their_output_and_change_nothing(tmp_path, tiny_ckpt, caplog):
    src = make_clip(tmp_path / "twos.mkv", on_twos(24))
    plain, reused = tmp_path / "plain.mkv", tmp_path / "reused.mkv"
    base = [str(src), "--model", str(tiny_ckpt), *FFV1]
    assert upscale.main([*base, "-o", str(plain)]) == 0
    caplog.set_level(logging.INFO)
    assert upscale.main([*base, "-o", str(reused), "--reuse-repeats"]) == 0
    assert "12 of 24 frames repeated the one before" in caplog.text and "12 repeated frames reused" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(decoded(plain)[1], decoded(reused)[1]))
    segmented = tmp_path / "segmented.mkv"
    assert upscale.main([*base, "-o", str(segmented), "--reuse-repeats", "--segment-seconds", "0.3"]) == 0
    assert all(np.array_equal(a, b) for a, b in zip(decoded(plain)[1], decoded(segmented)[1]))


def test_a_slow_fade_is_upscaled_again_each_time_it_passes_the_threshold(tmp_path, tiny_ckpt, caplog):
    """A fade of 1 level a frame under a threshold of 2.5: compared with the frame just before, every
    frame would repeat and the output would stay on the first picture (15 levels off by the end);
    compared with the last upscaled frame, every third frame is upscaled (hardening round 3, H)."""
    base_picture = (frames_rgb(1)[0] * 0.8).astype(np.uint8)
    fade = [base_picture + step for step in range(16)]
    src = make_clip(tmp_path / "fade.mkv", fade)
    plain, reused = tmp_path / "plain.mkv", tmp_path / "reused.mkv"
    args = [str(src), "--model", str(tiny_ckpt), *FFV1]
    assert upscale.main([*args, "-o", str(plain)]) == 0
    caplog.set_level(logging.INFO)
    assert upscale.main([*args, "-o", str(reused), "--reuse-repeats", "2.5"]) == 0
    assert "10 of 16 frames repeated the one before" in caplog.text  # upscaled: 0, 3, 6, 9, 12, 15
    want, got = decoded(plain)[1], decoded(reused)[1]
    assert all(np.array_equal(want[i], got[i]) for i in (0, 3, 6, 9, 12, 15))


def test_a_threshold_counts_near_repeats(tmp_path, tiny_ckpt, caplog):
    src = make_clip(tmp_path / "noisy.mkv", on_twos(24, noise=1))
    base = [str(src), "--model", str(tiny_ckpt), *FFV1]
    caplog.set_level(logging.INFO)
    assert upscale.main([*base, "-o", str(tmp_path / "exact.mkv"), "--reuse-repeats"]) == 0
    assert "0 repeated frames reused" in caplog.text
    caplog.clear()
    assert upscale.main([*base, "-o", str(tmp_path / "near.mkv"), "--reuse-repeats", "2"]) == 0
    assert "12 repeated frames reused" in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["--segment-seconds", "0"], "--segment-seconds: expected a number > 0"),
    (["--segment-seconds", "-1"], "--segment-seconds: expected a finite number >= 0"),
    (["--segment-seconds", "soon"], "--segment-seconds: expected a number"),
    (["--reuse-repeats", "-2"], "--reuse-repeats: expected a finite number >= 0"),
    (["--workers", "2"], "--workers and --ray go with --segment-seconds"),
    (["--ray"], "--workers and --ray go with --segment-seconds"),
    (["--recursive"], "--recursive is for folders of images"),
])
def test_bad_video_job_options_are_usage_errors(vfr_clip, tiny_ckpt, tmp_path, extra, message, capsys, caplog):
    args = [str(vfr_clip), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_ckpt), *extra]
    assert exit_code(upscale.main, args) == 2
    assert message in capsys.readouterr().err + caplog.text
    assert not (tmp_path / "o.mkv").exists()


def test_avi_cannot_be_cut_into_segments(tmp_path, tiny_ckpt, caplog):
    avi = coded_clip(tmp_path / "clip.avi", "libx264", vfr=False)
    out = tmp_path / "o.mkv"
    assert upscale.main([str(avi), "-o", str(out), "--model", str(tiny_ckpt), "--segment-seconds", "1"]) == 2
    assert "AVI stores no presentation timestamps to cut segments by" in caplog.text
    assert not out.exists() and not parts_folder(out).exists()
