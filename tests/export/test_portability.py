"""The exported FP32 graph runs in the CPU runtimes that C++ and Python apps commonly have.

OpenCV DNN (the default engine of OpenCV 5) is checked here; ONNX Runtime and OpenVINO in their
own tests, TensorRT-RTX parsing in test_trt_build.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from msn_deploy.msn.sample_images import smooth_test_image

OPENCV_MAX_ABS = 1e-3


@pytest.fixture(scope="module")
def graphs(random_graph, random_static_graph):
    return {"dynamic": random_graph, "static": random_static_graph}


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_opencv_dnn_default_engine_runs_the_graph(graphs, random_msn, kind):
    x = smooth_test_image(1, 37, 53)  # the static graph's size
    with torch.no_grad():
        expected = random_msn(x).numpy()
    net = cv2.dnn.readNetFromONNX(str(graphs[kind]))  # default arguments, as an app would call it
    net.setInput(x.numpy())
    out = net.forward()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= OPENCV_MAX_ABS
