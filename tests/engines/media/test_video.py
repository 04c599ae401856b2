"""Video through `python -m msn_deploy.engines.upscale`: frames, timestamps, streams, colour, safety.

Clips are made here with PyAV: a lossless one (FFV1 in Matroska) for exact checks, x264 with AAC
audio for the common path, and a 10-bit BT.709 full-range one for colour.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from msn_deploy.engines import upscale
from msn_deploy.engines.media.video import VideoError, check_encoder
from tests.conftest import REPO
from tests.util import SUBPROCESS_TIMEOUT_S

av = pytest.importorskip("av", reason="PyAV is not installed (pip install -e '.[video]')")

W, H = 40, 32  # LR frame size


def frames_rgb(count: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth, moving RGB frames (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    base = rng.random((4, 5, 3))
    out = []
    for i in range(count):
        coarse = np.roll(base, i, axis=1)
        img = np.kron(coarse, np.ones((H // 4, W // 5, 1)))
        out.append(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def make_clip(path, frames, *, codec="ffv1", pix_fmt="bgr0", pts=None, audio=False, subtitle=False,
              time_base=Fraction(1, 1000), rate=25, colorspace=None, color_range=None, rotation=0, primaries=0, trc=0):
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = W, H, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if colorspace is not None:
            video.codec_context.colorspace, video.codec_context.color_range = colorspace, color_range
        if primaries or trc:
            video.codec_context.color_primaries, video.codec_context.color_trc = primaries, trc
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000) if audio else None
        subs = out.add_mux_stream("subrip") if subtitle else None  # packets written as they are
        if subs is not None:
            subs.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if colorspace is not None:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range,
                                       threads=1)
            frame.pts = pts[i] if pts else i * 40
            frame.time_base = time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = (np.sin(np.arange(48000 // 2) / 10)[None] * 0.3).astype(np.float32)
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
        for i, text in enumerate((b"first line", b"second line")) if subs is not None else ():
            packet = av.Packet(text)
            packet.stream, packet.pts, packet.dts, packet.duration = subs, i * 100, i * 100, 80
            packet.time_base = Fraction(1, 1000)
            out.mux(packet)
    return path


def read_video(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        info = {"pts": [f.pts for f in frames], "time_base": stream.time_base, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "pix_fmt": stream.codec_context.pix_fmt,
                "types": sorted(s.type for s in container.streams), "codecs": [s.codec_context.name for s in
                                                                               container.streams]}
        return frames, info


def model_output(random_msn, rgb_u8: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb_u8.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        return np.round(random_msn(x)[0].permute(1, 2, 0).numpy().clip(0, 1) * 255)


def test_lossless_frames_and_timestamps_are_exact(tmp_path, random_ckpt, random_msn):
    """FFV1/bgr0 keeps every frame within rounding of the model's output, at its own timestamp
    (variable frame rate: irregular pts survive)."""
    rgb = frames_rgb(6)
    pts = [0, 40, 80, 200, 240, 400]
    src = make_clip(tmp_path / "in.mkv", rgb, pts=pts)
    dst = tmp_path / "out.mkv"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "bgr0", "--batch", "4"]) == 0
    frames, info = read_video(dst)
    _, src_info = read_video(src)
    assert len(frames) == 6 and info["pts"] == src_info["pts"] and info["time_base"] == src_info["time_base"]
    assert (info["width"], info["height"]) == (4 * W, 4 * H)
    for frame, lr in zip(frames, rgb):
        assert np.abs(frame.to_ndarray(format="rgb24").astype(np.float64) - model_output(random_msn, lr)).max() <= 1


def test_x264_with_audio_is_remuxed_untouched(tmp_path, random_ckpt):
    src = make_clip(tmp_path / "in.mp4", frames_rgb(5), codec="libx264", pix_fmt="yuv420p", audio=True)
    dst = tmp_path / "out.mp4"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--crf", "30",
                         "--encoder-option", "preset=veryfast"]) == 0
    _, info = read_video(dst)
    assert info["types"] == ["audio", "video"] and "aac" in info["codecs"] and info["pix_fmt"] == "yuv420p"
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        packets = [[bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] for c in (a, b)]
    assert packets[0] == packets[1]  # the same AAC bytes: copied, not re-encoded


def test_subtitles_are_copied(tmp_path, random_ckpt):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(3), subtitle=True)
    dst = tmp_path / "out.mkv"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "bgr0"]) == 0
    with av.open(str(dst)) as out:
        assert [s.type for s in out.streams] == ["video", "subtitle"]
        cues = [(bytes(p), p.pts) for p in out.demux(out.streams.subtitles[0]) if p.size]
    assert cues == [(b"first line", 0), (b"second line", 100)]


# (matrix, range, primaries, transfer) by FFmpeg's numbers.
BT709_FULL = (1, 2, 2, 2)  # primaries and transfer unspecified
BT2020_PQ = (9, 1, 9, 16)  # HDR10: BT.2020 non-constant luminance, limited range, BT.2020 primaries, PQ
BT601 = (6, 1, 6, 6)  # SMPTE 170M: standard-definition video


@pytest.mark.parametrize("tags", [BT709_FULL, BT2020_PQ, BT601], ids=["bt709-full", "bt2020-pq", "bt601"])
def test_colour_tags_and_a_known_colour_survive(tmp_path, random_ckpt, random_msn, tags):
    """10-bit in, 10-bit out with the same tags; a flat colour comes back as the model's output for
    that colour (not shifted by a wrong matrix or range, nor mapped into other primaries: BT.2020/PQ
    came out ~100 levels off when the frames handed to FFmpeg were untagged)."""
    colorspace, color_range, primaries, trc = tags
    flat = np.zeros((H, W, 3), np.uint8)
    flat[...] = (200, 60, 30)
    src = make_clip(tmp_path / "in.mkv", [flat] * 3, codec="ffv1", pix_fmt="yuv444p10le",
                    colorspace=colorspace, color_range=color_range, primaries=primaries, trc=trc)
    dst = tmp_path / "out.mkv"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "yuv444p10le"]) == 0
    frames, info = read_video(dst)
    assert info["pix_fmt"] == "yuv444p10le"
    frame = frames[0]
    assert (int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc)) == tags
    decoded = frame.reformat(format="rgb24", src_colorspace=colorspace, src_color_range=color_range,
                             threads=1).to_ndarray().astype(np.float64)
    # The input frame as the decoder sees it (10-bit YUV of (200, 60, 30)), through the model.
    lr, _ = read_video(src)
    lr_rgb = lr[0].reformat(format="rgb24", src_colorspace=colorspace, src_color_range=color_range,
                            threads=1).to_ndarray()
    assert np.abs(lr_rgb.astype(int) - flat).max() <= 2
    assert np.abs(decoded - model_output(random_msn, lr_rgb)).mean() < 1.5


def test_a_10_bit_source_written_8_bit_says_how_to_keep_the_depth(tmp_path, random_ckpt, caplog):
    """Hardening round 3, #8: a 10-bit clip came out 8-bit with the default settings and no word."""
    src = make_clip(tmp_path / "in.mkv", frames_rgb(1), codec="ffv1", pix_fmt="yuv444p10le")
    assert upscale.main([str(src), "-o", str(tmp_path / "out.mkv"), "--model", str(random_ckpt)]) == 0
    assert "--pix-fmt yuv420p writes 8: pass --pix-fmt yuv420p10le" in caplog.text
    caplog.clear()
    assert upscale.main([str(src), "-o", str(tmp_path / "out10.mkv"), "--model", str(random_ckpt), "--pix-fmt",
                         "yuv420p10le"]) == 0
    assert "writes 8" not in caplog.text


