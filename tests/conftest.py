"""Shared fixtures. Tests that need ../shared data skip with the reason when it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import export
from export.verify import smooth_test_image
from msn import build_model, random_model, read_checkpoint
from validate.reference import ReferenceCase, load_reference_cases

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSN_SHARED_DIR", REPO.parent / "shared"))
OFFICIAL_CKPT = SHARED / "checkpoints" / "team28_MSN.pth"
REFERENCE_DIR = SHARED / "reference"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def official_ckpt() -> Path:
    if not OFFICIAL_CKPT.is_file():
        pytest.skip(f"official checkpoint not found at {OFFICIAL_CKPT}")
    return OFFICIAL_CKPT


@pytest.fixture(scope="session")
def official_model(official_ckpt: Path):
    return build_model(read_checkpoint(official_ckpt))


@pytest.fixture(scope="session")
def reference_cases() -> list[ReferenceCase]:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference folder not found at {REFERENCE_DIR}")
    return load_reference_cases(REFERENCE_DIR)


@pytest.fixture(scope="session")
def random_msn():
    return random_model(seed=0)


@pytest.fixture(scope="session")
def random_ckpt(tmp_path_factory, random_msn) -> Path:
    """The random-weight model as a checkpoint file, for the CLIs."""
    path = tmp_path_factory.mktemp("random_ckpt") / "random.pth"
    torch.save(random_msn.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def random_graph(tmp_path_factory, random_ckpt) -> Path:
    """Its FP32 graph with dynamic N/H/W (shared: an export takes ~15 s on 2 cores)."""
    path = tmp_path_factory.mktemp("random_graph") / "msn_fp32.onnx"
    return export.export_onnx(random_ckpt, path, export.ExportOptions(verify=False)).path


@pytest.fixture(scope="session")
def random_fp16_graph(tmp_path_factory, random_ckpt) -> Path:
    """Its FP16 graph (verified): the one TensorRT-RTX builds on a machine without a GPU."""
    path = tmp_path_factory.mktemp("random_fp16_graph") / "msn_fp16.onnx"
    return export.export_onnx(random_ckpt, path, export.ExportOptions(fp16=True)).path


@pytest.fixture(scope="session")
def official_graph(tmp_path_factory, official_ckpt) -> Path:
    """The official weights' FP32 graph, exported (and verified) once for the whole session."""
    path = tmp_path_factory.mktemp("official_graph") / "msn_x4_fp32.onnx"
    return export.export_onnx(official_ckpt, path).path


@pytest.fixture
def seeded_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, official_ckpt: Path) -> Path:
    """A checkpoint cache holding the official file, so that 'official' resolves without a download."""
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(official_ckpt, tmp_path / "checkpoints" / official_ckpt.name)
    return tmp_path / "checkpoints"


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    rgb = smooth_test_image(1, 40, 48)[0].numpy().transpose(1, 2, 0)
    cv2.imwrite(str(path), np.round(rgb[..., ::-1] * 255).astype(np.uint8))
    return path
