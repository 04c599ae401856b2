"""--target WIDTHxHEIGHT: the model's output reduced (area averaging) to fit a wanted size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from msn_deploy.engines import upscale
from msn_deploy.engines.media.target import TargetSize, resize_to
from msn_deploy.msn import UsageError
from tests.util import exit_code


@pytest.mark.parametrize(("target", "lr", "expected"), [
    (TargetSize(3840, 2160), (540, 960), (2160, 3840)),  # exactly x4
    (TargetSize(1920, 1080), (540, 960), (1080, 1920)),  # x2 of the input, from the x4 output
    (TargetSize(1000, 1000), (540, 960), (562, 1000)),  # width bounds it; aspect kept (562.5 rounds to even)
    (TargetSize(5000, 1000), (540, 960), (1000, 1778)),  # height bounds it
    (TargetSize(3840, 4000), (540, 960), (2160, 3840)),  # larger in one dimension only: the x4 output fits
    (TargetSize(1000, 1000, exact=True), (540, 960), (1000, 1000)),
])
def test_output_sizes(target, lr, expected):
    assert target.output_size(*lr, scale=4) == expected


def test_video_sizes_are_even():
    assert TargetSize(1001, 1001).output_size(540, 960, 4, even=True) == (562, 1000)


@pytest.mark.parametrize(("target", "message"), [
    (lambda: TargetSize(7680, 4320).output_size(540, 960, 4), "the largest is 3840x2160"),
    (lambda: TargetSize(3841, 2000, exact=True).output_size(540, 960, 4), "needs more than the model's x4"),
    (lambda: TargetSize(0, 100), "degenerate"),
    (lambda: TargetSize(1, 1), "degenerate"),
    (lambda: TargetSize(-5, 100), "degenerate"),
])
def test_impossible_targets_are_refused(target, message):
    with pytest.raises(UsageError, match=message):
        target()


def test_reduction_averages_areas():
    checker = np.indices((8, 8)).sum(axis=0) % 2  # 0/1 checkerboard
    assert np.allclose(resize_to(checker.astype(np.float32), 4, 4), 0.5)  # no aliasing, no ringing


def test_target_through_the_image_cli(tmp_path, photo, random_ckpt):
    """photo is 48x40 (WxH); x4 = 192x160. A 96x96 box keeps the aspect: 96x80."""
    out = tmp_path / "o.png"
    assert upscale.main([str(photo), "-o", str(out), "--model", str(random_ckpt), "--target", "96x96"]) == 0
    assert cv2.imread(str(out)).shape == (80, 96, 3)
    assert upscale.main([str(photo), "-o", str(out), "--model", str(random_ckpt), "--target", "100x50", "--exact",
                         "--overwrite"]) == 0
    assert cv2.imread(str(out)).shape == (50, 100, 3)


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "800x800"], "the largest is 192x160"),
    (["--target", "0x100"], "degenerate"),
    (["--target", "1x1"], "degenerate"),
    (["--target=-3x100"], "expected WIDTHxHEIGHT"),
    (["--target", "big"], "expected WIDTHxHEIGHT"),
    (["--exact"], "--exact goes with --target"),
])
def test_bad_targets_are_usage_errors_before_work(tmp_path, photo, random_ckpt, args, message, caplog, capsys):
    code = exit_code(upscale.main, [str(photo), "-o", str(tmp_path / "o.png"), "--model", str(random_ckpt), *args])
    assert code == 2 and message in caplog.text + capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_target_through_the_video_cli(tmp_path, random_ckpt):
    av = pytest.importorskip("av", reason="PyAV is not installed")
    from tests.engines.media.test_video import frames_rgb, make_clip, read_video

    src = make_clip(tmp_path / "in.mkv", frames_rgb(3))  # 40x32
    dst = tmp_path / "out.mkv"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--target", "100x100"]) == 0
    frames, info = read_video(dst)
    assert len(frames) == 3 and (info["width"], info["height"]) == (100, 80)
    assert upscale.main([str(src), "-o", str(tmp_path / "big.mkv"), "--model", str(random_ckpt), "--target",
                         "400x400"]) == 2
    assert av is not None and not (tmp_path / "big.mkv").exists()


def test_a_rotated_clips_target_is_in_display_orientation(tmp_path, random_ckpt):
    """Hardening round 3, #26: a portrait clip stored landscape (rotation 90) had its target taken as
    landscape: 120x150 --exact was refused. Targets are in display orientation, as for EXIF images."""
    pytest.importorskip("av", reason="PyAV is not installed")
    from tests.engines.media.test_video import frames_rgb, make_clip, read_video

    src = make_clip(tmp_path / "in.mp4", frames_rgb(2), codec="libx264", pix_fmt="yuv420p", rotation=90)
    dst = tmp_path / "out.mp4"  # stored 40x32, displayed 32x40: the x4 output displays as 128x160
    assert upscale.main([str(src), "-o", str(dst), "--model", str(random_ckpt), "--target", "120x150",
                         "--exact"]) == 0
    frames, info = read_video(dst)
    assert (info["width"], info["height"], frames[0].rotation) == (150, 120, 90)
    assert frames[0].to_ndarray(format="rgb24").shape == (120, 150, 3)
    big = tmp_path / "big.mp4"
    assert upscale.main([str(src), "-o", str(big), "--model", str(random_ckpt), "--target", "150x120",
                         "--exact"]) == 2  # landscape 150x120 needs more than x4 of a 32x40 picture
    assert not big.exists()