def test_rotation_is_carried_over(tmp_path, random_ckpt):
    src = make_clip(tmp_path / "in.mp4", frames_rgb(2), codec="libx264", pix_fmt="yuv420p", rotation=90)
    dst = tmp_path / "out.mp4"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt)]) == 0
    frames, _ = read_video(dst)
    assert frames[0].rotation == read_video(src)[0][0].rotation == 90


@pytest.mark.parametrize(("args", "message"), [
    (["--codec", "nosuchcodec"], "no encoder 'nosuchcodec'"),
    (["--codec", "aac"], "not a video one"),
    (["--codec", "libx264", "--pix-fmt", "rgb48le"], "does not take --pix-fmt rgb48le"),
    (["--encoder-option", "preset"], "expected KEY=VALUE"),
    (["--batch", "0"], "expected 1 or more"),
])
def test_bad_codec_options_fail_before_work(tmp_path, args, message, caplog, capsys):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(1))
    try:
        code = upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", "nothing.pth", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert message in caplog.text + capsys.readouterr().err and not (tmp_path / "o.mkv").exists()


def test_bad_inputs_and_outputs(tmp_path, random_ckpt, caplog):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert upscale.main([str(text), "-o", str(tmp_path / "o.mkv"), "--model", str(random_ckpt)]) == 2
    assert "not a readable video" in caplog.text
    audio_only = tmp_path / "audio.mkv"
    with av.open(str(audio_only), "w") as out:
        stream = out.add_stream("flac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert upscale.main([str(audio_only), "-o", str(tmp_path / "o.mkv"), "--model", str(random_ckpt)]) == 2
    assert "no video stream" in caplog.text
    with av.open(str(tmp_path / "tiny.mkv"), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 20, 16, "bgr0"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 20, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    assert upscale.main([str(tmp_path / "tiny.mkv"), "-o", str(tmp_path / "o.mkv"), "--model", str(random_ckpt)]) == 2
    assert "at least 29x29" in caplog.text
    src = make_clip(tmp_path / "in.mkv", frames_rgb(1))
    assert upscale.main([str(src), "-o", str(src), "--model", str(random_ckpt)]) == 2
    assert upscale.main([str(src), "-o", str(tmp_path / "missing" / "o.mkv"), "--model", str(random_ckpt)]) == 2
    assert "does not exist" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.mkv", "in.mkv", "notes.mp4", "tiny.mkv"]


def test_corrupt_packets_are_counted(tmp_path, random_ckpt, caplog):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(6))
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # zero a run inside a frame's data
    src.write_bytes(bytes(data))
    code = upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", str(random_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "bgr0"])
    if "corrupt video packet" in caplog.text:
        assert code == 1 and "corrupt video packets were skipped" in caplog.text
    else:  # FFV1 may decode damaged slices with concealment: then every frame must still be there
        assert code == 0 and len(read_video(tmp_path / "o.mkv")[0]) == 6


def test_ctrl_c_leaves_no_output_and_names_the_frame(tmp_path, random_ckpt):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(400))
    dst = tmp_path / "out.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "msn_deploy.engines.upscale", str(src), "-o", str(dst), "--model",
                             str(random_ckpt)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    # Interrupt once the progress bar shows a few frames done (and the temporary output exists).
    while not re.search(r"\b([3-9]|\d\d+)/400", "".join(err)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.mkv.*.tmp")), "the temporary output was never created"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=SUBPROCESS_TIMEOUT_S) != 0
    reader.join(timeout=10)
    stopped = re.search(r"stopped at frame (\d+)", "".join(err))
    assert stopped and 3 <= int(stopped[1]) < 400, "".join(err)[-500:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_check_encoder():
    check_encoder("libx264", "yuv420p")
    with pytest.raises(VideoError):
        check_encoder("libx264", "nonsense")


@pytest.mark.build
def test_output_name_follows_the_model_scale(tmp_path, random_x2_ckpt):
    """An x2 checkpoint gives clip_x2.mkv at twice the size (the name is not hard-coded _x4)."""
    x2 = random_x2_ckpt
    src = make_clip(tmp_path / "clip.mkv", frames_rgb(3))
    out = tmp_path / "out"
    assert upscale.main([str(src), "-o", str(out), "--model", str(x2), "--codec", "ffv1", "--pix-fmt", "bgr0"]) == 0
    frames, info = read_video(out / "clip_x2.mkv")
    assert len(frames) == 3 and (info["width"], info["height"]) == (2 * W, 2 * H)
    assert not list(out.glob("*_x4*"))


CONTAINERS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9", ".avi": "libx264"}
LOOKAHEAD_FRAMES = 50  # longer than x264's default rc-lookahead (40) and VP9's lag (25)


def coded_clip(path, codec, vfr):
    """A clip with B-frames (x264 defaults) or VP9's alt-ref frames; VFR: 40/80 ms steps in a 1/1000 time base."""
    rate = 25
    time_base = Fraction(1, 1000) if vfr else Fraction(1, rate)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = time_base
        pts = 0
        for i, rgb in enumerate(frames_rgb(LOOKAHEAD_FRAMES)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, time_base
            pts += (80 if i % 3 == 0 else 40) if vfr else 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def frame_times(path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream)]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from msn_deploy.msn import random_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(random_model(seed=0, num_feat=8, num_block=1).state_dict(), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
@pytest.mark.parametrize("source", list(CONTAINERS))
def test_every_output_frame_keeps_its_input_time_in_every_container_pair(tmp_path, tiny_ckpt, source, vfr):
    """Each output frame's time in seconds equals its input frame's, whatever the two containers'
    time bases are, with B-frames and clips longer than the encoder's lookahead."""
    if source == ".avi" and vfr:
        pytest.skip("AVI cannot hold a variable frame rate")
    src = coded_clip(tmp_path / f"in{source}", CONTAINERS[source], vfr)
    # AVI keeps no presentation times (FFmpeg reads B-frames' back out of order): its frames, which
    # decode in display order, are shown one frame duration apart.
    expected = [i / 25 for i in range(LOOKAHEAD_FRAMES)] if source == ".avi" else frame_times(src)
    assert len(expected) == LOOKAHEAD_FRAMES
    for target in (s for s in CONTAINERS if s != ".avi"):
        dst = tmp_path / f"out{target}"
        assert upscale.main([str(src), "-o", str(dst), "--model", str(tiny_ckpt), "--codec", CONTAINERS[target],
                             "--encoder-option", "threads=1"]) == 0, (source, target)
        times = frame_times(dst)
        assert len(times) == len(expected), (source, target)
        assert max(abs(a - b) for a, b in zip(times, expected)) < 1e-3, (source, target, times[:5], expected[:5])


def test_avi_is_read_but_not_written(tmp_path, tiny_ckpt, caplog):
    src = coded_clip(tmp_path / "in.mkv", "libx264", vfr=False)
    assert upscale.main([str(src), "-o", str(tmp_path / "o.avi"), "--model", str(tiny_ckpt)]) == 2
    assert "AVI cannot store presentation timestamps" in caplog.text and not (tmp_path / "o.avi").exists()
    avi = coded_clip(tmp_path / "clip.avi", "libx264", vfr=False)
    assert upscale.main([str(avi), "-o", str(tmp_path / "out"), "--model", str(tiny_ckpt)]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["clip_x4.mkv"]
    assert frame_times(tmp_path / "out" / "clip_x4.mkv") == pytest.approx([i / 25 for i in range(50)], abs=1e-3)


def test_a_second_video_stream_is_dropped_with_a_warning(tmp_path, tiny_ckpt, caplog):
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        streams = [out.add_stream("ffv1", rate=25) for _ in range(2)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for rgb in frames_rgb(3):
            for stream in streams:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        for stream in streams:
            out.mux(stream.encode(None))
    dst = tmp_path / "o.mkv"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(tiny_ckpt), "--codec", "ffv1", "--pix-fmt",
                         "bgr0"]) == 0
    assert "video stream 1 is dropped" in caplog.text
    frames, info = read_video(dst)
    assert len(frames) == 3 and info["types"] == ["video"]


@pytest.mark.parametrize(("option", "message"), [
    ("preset=warp9", "refuses the options crf=18 preset=warp9"),
    ("nosuchopt=1", "has no option nosuchopt"),
])
def test_bad_encoder_options_are_refused_before_work(tmp_path, option, message, caplog):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(1))
    code = upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", "nothing.pth", "--encoder-option",
                         option])
    assert code == 2 and message in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


