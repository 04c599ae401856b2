"""The exported FP32 graph runs in the CPU runtimes that C++ and Python apps commonly have.

OpenCV DNN (the default engine of OpenCV 5) is checked here; ONNX Runtime and OpenVINO in their
own tests, TensorRT-RTX parsing in test_trt_build.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from export import to_onnx
from export.verify import smooth_test_image

OPENCV_MAX_ABS = 1e-3


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, random_ckpt, random_graph):
    out = tmp_path_factory.mktemp("portable")
    paths = {"dynamic": random_graph, "static": out / "static.onnx"}
    assert to_onnx.main(["--ckpt", str(random_ckpt), "-o", str(paths["static"]), "--static", "48x64", "--batch", "1",
                         "--no-verify"]) == 0
    return paths


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_opencv_dnn_default_engine_runs_the_graph(graphs, random_msn, kind):
    x = smooth_test_image(1, 48, 64)
    with torch.no_grad():
        expected = random_msn(x).numpy()
    net = cv2.dnn.readNetFromONNX(str(graphs[kind]))  # default arguments, as an app would call it
    net.setInput(x.numpy())
    out = net.forward()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= OPENCV_MAX_ABS
