"""The device-resident contract of Engine.__call__, checked with CPU tensors: a torch tensor is
never turned into numpy on the way (where the backend is torch), comes back as a tensor of its
dtype and device, and every step between (checks, batching, padding, tiling, blend) gives what
the numpy path gives. The same code runs on CUDA tensors; validate/validator/gpu_suite.sh checks it there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.engines.runtime.base import DeviceError
from msn_deploy.engines.runtime.torch_engine import TorchEngine
from msn_deploy.msn import InputError, UsageError
from msn_deploy.msn import validation as msn_validation
from msn_deploy.msn.sample_images import smooth_test_image


@pytest.fixture(scope="module")
def torch_engine(random_ckpt):
    return TorchEngine(str(random_ckpt))


@pytest.fixture
def no_numpy(monkeypatch):
    """Fails the test if anything turns a tensor into numpy."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("Tensor.numpy() was called on the torch path")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)


def test_a_torch_batch_stays_torch_end_to_end(torch_engine, no_numpy):
    x = smooth_test_image(2, 40, 48)
    out = torch_engine(x)
    assert isinstance(out, torch.Tensor) and out.dtype == x.dtype and out.device == x.device
    assert out.shape == (2, 3, 160, 192)


def test_a_tiled_torch_call_never_leaves_torch(torch_engine, no_numpy):
    out = torch_engine(smooth_test_image(1, 70, 90), tile=32, overlap=4)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 280, 360)


@pytest.mark.parametrize("tile", [None, 32])
def test_torch_and_numpy_paths_give_the_same_pixels(torch_engine, tile):
    """The same checks, casts, padding and blend in both paths: equal to the last bit."""
    x = smooth_test_image(3, 70, 90)
    from_numpy = torch_engine(x.numpy(), tile=tile, overlap=4)
    from_torch = torch_engine(x, tile=tile, overlap=4)
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_array_equal(from_torch.numpy(), from_numpy)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_host_runtimes_take_and_give_tensors(random_graph, torch_engine, backend):
    engine = engines.load(random_graph, backend=backend)
    x = smooth_test_image(2, 40, 48)
    out = engine(x, tile=32, overlap=4)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), engine(x.numpy(), tile=32, overlap=4))
    np.testing.assert_allclose(out.numpy(), torch_engine(x, tile=32, overlap=4).numpy(), rtol=0, atol=2e-4)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_a_flipped_numpy_view_runs_like_its_copy(random_ckpt, random_graph, backend):
    """Hardening round 4, L: a view with negative strides (x[..., ::-1]) crashed with torch's
    ValueError, though any numpy array is documented to run."""
    engine = engines.load(random_ckpt if backend == "torch" else random_graph, backend=backend)
    flipped = smooth_test_image(1, 40, 48).numpy()[..., ::-1]
    np.testing.assert_array_equal(engine(flipped), engine(np.ascontiguousarray(flipped)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_dtype_comes_back_as_given(torch_engine, dtype):
    x = smooth_test_image(1, 32, 32).to(dtype)
    assert torch_engine(x).dtype == dtype
    assert torch_engine(x.numpy()).dtype == x.numpy().dtype


def test_results_are_not_buffers_reused_by_the_next_call(random_graph):
    """OpenVINO's output tensor belongs to its infer request: each result must be a copy."""
    engine = engines.load(random_graph, backend="openvino")
    first_input = smooth_test_image(1, 32, 32)
    first = engine(first_input)
    kept = first.clone()
    engine(torch.flip(first_input, dims=(3,)))
    torch.testing.assert_close(first, kept, rtol=0, atol=0)


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN or Inf"), (255.0, "divide by 255")])
def test_tensor_inputs_are_checked_where_they_live(torch_engine, value, message):
    x = smooth_test_image(1, 32, 32)
    x[0, 2, 3, 4] = value
    with pytest.raises(InputError, match=message):
        torch_engine(x)


def test_integer_tensors_are_refused(torch_engine):
    with pytest.raises(InputError, match="expected floats"):
        torch_engine((smooth_test_image(1, 32, 32) * 255).to(torch.uint8))


def test_the_input_is_checked_once_per_call(torch_engine, monkeypatch):
    """The engine checks on the input's device; the model inside must not check again (on a GPU a
    second check is a second wait for the device and copy to the host)."""
    calls = []
    real = msn_validation.check_values
    monkeypatch.setattr(msn_validation, "check_values", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr("msn_deploy.engines.runtime.base.check_values", msn_validation.check_values)
    monkeypatch.setattr("msn_deploy.msn.tensor_checks.check_values", msn_validation.check_values)
    torch_engine(smooth_test_image(1, 32, 32))
    assert len(calls) == 1
    # Outside an engine the model still checks its input itself.
    with torch.no_grad():
        torch_engine.model(smooth_test_image(1, 32, 32))
    assert len(calls) == 2


def test_bad_torch_engine_options(random_ckpt):
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        TorchEngine(str(random_ckpt), cuda_graphs=True)
    with pytest.raises(UsageError, match="precision must be one of fp32, fp16"):
        TorchEngine(str(random_ckpt), precision="fp8")
    with pytest.raises(UsageError, match="FP16 needs the inference form"):
        TorchEngine(str(random_ckpt), precision="fp16", inference_form=False)
    with pytest.raises(UsageError, match="cache_size must be >= 1"):
        TorchEngine(str(random_ckpt), cache_size=0)
    with pytest.raises(DeviceError, match="unknown device 'cpu:1'"):
        TorchEngine(str(random_ckpt), device="cpu:1")
    for threads in (0, -1, 1.5, "2", True):
        with pytest.raises(UsageError, match="threads must be a whole number >= 1"):
            TorchEngine(str(random_ckpt), threads=threads)


def test_load_selects_the_fp16_inference_form(random_ckpt, caplog):
    engine = engines.load(random_ckpt, "torch", precision="fp16")
    if not torch.cuda.is_available():  # said, since it is ~70x slower (hardening round 3, G)
        assert "FP16 on a CPU" in caplog.text
    assert engine.describe() | {"precision": "fp16", "form": "inference", "cuda_graphs": False} == engine.describe()
    out = engine(smooth_test_image(1, 32, 32))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_channels_last_gives_the_same_pixels(random_ckpt, torch_engine):
    x = smooth_test_image(1, 40, 48)
    channels_last = TorchEngine(str(random_ckpt), channels_last=True)
    torch.testing.assert_close(channels_last(x), torch_engine(x), rtol=0, atol=1e-5)


def test_precision_of_an_artifact_is_its_own(random_graph, random_fp16_graph, photo, tmp_path, caplog):
    assert engines.load(random_fp16_graph, backend="onnxruntime", precision="fp16").precision == "fp16"
    with pytest.raises(UsageError, match="is an FP32 artifact, not FP16.*--fp16"):
        engines.load(random_graph, backend="onnxruntime", precision="fp16")
    # The other way round, the hint says to export without --fp16 (hardening round 3, #17: it said --fp16).
    with pytest.raises(UsageError, match=r"is an FP16 artifact, not FP32.*to_onnx.py \(no --fp16\)"):
        engines.load(random_fp16_graph, backend="onnxruntime", precision="fp32")
    assert upscale.main([str(photo), "-o", str(tmp_path / "a.png"), "--model", str(random_graph),
                         "--precision", "fp16"]) == 2
    assert "is an FP32 artifact" in caplog.text and not (tmp_path / "a.png").exists()
