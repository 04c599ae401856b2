"""The README's Python API block runs as written: export -> engine build -> load -> upscale."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.conftest import REPO


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_python_api_block_runs(tmp_path, monkeypatch, random_msn):
    pytest.importorskip("tensorrt_rtx", reason="the block builds an engine: tensorrt_rtx is not installed")
    torch.save({"params_ema": random_msn.state_dict()}, tmp_path / "best.pth")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_block("Python API"), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["graph"].verification.passed
    assert namespace["plan"].path.stat().st_size > 100_000 and (tmp_path / "msn_x4_fp16.plan.json").is_file()
    sr = namespace["sr"]
    assert sr.shape == (1, 3, 256, 256) and sr.dtype == np.float32 and np.isfinite(sr).all()
