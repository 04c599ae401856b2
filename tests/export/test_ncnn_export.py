"""The ncnn export: a .param/.bin pair in the apps' convention, no size baked in, exact on ncnn's CPU
path and on a real Vulkan device (lavapipe here), refused before any work when the command is wrong."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from msn_deploy.export import to_ncnn
from msn_deploy.export.ncnn_apps import known_apps, what_stops
from msn_deploy.export.ncnn_export import NcnnExportOptions, export_ncnn
from msn_deploy.export.parity import FP32_MAX_ABS
from msn_deploy.export.verify import VerificationError
from msn_deploy.msn.formats.ncnn_net import NcnnNet, NcnnSettings, runtime_form, vulkan_devices
from msn_deploy.msn.formats.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParam
from msn_deploy.msn.metrics import max_abs, psnr
from msn_deploy.msn.sample_images import smooth_test_image
from tests.util import FP16_MIN_PSNR_DB, exit_code, visible_names

# Measured vs the float64 references: ncnn CPU FP32 1.2e-5 (astronaut), Vulkan (lavapipe) FP32 2.3e-6,
# Vulkan FP16 60.6 dB (astronaut) and 64.1 dB.
CPU_MAX_ABS_VS_FP64 = 3e-5
VULKAN_FP32_MAX_ABS_VS_FP64 = 1e-5

needs_vulkan = pytest.mark.skipif(not vulkan_devices(), reason="ncnn finds no Vulkan device here (Debian: "
                                  "mesa-vulkan-drivers gives lavapipe, a Vulkan device on the CPU)")


def run(net: NcnnNet, x: torch.Tensor) -> np.ndarray:
    return net.run(x[0].numpy()).transpose(1, 2, 0)


def test_the_export_writes_a_pair_in_the_apps_convention(random_ncnn):
    folder = random_ncnn.param.parent
    assert visible_names(folder) == ["msn_x4.bin", "msn_x4.openmodeldb.json", "msn_x4.param"] and visible_names(folder) == sorted(
        p.name for p in folder.iterdir())  # no temporary file left beside them
    param = NcnnParam.read(random_ncnn.param)
    assert param.inputs() == [INPUT_BLOB] and param.outputs() == [OUTPUT_BLOB]
    types = {layer.type for layer in param.layers}
    assert not [t for t in types if "." in t] and param.upscale() == 4
    # the apps' form (export.ncnn_portable): only layers and parameters that chaiNNer's ncnn knows
    assert not types & {"Erf", "UnaryOp", "Tile", "MemoryData"} and "GELU" in types
    assert not [layer.name for layer in param.layers if layer.param("31") or (layer.type == "Convolution" and layer.param(
        "7")) or (layer.type == "Interp" and layer.param("9"))]
    assert all(what_stops(app, param) == [] for app in known_apps() if app.name.startswith(("chaiNNer", "upscayl-ncnn")))
    # and what this project's runtime loads: exact GELUs, strided convolutions again
    loaded = runtime_form(NcnnParam.read(random_ncnn.param))
    assert {layer.type for layer in loaded.layers} >= {"Erf"} and "GELU" not in {layer.type for layer in loaded.layers}
    assert not [layer for layer in loaded.layers if layer.name.endswith("_subsample")]
    assert all(result.passed for _, result in random_ncnn.verification)
    assert "input blob 'data', output blob 'output'" in random_ncnn.summary()


def test_the_model_card_describes_the_files_beside_it(random_ncnn):
    card = json.loads(random_ncnn.card.read_text())
    assert card["scale"] == 4 and card["inputChannels"] == card["outputChannels"] == 3 and card["size"] == ["28nf", "8nb"]
    (resource,) = card["resources"]
    assert resource["platform"] == "ncnn" and resource["size"] == random_ncnn.size_bytes
    assert resource["sha256"] == hashlib.sha256(random_ncnn.weights.read_bytes()).hexdigest()
    assert card["author"] == "unknown" and card["license"] is None  # random weights: nobody's to claim
    verified = random_ncnn.verification[0][1]
    assert f"max abs {verified.max_abs:.2e}" in card["description"]
    assert "Loads in: chaiNNer, upscayl-ncnn (current source), ncnn (current, PyPI)" in card["description"]


@pytest.mark.parametrize("hw", [(29, 29), (30, 41), (37, 53), (64, 97)])
def test_any_size_gives_exactly_four_times_it(random_ncnn, random_msn, hw):
    x = smooth_test_image(1, *hw, seed=1)
    with torch.no_grad():
        expected = random_msn(x)[0].permute(1, 2, 0).numpy()
    out = run(NcnnNet(random_ncnn.param), x)
    assert out.shape == (4 * hw[0], 4 * hw[1], 3)
    assert max_abs(out, expected) <= FP32_MAX_ABS


def test_official_weights_on_the_cpu_path_match_the_float64_references(official_ncnn, reference_cases):
    net = NcnnNet(official_ncnn.param)
    for case in reference_cases:
        assert max_abs(run(net, case.input_tensor()), case.sr) <= CPU_MAX_ABS_VS_FP64, case.name


@needs_vulkan
def test_official_weights_on_vulkan_fp32_and_fp16(official_ncnn, reference_cases):
    fp32 = NcnnNet(official_ncnn.param, NcnnSettings(vulkan=True))
    fp16 = NcnnNet(official_ncnn.param, NcnnSettings(vulkan=True, fp16=True))
    for case in reference_cases:
        x = case.input_tensor()
        assert max_abs(run(fp32, x), case.sr) <= VULKAN_FP32_MAX_ABS_VS_FP64, case.name
        half = run(fp16, x)
        assert np.isfinite(half).all() and psnr(half, case.sr) >= FP16_MIN_PSNR_DB, case.name


def test_half_precision_weights(tmp_path, random_ckpt, random_ncnn):
    done = export_ncnn(random_ckpt, tmp_path / "half.param", NcnnExportOptions(fp16=True))
    assert done.weights.stat().st_size < 0.6 * random_ncnn.weights.stat().st_size
    assert all(result.passed and result.psnr_db >= FP16_MIN_PSNR_DB for _, result in done.verification)


@pytest.mark.build  # exports an ncnn graph
def test_nothing_is_written_when_the_files_do_not_compute_msn(tmp_path, random_ckpt, monkeypatch):
    def approximate_gelu(self):  # leave ncnn's own GELU, and make the first one wrong
        gelu = next(layer for layer in self.layers if layer.type == "GELU")
        gelu.type = "ReLU"
        return 0

    monkeypatch.setattr(NcnnParam, "exact_gelu", approximate_gelu)
    with pytest.raises(VerificationError, match="was not written: ncnn output"):
        export_ncnn(random_ckpt, tmp_path / "msn.param")
    assert list(tmp_path.iterdir()) == []


def test_bad_commands_are_refused_before_any_work(tmp_path, random_ckpt, caplog):
    weights_named = tmp_path / "weights.bin"  # a checkpoint that weights.param's weights would replace
    weights_named.write_bytes(random_ckpt.read_bytes())
    cases = [
        ([str(random_ckpt), "-o", str(tmp_path / "msn.onnx")], "is written as NAME.param"),
        ([str(random_ckpt), "-o", str(tmp_path / "missing" / "msn.param")], "does not exist"),
        ([str(random_ckpt), "-o", str(tmp_path / "folder.param")], "is a directory"),
        ([str(weights_named), "-o", str(tmp_path / "weights.param")], "would replace the input"),
        ([str(tmp_path / "no.pth"), "-o", str(tmp_path / "msn.param")], "neither a file nor a known name"),
    ]
    (tmp_path / "folder.param").mkdir()
    for (ckpt, *args), message in cases:
        caplog.clear()
        assert exit_code(to_ncnn.main, ["--ckpt", ckpt, *args]) == 2, args
        assert message in caplog.text and "Traceback" not in caplog.text, (args, caplog.text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.param", "weights.bin"]
    assert weights_named.read_bytes() == random_ckpt.read_bytes()


@needs_vulkan
@pytest.mark.slow
def test_fp16_on_vulkan_holds_at_1080p_where_unmarked_statistics_do_not(official_ncnn, tmp_path):
    from PIL import Image

    from tests.conftest import REFERENCE_DIR

    photo = Image.open(REFERENCE_DIR / "astronaut_hr.png").convert("RGB").resize((480, 270), Image.BICUBIC)
    bright = np.clip(np.asarray(photo, np.float32) / 255 * 1.4 + 0.1, 0, 1)  # where float16 statistics fail
    x = torch.from_numpy(bright).permute(2, 0, 1)[None].contiguous()
    expected = run(NcnnNet(official_ncnn.param), x)
    param = runtime_form(NcnnParam.read(official_ncnn.param))  # the file has no per-layer flags; the runtime adds them
    assert {layer.type for layer in param.layers if layer.param("31")} >= {"Reduction", "BinaryOp", "Pooling"}
    half = run(NcnnNet(official_ncnn.param, NcnnSettings(vulkan=True, fp16=True)), x)
    assert half.shape == (1080, 1920, 3) and np.isfinite(half).all()
    assert psnr(half, expected) >= 50  # measured 59.7 dB vs float64 (29.8 dB with the statistics in FP16)
