"""The ncnn backend behind the Engine interface and msn-upscale: images, folders (with workers, the
.bin travelling with the .param) and video, on ncnn's CPU path and on Vulkan (lavapipe here)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.engines.runtime.ncnn_engine import NcnnEngine
from msn_deploy.export.parity import FP32_MAX_ABS
from msn_deploy.msn import InputError, MissingFileError, UsageError
from msn_deploy.msn.formats.ncnn_net import vulkan_devices
from msn_deploy.msn.metrics import max_abs
from msn_deploy.msn.sample_images import smooth_test_image
from tests.util import SUBPROCESS_TIMEOUT_S, visible_names

needs_vulkan = pytest.mark.skipif(not vulkan_devices(), reason="ncnn finds no Vulkan device here (Debian: "
                                  "mesa-vulkan-drivers gives lavapipe, a Vulkan device on the CPU)")


@pytest.fixture(scope="module")
def onnx_engine(random_graph):
    return engines.load(random_graph, backend="onnxruntime")


def test_load_picks_ncnn_for_a_param_file(random_ncnn):
    engine = engines.load(random_ncnn.param)
    assert isinstance(engine, NcnnEngine) and engine.backend == "ncnn" and engine.precision == "fp32"
    assert engine.scale == 4 and engine.describe()["device"] == "cpu"


def test_batches_and_tiles_as_every_backend_does(random_ncnn, onnx_engine):
    x = smooth_test_image(2, 45, 61, seed=3).numpy()
    ncnn_engine = engines.load(random_ncnn.param)
    assert max_abs(ncnn_engine(x), onnx_engine(x)) <= FP32_MAX_ABS
    tiled = ncnn_engine(x, tile=32, overlap=8)
    assert max_abs(tiled, onnx_engine(x, tile=32, overlap=8)) <= FP32_MAX_ABS
    with pytest.raises(InputError):
        ncnn_engine(np.full((1, 3, 40, 40), np.nan, np.float32))


@needs_vulkan
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_vulkan_through_the_engine(random_ncnn, onnx_engine, precision):
    x = smooth_test_image(1, 40, 52, seed=4).numpy()
    engine = engines.load(random_ncnn.param, device="vulkan", precision=precision)
    out = engine(x)
    assert engine.describe()["device"] == "vulkan" and engine.precision == precision
    bound = FP32_MAX_ABS if precision == "fp32" else 2e-2  # FP16 arithmetic: measured 5e-3 on this input
    assert max_abs(out, onnx_engine(x)) <= bound


def test_wrong_pairs_are_refused_by_name(random_ncnn, random_graph, tmp_path):
    param = random_ncnn.param
    refusals = [
        (dict(artifact=param, backend="openvino"), UsageError, "it runs on --backend ncnn"),
        (dict(artifact=random_graph, backend="ncnn"), UsageError, "--backend ncnn runs ncnn graphs"),
        (dict(artifact=param, device="cuda"), UsageError, "unknown device 'cuda' for --backend ncnn"),
        (dict(artifact=param, device="vulkan:first"), UsageError, "use cpu, vulkan or vulkan:N"),
        (dict(artifact=param, precision="fp8"), UsageError, "precision must be one of"),
        (dict(artifact=param, device="vulkan:7"), UsageError, "no Vulkan device 7"),
    ]
    lonely = tmp_path / "lonely.param"
    lonely.write_bytes(param.read_bytes())
    refusals.append((dict(artifact=lonely), MissingFileError, "has no weights lonely.bin beside it"))
    for kwargs, error, message in refusals:
        with pytest.raises(error, match=message):
            engines.load(**kwargs)


def test_no_vulkan_device_is_one_line_before_any_work(random_ncnn, photo, tmp_path):
    env = {**os.environ, "VK_ICD_FILENAMES": str(tmp_path / "no-driver.json")}  # a loader that finds no GPU
    out = tmp_path / "out.png"
    done = subprocess.run([sys.executable, "-m", "msn_deploy.engines.upscale", str(photo), "-o", str(out), "--model",
                           str(random_ncnn.param), "--device", "vulkan"], capture_output=True, text=True, env=env,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == ["ERROR msn: ncnn finds no Vulkan device here; install the GPU's Vulkan driver (Debian: "
                      "mesa-vulkan-drivers and libvulkan1), or use --device cpu"], done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.slow
def test_msn_upscale_runs_the_param_on_images_and_folders(random_ncnn, random_ckpt, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray((smooth_test_image(1, 36, 44, seed=int(rng.integers(100)))[0].permute(1, 2, 0).numpy()
                         * 255).round().astype(np.uint8)).save(folder / name)
    args = ["--workers", "2"]  # worker processes get the graph as bytes: its .bin must travel with it
    assert upscale.main([str(folder), "-o", str(tmp_path / "ncnn"), "--model", str(random_ncnn.param), *args]) == 0
    assert upscale.main([str(folder), "-o", str(tmp_path / "ort"), "--model", str(random_ckpt),
                         "--backend", "onnxruntime"]) == 0
    assert visible_names(tmp_path / "ncnn") == ["a_x4.png", "b_x4.png", "c_x4.png"]
    for name in ("a_x4.png", "b_x4.png", "c_x4.png"):
        ours = np.asarray(Image.open(tmp_path / "ncnn" / name), np.int16)
        theirs = np.asarray(Image.open(tmp_path / "ort" / name), np.int16)
        assert ours.shape == (144, 176, 3) and np.abs(ours - theirs).max() <= 1


@pytest.mark.slow
def test_msn_upscale_runs_the_param_on_a_video(random_ncnn, tmp_path):
    from msn_deploy.validate.benches.video_bench import decoded_frames, synthetic_clip

    clip = synthetic_clip(tmp_path / "clip.mp4", 4, 32, 40)
    out = tmp_path / "clip_x4.mkv"
    assert upscale.main([str(clip), "-o", str(out), "--model", str(random_ncnn.param), "--codec", "ffv1"]) == 0
    frames = decoded_frames(out)
    assert frames.shape == (4, 128, 160, 3)


def damaged_copies(param, folder):
    """Files a user may hold instead of an MSN ncnn pair, each with the message that must name it."""
    text, weights = param.read_text(), param.with_suffix(".bin").read_bytes()
    lines = text.splitlines()
    cases = {
        "not_ncnn": ("<html>a download page</html>\n", weights, "is not an ncnn text param file"),
        "foreign": ("7767517\n2 2\nInput data 0 1 data\nReLU relu 1 1 data output\n", b"", "is not an MSN ncnn graph"),
        "cut_param": ("\n".join(lines[:-40]) + "\n", weights, "but its header says"),
        "no_blobs": (text.replace(" data ", " in0 ").replace(" data\n", " in0\n"), weights, "lacks the blobs 'data'"),
        "cut_bin": (text, weights[: len(weights) // 2], "ncnn could not load"),
    }
    for name, (param_text, bin_bytes, message) in cases.items():
        (folder / f"{name}.param").write_text(param_text)
        (folder / f"{name}.bin").write_bytes(bin_bytes)
        yield folder / f"{name}.param", message


def test_damaged_or_foreign_files_and_small_images_are_one_line_errors(random_ncnn, photo, tmp_path, caplog, capfd):
    """...and ncnn's own words (`ModelBin read weight_data failed`, hardening round 4, K) stay in the
    debug log: the process's stderr has the one line only."""
    models = tmp_path / "models"
    models.mkdir()
    for param, message in damaged_copies(random_ncnn.param, models):
        caplog.clear()
        out = tmp_path / f"{param.stem}.png"
        assert upscale.main([str(photo), "-o", str(out), "--model", str(param)]) == 2, param.name
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and message in errors[0].getMessage(), (param.name, caplog.text)
        assert not out.exists() and "Traceback" not in caplog.text
        assert "ModelBin" not in capfd.readouterr().err, param.name
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(small)
    caplog.clear()  # a file the model cannot take fails as a file (exit 1), as on every backend
    assert upscale.main([str(small), "-o", str(tmp_path / "small_x4.png"), "--model", str(random_ncnn.param)]) == 1
    assert "input is 20x40 but MSN needs at least 29x29" in caplog.text and not (tmp_path / "small_x4.png").exists()


@pytest.mark.parametrize("device", ["cpu", pytest.param("vulkan", marks=needs_vulkan)])
def test_msn_upscale_gives_the_reference_photos_within_one_level(official_ncnn, reference_cases, tmp_path, device):
    from msn_deploy.msn.metrics import to_uint8

    for case in reference_cases:  # at their own odd sizes (chelsea_crop is 37x53)
        src, dst = tmp_path / f"{case.name}.png", tmp_path / f"{case.name}_{device}.png"
        Image.fromarray(case.lr).save(src)
        assert upscale.main([str(src), "-o", str(dst), "--model", str(official_ncnn.param), "--device", device]) == 0
        ours = np.asarray(Image.open(dst), np.int16)
        assert np.abs(ours - to_uint8(case.sr).astype(np.int16)).max() <= 1, case.name
