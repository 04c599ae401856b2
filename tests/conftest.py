"""Shared fixtures. Tests that need ../shared data skip with the reason when it is absent."""

from __future__ import annotations

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from msn_deploy import export
from msn_deploy.engines.runtime.graph_cache import cached_graph
from msn_deploy.msn import build_model, random_model, read_checkpoint
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.chromium import chromium_missing, headless_chromium
from msn_deploy.validate.core.reference import ReferenceCase, load_reference_cases

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSN_SHARED_DIR", REPO.parent / "shared"))
OFFICIAL_CKPT = SHARED / "checkpoints" / "team28_MSN.pth"
REFERENCE_DIR = SHARED / "reference"

torch.set_num_threads(min(2, os.cpu_count() or 1))

# A suite started in the background by a script (`cmd &`, as some CI runners do) inherits SIGINT
# ignored, and an ignored signal stays ignored in every command a test starts: the Ctrl-C tests'
# SIGINT would then do nothing and the command run to its end. Handle it here, so that the
# commands start with the default disposition (exec resets a handled signal, not an ignored one).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Fixtures that start a service, or build what the quick tier leaves out (graphs beyond the
# session's one random graph, engines, the C++ library): a test that uses one is marked for it, so
# `bash tests/run_all.sh --quick` leaves it out without a mark of its own.
SERVICE_FIXTURES = {"server", "two_nodes", "cluster", "browser"}
BUILD_FIXTURES = {"official_graph", "official_fp16_graph", "random_fp16_graph", "graphs", "built", "fp16_graph", "lib", "exported",
                  "fp32_graph", "random_setup", "report", "training_form_pair", "take_along", "tiny_ckpt",
                  "official_ncnn", "site_fp32", "site_fp16", "random_static_graph", "random_ncnn"}


def pytest_collection_modifyitems(config, items) -> None:
    """Marks by fixture (above); tests marked gpu are skipped with the reason where CUDA is absent."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none here); run pytest -m gpu on a machine with one")
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SERVICE_FIXTURES:
            item.add_marker(pytest.mark.service)
        if used & BUILD_FIXTURES:
            item.add_marker(pytest.mark.build)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole session (and the commands it starts): each checkpoint a
    test runs on a CPU is exported to a graph once (engines.runtime.graph_cache), not once per test."""
    root = tmp_path_factory.mktemp("msn-cache")
    os.environ["MSN_CACHE_DIR"] = str(root)
    return root


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
def random_x2_ckpt(tmp_path_factory) -> Path:
    """A random x2 MSN as a checkpoint: names and sizes that follow the model's scale. One file for
    the session, so that the commands export its graph into the session's cache once."""
    path = tmp_path_factory.mktemp("random_x2") / "x2.pth"
    torch.save(random_model(seed=0, upscale=2).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def random_graph(session_cache, random_ckpt) -> Path:
    """Its FP32 graph with dynamic N/H/W, the one the CLIs run it as on a CPU (an export takes
    ~15 s on 2 cores: one for the session)."""
    return cached_graph(random_ckpt, folder=session_cache / "graphs")


@pytest.fixture(scope="session")
def random_static_graph(tmp_path_factory, random_ckpt) -> Path:
    """Its FP32 graph with a static 1x3x37x53 input, as apps that cannot take dynamic shapes export it."""
    path = tmp_path_factory.mktemp("random_static_graph") / "msn_37x53.onnx"
    return export.export_onnx(random_ckpt, path, export.ExportOptions(static_hw=(37, 53), batch=1, verify=False)).path


@pytest.fixture(scope="session")
def random_fp16_graph(session_cache, random_ckpt) -> Path:
    """Its FP16 graph (verified): the one TensorRT-RTX builds on a machine without a GPU, and the
    one `engines.load(random_ckpt, precision="fp16")` finds in the session's cache."""
    return cached_graph(random_ckpt, "fp16", folder=session_cache / "graphs")


@pytest.fixture(scope="session")
def random_ncnn(tmp_path_factory, random_ckpt):
    """The random-weight model as a verified ncnn graph (NcnnExportResult: .param, .bin; ~6 s)."""
    return export.export_ncnn(random_ckpt, tmp_path_factory.mktemp("random_ncnn") / "msn_x4.param")


@pytest.fixture(scope="session")
def official_ncnn(tmp_path_factory, official_ckpt):
    """The official weights as a verified ncnn graph, FP32 weights."""
    return export.export_ncnn(official_ckpt, tmp_path_factory.mktemp("official_ncnn") / "msn_x4.param")


@pytest.fixture(scope="session")
def official_graph(session_cache, official_ckpt) -> Path:
    """The official weights' FP32 graph (verified), exported once for the whole session and the
    one that the commands run the official checkpoint as on a CPU."""
    return cached_graph(official_ckpt, folder=session_cache / "graphs")


@pytest.fixture(scope="session")
def official_fp16_graph(session_cache, official_ckpt) -> Path:
    """Its FP16 graph (verified) from the session's cache: the one the static site, the GPU run's
    take-along folder and `--precision fp16` on a CPU use."""
    return cached_graph(official_ckpt, "fp16", folder=session_cache / "graphs")


@pytest.fixture
def seeded_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, official_ckpt: Path, session_cache: Path) -> Path:
    """A checkpoint cache holding the official file, so that 'official' resolves without a download;
    its exported graphs are the session's."""
    monkeypatch.setenv("MSN_CACHE_DIR", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (session_cache / "graphs").mkdir(exist_ok=True)
    (tmp_path / "graphs").symlink_to(session_cache / "graphs")
    shutil.copy(official_ckpt, tmp_path / "checkpoints" / official_ckpt.name)
    return tmp_path / "checkpoints"


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    rgb = smooth_test_image(1, 40, 48)[0].numpy().transpose(1, 2, 0)
    cv2.imwrite(str(path), np.round(rgb[..., ::-1] * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def browser():
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    with headless_chromium() as driver:
        yield driver
