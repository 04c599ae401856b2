"""Running an artifact reads it through the formats floor (msn/formats): nothing of export/ is
imported, in a fresh process as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

RUN = """
import json, sys
import numpy as np
from msn_deploy import engines
engine = engines.load(sys.argv[1], backend=sys.argv[2])
out = engine(np.full((1, 3, 32, 32), 0.5, np.float32))
print(json.dumps({"shape": list(out.shape), "export": sorted(m for m in sys.modules if m.split(".")[0] == "export")}))
"""


def run_artifact(artifact, backend: str) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(artifact), backend], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_running_a_graph_imports_nothing_from_export(random_graph, backend):
    ran = run_artifact(random_graph, backend)
    assert ran == {"shape": [1, 3, 128, 128], "export": []}


@pytest.mark.slow
def test_running_an_ncnn_graph_imports_nothing_from_export(random_ncnn):
    ran = run_artifact(random_ncnn.param, "ncnn")
    assert ran == {"shape": [1, 3, 128, 128], "export": []}
