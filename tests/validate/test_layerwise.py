"""validate/validator/layerwise.py on polygraphy: the first node where an FP16 graph goes wrong, found in a
planted defect whose place is known, and nothing found where there is no defect."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch

from msn_deploy.msn import metrics
from msn_deploy.msn.formats.graph import GraphMetadata
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.validator import layerwise

pytest.importorskip("polygraphy", reason="polygraphy is not installed")


class HalfBehindFloatIO(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


WIDE = (256, 384)  # ~98k pixels: a float16 sum over them loses the mean


def export_training_form(model: torch.nn.Module, path, precision: str):
    """The authors' training form as a graph for one 256x384 input (static shapes export in half
    the time): its CCA sums the whole image in the graph's own precision, the defect the
    inference form's float32 islands exist to avoid."""
    torch.onnx.export(model, (torch.rand(1, 3, *WIDE),), str(path), dynamo=True, external_data=False)
    graph = onnx.load(path)
    GraphMetadata(scale=4, precision=precision, io_dtype="float32", checkpoint_sha256="", opset=20).write(graph)
    onnx.save(graph, path)
    return path


def fed_by_a_sum(graph_path, node_name: str) -> bool:
    """Whether the node is a whole-image ReduceSum, or takes one's output (the mean = sum / pixels)."""
    nodes = onnx.load(graph_path).graph.node
    producers = {out: n for n in nodes for out in n.output}
    node = next(n for n in nodes if n.name == node_name)
    return node.op_type == "ReduceSum" or any(
        producers.get(i) is not None and producers[i].op_type == "ReduceSum" for i in node.input)


@pytest.fixture(scope="module")
def training_form_pair(tmp_path_factory, random_msn):
    folder = tmp_path_factory.mktemp("training_form")
    ref = export_training_form(copy.deepcopy(random_msn).eval(), folder / "fp32.onnx", "fp32")
    naive = export_training_form(HalfBehindFloatIO(copy.deepcopy(random_msn)).eval(), folder / "fp16.onnx", "fp16")
    return ref, naive


@pytest.mark.slow
def test_the_planted_defect_is_found_at_its_statistic(training_form_pair, tmp_path):
    """The command on a photo; its report names the statistic (one comparison: each takes ~30 s)."""
    import cv2

    reference, candidate = training_form_pair
    x = smooth_test_image(1, *WIDE).numpy()
    image = tmp_path / "wide.png"
    cv2.imwrite(str(image), np.round(x[0].transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8))
    out = tmp_path / "cli"
    args = ["--reference", str(reference), "--candidate", str(candidate), "--image", str(image), "--out", str(out)]
    assert layerwise.main(args) == 1  # a node failed
    report = json.loads((out / "layerwise.json").read_text())
    first = report["first_failing"]
    assert first is not None and report["unmatched"] == 0
    assert fed_by_a_sum(reference, first["node"]), first  # CCA's statistic, not a later layer it spoiled
    layers = report["layers"]
    before = layers[: [layer["node"] for layer in layers].index(first["node"])]
    assert before and all(layer["psnr_db"] >= report["min_psnr_db"] for layer in before)
    assert first["node"] in (out / "layerwise.md").read_text()


def test_a_pair_without_a_defect_reports_no_failing_node(random_graph, random_fp16_graph, tmp_path):
    report = layerwise.compare_layers(random_graph, random_fp16_graph, smooth_test_image(1, 96, 120).numpy())
    assert report.first_failing is None and report.first_nonfinite is None
    assert len(report.layers) > 500 and report.unmatched == 0
    assert min(layer.psnr_db for layer in report.layers) > report.min_psnr_db


def test_non_finite_values_are_named_where_they_start(tmp_path):
    """tensor_error on its own: NaN/Inf counted, a finite reference required."""
    ref = np.ones((4, 4))
    bad = ref.copy()
    bad[0, 0] = np.inf
    assert metrics.tensor_error(ref, bad)[2] == 1
    assert metrics.tensor_error(ref, ref)[1] == float("inf")
    assert np.isnan(metrics.tensor_error(bad, ref)[1])  # the reference overflowed: no verdict


def test_the_command(random_graph, random_fp16_graph, tmp_path, capsys, caplog):
    out = tmp_path / "lw"
    args = ["--reference", str(random_graph), "--candidate", str(random_fp16_graph), "--out", str(out)]
    assert layerwise.main(args) == 0
    assert "first node below 40 dB: none" in capsys.readouterr().out and (out / "layerwise.md").is_file()
    assert layerwise.main(["--reference", str(random_graph)]) == 2  # neither --candidate nor --engine
    if layerwise.engine_comparison_unavailable():
        caplog.clear()
        assert layerwise.main(["--reference", str(random_graph), "--engine", str(tmp_path / "e.plan")]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "cannot compare" in errors[0]


@pytest.mark.slow
def test_the_validator_names_the_first_failing_node_of_a_failed_fp16_graph(training_form_pair, random_ckpt,
                                                                             tmp_path):
    import cv2

    from msn_deploy import validate
    reference = tmp_path / "reference"
    reference.mkdir()
    lr = np.round(smooth_test_image(1, *WIDE)[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    cv2.imwrite(str(reference / "wide_lr.png"), lr[..., ::-1])
    np.savez(reference / "wide_sr_fp64.npz", sr=np.zeros((1024, 1536, 3)))  # only the eager model judges here
    fp32, fp16 = training_form_pair
    # On random weights the naive sums cost the output little: a strict floor makes the FP16 row fail.
    settings = validate.ValidationSettings(ckpt=random_ckpt, onnx=[fp32, fp16], reference=reference,
                                           backends="ort-cpu-fp32,ort-cpu-fp16", no_speed=True, out=tmp_path / "r",
                                           min_psnr=100.0)
    report = validate.run(settings)
    assert not report.passed
    (row,) = [r for r in report.data["parity"] if r["backend"] == "onnxruntime-cpu-fp16"]
    assert not row["passed"] and fed_by_a_sum(fp32, row["layerwise"]["first_failing_node"])
    assert (tmp_path / "r" / "layerwise-fp16-wide" / "layerwise.md").is_file()
    assert row["layerwise"]["first_failing_node"] in report.markdown()
