"""torch's CPU threads wait passively in every process of this project (msn.threads), so a busy
neighbour does not slow them down many times; the policy is read from OpenMP itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from msn_deploy.engines.runtime.torch_engine import TorchEngine
from tests.conftest import REPO

PASSIVE = "GOMP_SPINCOUNT = '0'"  # what libgomp reports for OMP_WAIT_POLICY=PASSIVE (default: 300000)


def openmp_report(code: str, **env: str) -> str:
    """stderr of a fresh interpreter running `code`, with libgomp's settings printed as it loads."""
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=clean | {"OMP_DISPLAY_ENV": "VERBOSE"} | env)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("module", ["msn_deploy.msn", "msn_deploy.engines.upscale",
                                    "msn_deploy.validate.validator.runner", "msn_deploy.export.onnx_export"])
def test_every_entry_point_makes_torch_wait_passively(module):
    """Whether the entry point loads torch itself or a later step does (a graph run never does)."""
    assert PASSIVE in openmp_report(f"import {module}; import torch")


def test_a_policy_the_user_chose_is_kept():
    report = openmp_report("import msn_deploy.msn.threads as t; assert not t.PASSIVE_WAITING; import torch",
                           OMP_WAIT_POLICY="ACTIVE")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in report


def test_torch_imported_first_is_named_with_the_fix(random_ckpt):
    """Too late to change the policy: the torch engine says so once, with what to do."""
    code = ("import torch, logging; logging.basicConfig(); torch.set_num_threads(2); from msn_deploy import engines; "
            f"engines.load({str(random_ckpt)!r}, 'torch'); engines.load({str(random_ckpt)!r}, 'torch')")
    report = openmp_report(code)
    assert PASSIVE not in report
    assert report.count("set OMP_WAIT_POLICY=PASSIVE before importing torch, or use threads=1") == 1


def test_a_thread_budget_is_torchs(random_ckpt):
    before = torch.get_num_threads()
    try:
        TorchEngine(str(random_ckpt), threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