@pytest.mark.parametrize(("flags", "output", "message"), [
    (["--crf", "99"], "o.mkv", "--crf 99 is outside libx264's scale 0-51"),
    (["--codec", "libvpx-vp9", "--crf", "64"], "o.mkv", "--crf 64 is outside libvpx-vp9's scale 0-63"),
    (["--reuse-repeats", "300"], "o.mkv", "--reuse-repeats 300 is outside 0-32 levels"),
    ([], "o.webm", "WebM holds VP9 or AV1 video, not libx264"),
])
def test_values_ffmpeg_would_clamp_or_refuse_midway_are_refused_before_work(tmp_path, flags, output, message, caplog):
    """Hardening round 3, #14: a clamped CRF and a frozen picture exited 0; .webm with x264 was a traceback."""
    src = make_clip(tmp_path / "in.mkv", frames_rgb(1))
    code = upscale.main([str(src), "-o", str(tmp_path / output), "--model", "nothing.pth", *flags])
    assert code == 2 and message in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_a_truncated_tail_is_a_warning_and_exit_1(tmp_path, tiny_ckpt, caplog):
    src = make_clip(tmp_path / "in.mkv", frames_rgb(20))
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    code = upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "bgr0"])
    assert code == 1 and "looks truncated" in caplog.text and "frames missing" in caplog.text
    assert 0 < len(read_video(tmp_path / "o.mkv")[0]) < 20


def test_attachments_are_copied_into_matroska_and_named_when_dropped(tmp_path, tiny_ckpt, caplog):
    src = tmp_path / "fonts.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        out.add_attachment("font.ttf", "font/ttf", b"not really a font" * 8)
        for rgb in frames_rgb(2):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    assert upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_ckpt), "--codec", "ffv1",
                         "--pix-fmt", "bgr0"]) == 0
    with av.open(str(tmp_path / "o.mkv")) as out:
        (attachment,) = [s for s in out.streams if s.type == "attachment"]
        assert attachment.name == "font.ttf" and bytes(attachment.data) == b"not really a font" * 8
    assert upscale.main([str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(tiny_ckpt)]) == 0
    assert "attachment 'font.ttf' (font/ttf) is dropped" in caplog.text


def test_interlaced_input_is_named(tmp_path, tiny_ckpt, caplog):
    src = tmp_path / "interlaced.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        stream.codec_context.options = {"x264-params": "tff=1"}
        for rgb in frames_rgb(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    assert upscale.main([str(src), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_ckpt)]) == 0
    assert "is interlaced" in caplog.text and "bwdif" in caplog.text
