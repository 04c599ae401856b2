"""export/artifacts.py owns the file formats: what it writes it reads back, and everything else it
refuses with one message naming the file and the fix."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from msn_deploy.msn import MissingFileError
from msn_deploy.msn.formats.graph import GraphMetadata, MSNGraph
from msn_deploy.msn.formats.kinds import (
    ARTIFACT_KINDS,
    CHECKPOINT,
    ENGINE,
    GRAPH,
    SAFETENSORS,
    ArtifactHeader,
    artifact_kind,
    locate_artifact,
    read_artifact_header,
)
from msn_deploy.msn.formats.precision import ArtifactError, canonical_dtype
from msn_deploy.msn.formats.sidecar import EngineSidecar, TensorIO

SIDECAR = EngineSidecar(
    flavour="tensorrt", version="10.9.0", compute_capabilities=[], gpu={"name": "L4", "compute_capability": "SM89"},
    precision="fp16", scale=4, profile={"min": [1, 29, 29], "opt": [1, 360, 640], "max": [4, 1080, 1920]},
    opt_level=3, workspace_mib=2048,
    io=[TensorIO("input", "input", "float32", [-1, 3, -1, -1]), TensorIO("output", "output", "float32", [-1, 3, -1, -1])],
    onnx_path="msn_x4_fp16.onnx", onnx_sha256="cd" * 32, command="python export/build_trt.py --fp16",
)


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "msn.plan"
    path = SIDECAR.write(engine)
    assert path == tmp_path / "msn.plan.json"
    assert json.loads(path.read_text())["format"] == "msn-engine/2"
    assert EngineSidecar.read(engine) == SIDECAR


@pytest.mark.parametrize(("document", "message"), [
    ("{", "not valid JSON"),
    ("[]", "a JSON list"),
    ("{}", "format None"),
    (json.dumps({"format": "msn-engine/2"}), "the field 'tensorrt'"),
    (json.dumps(SIDECAR.to_json() | {"profile": {"min": "1x29x29", "opt": [1, 2, 3], "max": [1, 2, 3]}}),
     "malformed field"),
    (json.dumps(SIDECAR.to_json() | {"io": [{"name": "input", "mode": "input", "dtype": "int8"}]}), "'int8'"),
    (json.dumps(SIDECAR.to_json() | {"scale": 0}), "scale 0"),
    (json.dumps(SIDECAR.to_json() | {"tensorrt": {"flavour": "onnx", "version": "1"}}), "unknown TensorRT flavour"),
    (json.dumps(SIDECAR.to_json() | {"profile": {"min": [1, 64, 64], "opt": [1, 32, 32], "max": [1, 128, 128]}}),
     "min <= opt <= max"),
])
def test_hostile_sidecars_are_one_clear_error(tmp_path, document, message):
    (tmp_path / "e.plan.json").write_text(document)
    with pytest.raises(ArtifactError, match=message) as caught:
        EngineSidecar.read(tmp_path / "e.plan")
    assert "build_trt.py" in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_sidecar_names_the_rebuild(tmp_path):
    with pytest.raises(ArtifactError, match="has no sidecar e.plan.json; rebuild"):
        EngineSidecar.read(tmp_path / "e.plan")


def test_dtype_names_are_one_vocabulary():
    assert {canonical_dtype(n) for n in ("float", "float32", "FP32")} == {"float32"}
    assert {canonical_dtype(n) for n in ("half", "float16", "fp16")} == {"float16"}
    with pytest.raises(ArtifactError, match="bfloat16"):
        canonical_dtype("bfloat16")


def test_graph_metadata_round_trip_and_the_msn_graph_check(random_graph):
    graph = MSNGraph.read(random_graph)
    assert graph.scale == 4 and graph.precision == "fp32" and graph.io_dtype == "float32"
    assert graph.input_dims == (None, None, None)
    model = onnx.load(random_graph, load_external_data=False)
    meta = GraphMetadata.read(model)
    assert GraphMetadata.read(_with_props(model, meta.to_props())) == meta


def _with_props(model: onnx.ModelProto, props: dict[str, str]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    for key, value in props.items():
        copy.metadata_props.add(key=key, value=value)
    return copy


def _graph(dims_in, dims_out, elem=TensorProto.FLOAT, props=None):
    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", elem, dims_in)],
                              [helper.make_tensor_value_info("output", elem, dims_out)])
    model = helper.make_model(graph)
    helper.set_model_props(model, props if props is not None else {"model_name": "MSN", "scale": "4"})
    return model


@pytest.mark.parametrize(("model", "message"), [
    (_graph([1, 3, 32, 32], [1, 3, 128, 128], props={}), "not an MSN graph"),
    (_graph([1, 3, 32, 32], [1, 3, 64, 64]), "not the x4 its metadata claims"),
    (_graph([1, 1, 32, 32], [1, 1, 128, 128]), "maps"),
    (_graph([1, 3, 32, 32], [1, 3, 128, 128], elem=TensorProto.INT8), "element types"),
    (_graph([1, 3, 32, 32], [1, 3, 128, 128], elem=TensorProto.FLOAT16), "float16 I/O but its metadata says float32"),
    (_graph([1, 3, 32, 32], [1, 3, 128, 128], props={"model_name": "MSN", "scale": "four"}), "not an MSN graph"),
])
def test_foreign_graphs_are_refused_with_the_reason(tmp_path, model, message):
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    with pytest.raises(ArtifactError, match=message):
        MSNGraph.read(path)


def test_empty_and_garbage_files(tmp_path):
    empty, garbage = tmp_path / "e.onnx", tmp_path / "g.onnx"
    empty.touch()
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ArtifactError, match="is empty"):
        MSNGraph.read(empty)
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        MSNGraph.read(garbage)


@pytest.mark.parametrize(("name", "kind"), [
    ("best.pth", CHECKPOINT), ("official", CHECKPOINT), ("weights.bin", CHECKPOINT), ("m.SAFETENSORS", SAFETENSORS),
    ("m.onnx", GRAPH), ("m.Plan", ENGINE), ("m.engine", ENGINE),
])
def test_every_artifact_name_has_one_kind(name, kind):
    assert artifact_kind(name) is kind and kind in ARTIFACT_KINDS


def test_the_header_of_each_kind_gives_scale_and_precision(random_ckpt, random_graph):
    assert read_artifact_header(random_ckpt) == ArtifactHeader(4, "fp32")
    assert read_artifact_header(random_ckpt, "fp16") == ArtifactHeader(4, "fp16")
    assert read_artifact_header(random_graph) == ArtifactHeader(4, "fp32")


def test_an_artifact_is_found_as_a_file_or_a_known_name(tmp_path, seeded_cache):
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"x")
    assert locate_artifact(graph) == graph and locate_artifact(str(graph)) == graph
    assert locate_artifact("official") == seeded_cache / "team28_MSN.pth"  # a known name: from the cache
    with pytest.raises(MissingFileError, match="model .*missing.onnx does not exist"):
        locate_artifact(tmp_path / "missing.onnx")  # compiled kinds have no known names
    with pytest.raises(MissingFileError, match="neither a file nor a known name"):
        locate_artifact(tmp_path / "missing.pth")
