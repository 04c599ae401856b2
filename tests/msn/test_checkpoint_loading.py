"""Every accepted checkpoint layout loads strict; bad files fail with one clear error."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from msn_deploy.export import to_onnx
from msn_deploy.msn import (
    MSN,
    CheckpointError,
    ChecksumError,
    MSNConfig,
    MSNInference,
    load_model,
    read_checkpoint,
    resolve_checkpoint,
)
from msn_deploy.msn import checkpoint as checkpoint_module


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_official_checkpoint_config_and_params(official_ckpt):
    ckpt = read_checkpoint(official_ckpt)
    assert ckpt.config == MSNConfig()
    assert len(ckpt.state_dict) == 763
    assert sum(v.numel() for v in ckpt.state_dict.values()) == 87_612
    assert ckpt.sha256 == "5cbe6074c9c041f9894fa697f179c4deea4e91f0d0e06106c20ba24bcaeb6609"


def test_ema_flag_picks_the_right_weights(official_ckpt):
    raw = torch.load(official_ckpt, weights_only=True)
    ema = load_model(official_ckpt).state_dict()
    plain = load_model(official_ckpt, ema=False).state_dict()
    assert torch.equal(ema["c1.weight"], raw["params_ema"]["c1.weight"])
    assert torch.equal(plain["c1.weight"], raw["params"]["c1.weight"])
    assert not torch.equal(ema["c1.weight"], plain["c1.weight"])


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"params_ema": sd},
        lambda sd: {"params": sd},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "params_ema", "params", "state_dict", "model", "state_dict+module", "module"],
)
def test_accepted_layouts(tmp_path, random_msn, wrap):
    sd = random_msn.state_dict()
    model = load_model(save(wrap(sd), tmp_path / "w.pth"))
    assert isinstance(model, MSN) and not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


@pytest.mark.parametrize("config", [MSNConfig.from_width(32, 4, 2), MSNConfig.from_width(24, 6, 3)])
def test_variant_configs_are_inferred(tmp_path, config):
    sd = MSN(config).state_dict()
    model = load_model(save({"params": sd}, tmp_path / "v.pth"), deploy=True)
    assert isinstance(model, MSNInference) and model.config == config
    assert model(torch.rand(1, 3, 29, 30)).shape == (1, 3, 29 * config.upscale, 30 * config.upscale)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="neither a file nor a known name"):
        load_model("/nonexistent/best.pth")


def test_truncated_file(tmp_path, random_msn):
    path = save({"params": random_msn.state_dict()}, tmp_path / "full.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(cut)


def test_foreign_checkpoint(tmp_path):
    foreign = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}
    with pytest.raises(CheckpointError, match="resnet.pth: not an MSN state dict: missing fea_conv.weight"):
        load_model(save(foreign, tmp_path / "resnet.pth"))


def test_not_a_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="meta.pth: not a state dict.*not tensors"):
        load_model(save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth"))


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.bool, torch.int64])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_integer_weights_are_refused_naming_the_tensor(tmp_path, random_msn, dtype, suffix):
    """Cast into the float model they gave outputs 46 levels off with exit 0 (hardening round 3, #12)."""
    sd = {k: v.clone() for k, v in random_msn.state_dict().items()}
    sd["fea_conv.weight"] = sd["fea_conv.weight"].to(dtype)
    path = tmp_path / f"quantised{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, path)
    else:
        save(sd, path)
    with pytest.raises(CheckpointError, match=rf"not: fea_conv.weight \({str(dtype).removeprefix('torch.')}\)"):
        load_model(path)


def test_a_safetensors_file_without_tensors_says_so(tmp_path):
    from safetensors.torch import save_file

    save_file({}, tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_model(tmp_path / "empty.safetensors")


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path, random_msn):
    sd = dict(random_msn.state_dict())
    del sd["B3.c5.bias"]
    sd["B2.c1_d.bias"] = torch.zeros(5)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_model(save(sd, tmp_path / "bad.pth"))
    message = str(err.value)
    assert "1 missing keys: B3.c5.bias" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "B2.c1_d.bias: checkpoint (5,) vs model (14,)" in message


def test_known_name_resolves_from_seeded_cache(seeded_cache):
    assert resolve_checkpoint("official") == seeded_cache / "team28_MSN.pth"
    assert isinstance(load_model("official", deploy=True), MSNInference)


def test_cached_file_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "team28_MSN.pth").write_bytes(b"not the official weights")
    with pytest.raises(ChecksumError, match="delete it so that it is downloaded again"):
        resolve_checkpoint("official")


