"""`python -m engines.upscale` on real files: bit depths, gray, alpha, folders, and no overwrites."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines import upscale


@pytest.fixture
def ckpt(tmp_path, random_msn):
    path = tmp_path / "random.pth"
    torch.save(random_msn.state_dict(), path)
    return path


def write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "rgb8.png", rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
    write(folder / "rgb16.png", rng.integers(0, 65536, (30, 33, 3), dtype=np.uint16))
    write(folder / "gray.png", rng.integers(0, 256, (31, 35), dtype=np.uint8))
    write(folder / "rgba.png", rng.integers(0, 256, (32, 32, 4), dtype=np.uint8))
    write(folder / "photo.jpg", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_of_mixed_images(tmp_path, inputs, ckpt):
    out = tmp_path / "out"
    assert upscale.main([str(inputs), "-o", str(out), "--model", str(ckpt)]) == 0
    expected = {
        "rgb8_x4.png": ((128, 160, 3), np.uint8),
        "rgb16_x4.png": ((120, 132, 3), np.uint16),
        "gray_x4.png": ((124, 140), np.uint8),
        "rgba_x4.png": ((128, 128, 4), np.uint8),
        "photo_x4.jpg": ((144, 144, 3), np.uint8),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (shape, dtype) in expected.items():
        img = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert img.shape == shape and img.dtype == dtype, name


def test_alpha_is_resized_not_dropped(tmp_path, ckpt):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :16, 3] = 0
    src = write(tmp_path / "a.png", rgba)
    assert upscale.main([str(src), "-o", str(tmp_path / "a_out.png"), "--model", str(ckpt)]) == 0
    alpha = cv2.imread(str(tmp_path / "a_out.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    assert alpha[:, :56].max() == 0 and alpha[:, 72:].min() == 255


def test_never_overwrites_an_input(tmp_path, ckpt):
    src = write(tmp_path / "img.png", np.full((32, 32, 3), 7, np.uint8))
    before = src.read_bytes()
    assert upscale.main([str(src), "-o", str(src), "--model", str(ckpt)]) == 1
    assert src.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path, ckpt):
    src = write(tmp_path / "img.png", np.full((32, 32, 3), 7, np.uint8))
    dst = tmp_path / "out.png"
    dst.write_bytes(b"keep me")
    assert upscale.main([str(src), "-o", str(dst), "--model", str(ckpt)]) == 0
    assert dst.read_bytes() == b"keep me"
    assert upscale.main([str(src), "-o", str(dst), "--model", str(ckpt), "--overwrite"]) == 0
    assert cv2.imread(str(dst)).shape == (128, 128, 3)


def test_bad_files_are_reported_and_the_rest_processed(tmp_path, ckpt, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    write(folder / "tiny.png", np.zeros((20, 20, 3), np.uint8))
    write(folder / "good.png", np.zeros((32, 32, 3), np.uint8))
    assert upscale.main([str(folder), "-o", str(tmp_path / "out"), "--model", str(ckpt)]) == 1
    assert "not a readable image" in caplog.text and "at least 29x29" in caplog.text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_x4.png"]


def test_tiled_cli_matches_untiled_closely(tmp_path, ckpt):
    rng = np.random.default_rng(1)
    src = write(tmp_path / "big.png", cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (96, 72)))
    assert upscale.main([str(src), "-o", str(tmp_path / "whole.png"), "--model", str(ckpt)]) == 0
    assert upscale.main([str(src), "-o", str(tmp_path / "tiled.png"), "--model", str(ckpt), "--tile", "48", "--overlap", "12"]) == 0
    whole = cv2.imread(str(tmp_path / "whole.png")).astype(int)
    tiled = cv2.imread(str(tmp_path / "tiled.png")).astype(int)
    assert np.abs(whole - tiled).mean() < 1.0


def test_missing_input(tmp_path, ckpt):
    assert upscale.main([str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--model", str(ckpt)]) == 2


def test_pixels_are_the_model_output_quantised(tmp_path, ckpt, random_msn):
    """8- and 16-bit RGB and gray: every written sample is the model's output for that file,
    clamped and rounded to the file's bit depth (BGR order and gray averaging included)."""
    rng = np.random.default_rng(1)
    smooth = cv2.resize(rng.random((6, 8, 3)), (40, 30), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    for name, pixels, peak in [("rgb8.png", np.round(smooth * 255).astype(np.uint8), 255),
                               ("rgb16.png", np.round(smooth * 65535).astype(np.uint16), 65535),
                               ("gray.png", np.round(smooth[..., 0] * 255).astype(np.uint8), 255)]:
        src = write(tmp_path / name, pixels)
        dst = tmp_path / f"out_{name}"
        assert upscale.main([str(src), "-o", str(dst), "--model", str(ckpt)]) == 0
        rgb = pixels[..., ::-1] if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
        x = torch.from_numpy(rgb.astype(np.float32) / peak).permute(2, 0, 1)[None]
        with torch.no_grad():
            sr = random_msn(x)[0].permute(1, 2, 0).double().numpy().clip(0, 1)
        expected = sr[..., ::-1] if pixels.ndim == 3 else sr.mean(axis=2)
        written = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED).astype(np.float64)
        # One level where the float32 inference form and the training form round differently.
        assert np.abs(written - np.round(expected * peak)).max() <= 1, name
