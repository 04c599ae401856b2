"""`python -m msn_deploy.engines.upscale` on real files: bit depths, gray, alpha, folders, and no overwrites."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.export import to_onnx
from msn_deploy.msn import InputError
from msn_deploy.msn.sample_images import smooth_test_image
from tests.util import exit_code, png_claiming, visible_names


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
    assert visible_names(out) == sorted(expected)
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
    assert visible_names(tmp_path / "out") == ["good_x4.png"]


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


# NaN weights are refused at load, naming the tensor; non-finite output is an error.
def test_nan_weight_is_named_at_load(tmp_path, random_msn, photo, caplog):
    state = {k: v.clone() for k, v in random_msn.state_dict().items()}
    state["B4.c5.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    assert upscale.main([str(photo), "-o", str(tmp_path / "out.png"), "--model", str(bad)]) == 2
    assert "B4.c5.weight" in caplog.text and not (tmp_path / "out.png").exists()
    assert to_onnx.main(["--ckpt", str(bad), "-o", str(tmp_path / "nan.onnx")]) == 2
    assert not (tmp_path / "nan.onnx").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--tile", "10"], "below MSN's minimum"), (["--tile", "28"], "below MSN's minimum"),
    (["--tile", "-5"], "expected 0 or more"), (["--overlap", "-1"], "expected 0 or more"),
    (["--tile", "64", "--overlap", "32"], "less than half"), (["--tile", "abc"], "whole number"),
])
def test_upscale_rejects_bad_tiles(photo, tmp_path, args, message, capsys, caplog):
    # "nothing.pth" would fail to load: the tile check must come first.
    assert exit_code(upscale.main, [str(photo), "-o", str(tmp_path / "o.png"), "--model", "nothing.pth", *args]) == 2
    assert message in capsys.readouterr().err + caplog.text


def test_tile_zero_means_whole_image_and_api_rejects_wide_overlap(photo, tmp_path, random_ckpt, random_graph):
    assert upscale.main([str(photo), "-o", str(tmp_path / "o.png"), "--model", str(random_ckpt), "--tile", "0"]) == 0
    with pytest.raises(InputError, match="less than half"):
        engines.load(random_graph, backend="onnxruntime")(smooth_test_image(1, 80, 80).numpy(), tile=40, overlap=20)


# output-path problems are found before the model loads.
def test_upscale_output_problems_before_any_work(photo, tmp_path, caplog):
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        readonly = Path("/sys/kernel")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    cases = [([str(photo), str(photo)], readonly, "not writable"),
             ([str(photo)], tmp_path / "missing" / "out.png", "does not exist"),
             ([str(photo), str(photo)], notes, "existing file, not a folder")]
    for inputs, out, message in cases:
        caplog.clear()
        # "nothing.pth" would fail to load: these must fail earlier, on the output.
        assert upscale.main([*inputs, "-o", str(out), "--model", "nothing.pth"]) == 2
        assert message in caplog.text, (out, caplog.text)
    assert notes.read_text() == "mine"


# upscaling into the input folder twice does not upscale earlier outputs.
def test_upscale_into_the_input_folder_twice(tmp_path, photo, random_ckpt):
    args = [str(tmp_path), "-o", str(tmp_path), "--model", str(random_ckpt)]
    assert upscale.main(args) == 0
    assert upscale.main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["in.png", "in_x4.png"]


@pytest.mark.build
def test_output_names_follow_the_model_scale(tmp_path, photo, random_x2_ckpt):
    """An x2 checkpoint writes *_x2 files at twice the size, and a rerun into the same folder
    does not take them for inputs."""
    x2 = random_x2_ckpt
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(photo.read_bytes())
    assert upscale.main([str(folder), "-o", str(folder), "--model", str(x2)]) == 0
    assert visible_names(folder) == ["a.png", "a_x2.png", "b.png", "b_x2.png"]
    assert cv2.imread(str(folder / "a_x2.png")).shape == (80, 96, 3)
    assert upscale.main([str(folder), "-o", str(folder), "--model", str(x2)]) == 0
    assert len(visible_names(folder)) == 4


def test_an_output_name_with_an_unknown_suffix_is_refused(tmp_path, photo, caplog):
    """`-o result.xyz` or `-o result.gif` was never meant as a folder: one line, nothing created."""
    for name in ("result.xyz", "result.gif"):
        assert upscale.main([str(photo), "-o", str(tmp_path / name), "--model", "nothing.pth"]) == 2
        assert "not an image format this tool writes" in caplog.text and not (tmp_path / name).exists()
    # ...unless it is typed as a folder, ending in /
    folder = str(tmp_path / "v1.0") + "/"
    assert upscale.main([str(photo), "-o", folder, "--model", "nothing.pth"]) == 2  # now the model is what fails
    assert "neither a file nor a known name" in caplog.text and (tmp_path / "v1.0").is_dir()


def test_two_inputs_for_one_output_are_refused_before_work(tmp_path, photo, random_ckpt, caplog):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for folder in (d1, d2):
        folder.mkdir()
        (folder / "a.png").write_bytes(photo.read_bytes())
    (d1 / "a.jpg").write_bytes(cv2.imencode(".jpg", cv2.imread(str(photo)))[1].tobytes())
    out = tmp_path / "out"
    assert upscale.main([str(d1 / "a.png"), str(d2 / "a.png"), "-o", str(out), "--model", str(random_ckpt),
                         "--overwrite"]) == 2
    assert "would both be written to" in caplog.text and str(d2 / "a.png") in caplog.text
    assert upscale.main([str(d1 / "a.png"), str(d1 / "a.jpg"), "-o", str(out), "--model", str(random_ckpt),
                         "--format", "png"]) == 2
    assert not list(out.iterdir())


def test_a_broken_or_huge_file_fails_alone(tmp_path, photo, random_ckpt, caplog):
    """A header claiming 100000x100000 is refused from its 69 bytes; the other images still go."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(png_claiming(100000, 100000, image_data=None))
    (folder / "b.png").write_bytes(photo.read_bytes())
    assert upscale.main([str(folder), "-o", str(tmp_path / "out"), "--model", str(random_ckpt)]) == 1
    assert "100000x100000" in caplog.text and "Traceback" not in caplog.text
    assert visible_names(tmp_path / "out") == ["b_x4.png"]


def test_inputs_named_without_an_image_suffix_are_written_as_png(random_ckpt, photo, tmp_path, caplog):
    """Hardening round 4, O: `photo` and `x.jfif` were read by content, then the encoder raised on
    the suffix: a traceback, and beside other inputs an abort (exit 134) that wrote none of them."""
    caplog.set_level(logging.INFO)
    named = [tmp_path / "photo", tmp_path / "x.jfif"]
    for path in named:
        path.write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    assert upscale.main([str(photo), *map(str, named), "-o", f"{out}/", "--model", str(random_ckpt)]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["in_x4.png", "photo_x4.png",
                                                                                   "x_x4.png"]
    assert all(cv2.imread(str(p)).shape == (160, 192, 3) for p in out.glob("*_x4.png"))
    assert "written as PNG (no encoder writes their suffix): photo, x.jfif" in caplog.text


def test_a_suffix_without_an_encoder_is_an_image_error_not_a_crash():
    from msn_deploy.engines.media.images import ImageError, encode_image

    with pytest.raises(ImageError, match="cannot encode .jfif images"):
        encode_image(".jfif", np.zeros((4, 4, 3), np.float32), None, False, 255)