def test_unknown_name():
    with pytest.raises(FileNotFoundError, match="known name \\(official\\)"):
        resolve_checkpoint("team99")


# no network: one line, fast, and where to put the file.
def _stalled_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()  # accepts, never answers
    return server


@pytest.mark.parametrize("kind", ["refused", "stalled"])
def test_offline_official_fails_fast_with_instructions(tmp_path, monkeypatch, kind, caplog):
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MSN_DOWNLOAD_TIMEOUT", "1")
    server = _stalled_server()
    port = server.getsockname()[1]
    if kind == "refused":
        server.close()
    known = checkpoint_module.KNOWN_CHECKPOINTS["official"]
    monkeypatch.setitem(checkpoint_module.KNOWN_CHECKPOINTS, "official",
                        known.__class__(known.filename, f"http://127.0.0.1:{port}/x.pth", known.sha256, ""))
    started = time.monotonic()
    assert to_onnx.main(["--ckpt", "official", "-o", str(tmp_path / "m.onnx")]) == 2
    assert time.monotonic() - started < 10
    assert str(tmp_path / "checkpoints" / "team28_MSN.pth") in caplog.text and "--ckpt PATH" in caplog.text
    assert "Traceback" not in caplog.text and len(caplog.records[-1].getMessage().splitlines()) == 1
    assert not list((tmp_path / "checkpoints").glob(".*part"))
    server.close()


# never advise weights_only=False for a file of unknown origin.
def test_random_bytes_checkpoint_gives_no_unsafe_advice(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(junk)
    assert "weights_only" not in str(info.value) and "not a readable PyTorch checkpoint" in str(info.value)


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_safetensors_and_pth_load_the_same_model_both_ways(official_ckpt, tmp_path):
    """The official .pth saved as .safetensors, and that saved back as .pth: bit-equal outputs."""
    from safetensors.torch import load_file

    pth_model = load_model(official_ckpt)
    st = save_safetensors(pth_model.state_dict(), tmp_path / "team28_MSN.safetensors")
    back = tmp_path / "back.pth"
    torch.save(load_file(str(st)), back)
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = pth_model(x)
        for path in (st, back):
            assert torch.equal(load_model(path)(x), expected), path.name
            assert torch.equal(load_model(path, deploy=True)(x), load_model(official_ckpt, deploy=True)(x))
    assert read_checkpoint(st).config == read_checkpoint(official_ckpt).config


def test_safetensors_get_the_same_checks_and_messages(tmp_path, random_msn):
    foreign = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}
    with pytest.raises(CheckpointError, match="resnet.safetensors: not an MSN state dict: missing fea_conv.weight"):
        load_model(save_safetensors(foreign, tmp_path / "resnet.safetensors"))
    sd = dict(random_msn.state_dict())
    del sd["B3.c5.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="1 missing keys: B3.c5.bias; 1 unexpected keys: extra.weight"):
        load_model(save_safetensors(sd, tmp_path / "bad.safetensors"))
    nan = {k: v.clone() for k, v in random_msn.state_dict().items()}
    nan["B4.c5.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or Inf values in B4.c5.weight"):
        load_model(save_safetensors(nan, tmp_path / "nan.safetensors"))
    good = save_safetensors(random_msn.state_dict(), tmp_path / "good.safetensors")
    for name, data in (("cut", good.read_bytes()[: good.stat().st_size // 2]), ("pickle", save(
            random_msn.state_dict(), tmp_path / "x.pth").read_bytes()), ("empty", b"")):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a readable safetensors file") as caught:
            load_model(path)
        assert "\n" not in str(caught.value)


@pytest.mark.build
def test_safetensors_run_through_the_commands(tmp_path, random_msn, photo):
    from msn_deploy.engines import upscale

    st = save_safetensors(random_msn.state_dict(), tmp_path / "fine-tune.safetensors")
    # Eager, and a static export: the default path's export of a checkpoint is to_onnx's (and
    # tested on .pth files); what differs here is only the reading.
    assert upscale.main([str(photo), "-o", str(tmp_path / "out.png"), "--model", str(st), "--backend", "torch"]) == 0
    args = ["--ckpt", str(st), "-o", str(tmp_path / "m.onnx"), "--static", "40x48", "--batch", "1"]
    assert to_onnx.main(args) == 0
