"""The measuring commands of #42 run end to end on random-init weights and write what their
reports promise (the figures themselves are docs/BENCHMARKS.md's, not asserted here)."""

from __future__ import annotations

import json

import pytest

from msn_deploy.validate.benches import browser_bench, command_bench, memory_bench, openvino_profile

pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[cpu]')")


@pytest.mark.slow
def test_the_memory_bench_reports_each_backend_and_size(random_graph, tmp_path):
    out = tmp_path / "m"
    assert memory_bench.main(["--model", str(random_graph), "--backends", "openvino", "onnxruntime",
                              "--sizes", "64x64", "160x160", "--out", str(out)]) == 0
    rows = json.loads((out / "memory.json").read_text())["rows"]
    assert [(r["backend"], r["lr"]) for r in rows] == [("openvino", "64x64"), ("openvino", "160x160"),
                                                       ("onnxruntime", "64x64"), ("onnxruntime", "160x160")]
    assert all(r["peak_mb"] >= r["warm_mb"] > 0 for r in rows)
    assert "bytes per LR px" in (out / "memory.md").read_text()


def test_the_memory_bench_needs_the_ncnn_graph_for_ncnn(random_graph, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        memory_bench.main(["--model", str(random_graph), "--backends", "ncnn", "--out", str(tmp_path)])
    assert exited.value.code == 2 and "--ncnn PARAM" in capsys.readouterr().err


def test_the_openvino_profile_has_both_precisions(random_graph, tmp_path):
    out = tmp_path / "p"
    assert openvino_profile.main(["--model", str(random_graph), "--size", "32x48", "--runs", "1", "--out",
                                  str(out)]) == 0
    layers = json.loads((out / "openvino_profile.json").read_text())["layers"]
    assert set(layers) == {"fp32", "bf16"}
    for precision in layers.values():
        assert any(layer["type"] == "Convolution" for layer in precision.values())
        assert all(layer["ms"] >= 0 for layer in precision.values())
    assert "**all layers**" in (out / "openvino_profile.md").read_text()


@pytest.mark.slow
def test_the_command_bench_times_commands_and_stages(random_ckpt, photo, tmp_path):
    out = tmp_path / "c"
    assert command_bench.main(["--model", str(random_ckpt), "--image", str(photo), "--size", "40x48", "--runs", "1",
                               "--out", str(out)]) == 0
    data = json.loads((out / "command.json").read_text())
    assert set(data["whole"]) == {"one photo", "folder of 20 photos", "--help"}
    assert set(data["stages"]) == {"interpreter start and exit", "import", "decode", "load",
                                   "compile or cached shape", "infer", "encode"}
    assert all(row["median_s"] > 0 for row in data["whole"].values())


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16", "fp16"], "names one precision twice"),
    (["--out", "{tmp}"], "is a folder; give a report path without suffix"),
])
def test_the_browser_bench_refuses_its_arguments_before_the_work(args, message, tmp_path, capsys):
    """Hardening round 4, M: both were found after the whole run (a temporary folder named)."""
    argv = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exited:
        browser_bench.main(argv if "--out" in argv else [*argv, "--out", str(tmp_path / "browser")])
    assert exited.value.code == 2 and message in capsys.readouterr().err
