"""What running an artifact loads, in a fresh process as a user runs it: nothing of export/ (an
artifact is read through the formats floor, msn/formats), and no torch on a graph runtime's path or
when a command only reads its arguments (torch takes about a second to load)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from msn_deploy.engines.runtime.graph_cache import cached_graph
from tests.conftest import REPO

LOADED = 'json.dumps({"export": sorted(m for m in sys.modules if m.startswith("msn_deploy.export")), ' \
         '"torch": "torch" in sys.modules})'

RUN = f"""
import json, sys
import numpy as np
from msn_deploy import engines
engine = engines.load(sys.argv[1], backend=sys.argv[2])
out = engine(np.full((1, 3, 32, 32), 0.5, np.float32))
assert out.shape == (1, 3, 128, 128), out.shape
print({LOADED})
"""

UPSCALE = f"""
import json, sys
from msn_deploy.engines import upscale
assert upscale.main(sys.argv[1:]) == 0
print({LOADED})
"""


def loaded_by(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_running_a_graph_loads_neither_export_nor_torch(random_graph, backend):
    assert loaded_by(RUN, str(random_graph), backend) == {"export": [], "torch": False}


@pytest.mark.slow
def test_running_an_ncnn_graph_loads_neither_export_nor_torch(random_ncnn):
    assert loaded_by(RUN, str(random_ncnn.param), "ncnn") == {"export": [], "torch": False}


def test_a_checkpoint_whose_graph_is_cached_runs_without_torch(random_ckpt, photo, tmp_path):
    cached_graph(random_ckpt)  # in the session's cache, which the command shares (MSN_CACHE_DIR)
    out = tmp_path / "out.png"
    assert loaded_by(UPSCALE, str(photo), "-o", str(out), "--model", str(random_ckpt)) == {"export": [],
                                                                                            "torch": False}
    assert out.is_file()


def commands() -> list:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    return [pytest.param(target, id=name) for name, target in scripts.items()]


@pytest.mark.parametrize("entry", commands())
def test_a_commands_help_loads_no_torch(entry, request):
    """Run as its console script runs it (some end the process themselves), with Python's own
    record of every import."""
    name, (module, _, function) = request.node.callspec.id, entry.partition(":")
    code = f"import sys; sys.argv = [{name!r}, '--help']; from {module} import {function}; {function}()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "msn_deploy" in imported and "torch" not in imported
