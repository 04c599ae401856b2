"""The commands exactly as the README spells them, as separate processes."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
import torch

from tests.conftest import REPO


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", ["export/to_onnx.py", "export/build_trt.py", "validate/run.py"])
def test_scripts_start(script):
    result = run(str(REPO / script), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_module_cli_starts():
    result = run("-m", "msn_deploy.engines.upscale", "--help")
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


@pytest.mark.build
def test_to_onnx_script_exports_and_summarises(tmp_path, random_msn):
    torch.save({"params_ema": random_msn.state_dict()}, tmp_path / "best.pth")
    result = run(str(REPO / "export/to_onnx.py"), "--ckpt", "best.pth", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Wrote msn_x4_fp32.onnx" in result.stdout and "Verification passed" in result.stdout
    assert onnx.load(tmp_path / "msn_x4_fp32.onnx").graph.input[0].name == "input"
    assert "[1/4] reading checkpoint" in result.stderr  # progress goes to the log, the summary to stdout
