"""The "on this device" mode of msn-serve's page, without a service: which graph browsers get for
each kind of served model, and why the mode is off when it is."""

from __future__ import annotations

from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.web.device import browser_graph, browser_runtime


def test_an_onnx_model_is_given_as_it_is(random_graph):
    graph = browser_graph(ModelFiles.read(str(random_graph)), precision=None)
    assert graph.data == random_graph.read_bytes() and (graph.scale, graph.min_size, graph.reason) == (4, 29, "")


def test_a_checkpoint_is_given_as_its_graph_in_the_service_precision(random_ckpt, random_graph):
    graph = browser_graph(ModelFiles.read(str(random_ckpt)), precision=None)
    assert graph.data == random_graph.read_bytes()  # the fp32 graph of the cache, which the service runs too


def test_compiled_and_damaged_models_turn_the_mode_off_with_the_reason(random_graph, tmp_path, monkeypatch):
    plan = browser_graph(ModelFiles("msn_x4_fp16.plan", b"plan bytes", b"{}"), precision=None)
    assert plan.data is None and "msn_x4_fp16.plan, a compiled engine" in plan.reason
    assert browser_runtime(plan) == (None, plan.reason)
    cut = browser_graph(ModelFiles("cut.onnx", random_graph.read_bytes()[:1000]), precision=None)
    assert cut.data is None and "cut.onnx is not a readable ONNX model" in cut.reason
    good = browser_graph(ModelFiles.read(str(random_graph)), precision=None)
    assert browser_runtime(good)[0].is_dir()
    monkeypatch.setenv("MSN_ORT_WEB_DIR", str(tmp_path / "nowhere"))
    folder, reason = browser_runtime(good)
    assert folder is None and "no onnxruntime-web" in reason and "npm install --prefix .web" in reason
