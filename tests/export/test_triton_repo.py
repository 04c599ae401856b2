"""Triton model repositories: every config.pbtxt parses with Triton's own ModelConfig schema."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from msn_deploy.export import build_trt, to_onnx, triton_repo

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient is not installed (pip install -e '.[triton]')")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse_config(folder):
    """Triton's schema, strictly: a misspelt or unknown field raises here."""
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dims(tensor) -> list[int]:
    return list(tensor.dims)


def test_onnx_repository(random_graph, tmp_path):
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path), "--max-batch", "4",
                             "--instances", "2", "--queue-delay-us", "500"]) == 0
    config = parse_config(tmp_path / "msn")
    assert config.name == "msn" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    fp32 = model_config_pb2.TYPE_FP32
    assert [(t.name, t.data_type, dims(t)) for t in config.input] == [("input", fp32, [3, -1, -1])]
    assert [(t.name, dims(t)) for t in config.output] == [("output", [3, -1, -1])]
    group = config.instance_group[0]
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (tmp_path / "msn" / "1" / "model.onnx").read_bytes() == random_graph.read_bytes()


@pytest.mark.build
def test_static_graph_gives_full_dims_and_no_batching(random_ckpt, tmp_path):
    graph = tmp_path / "static.onnx"
    assert to_onnx.main(["--ckpt", str(random_ckpt), "-o", str(graph), "--static", "32x40", "--batch", "2",
                         "--no-verify"]) == 0
    assert triton_repo.main(["--onnx", str(graph), "-o", str(tmp_path / "repo"), "--name", "msn_static"]) == 0
    config = parse_config(tmp_path / "repo" / "msn_static")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert dims(config.input[0]) == [2, 3, 32, 40] and dims(config.output[0]) == [2, 3, 128, 160]


def test_engine_repository(random_fp16_graph, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    plan = tmp_path / "msn.plan"
    assert build_trt.main(["--onnx", str(random_fp16_graph), "-o", str(plan), "--min", "1x29x29", "--opt", "1x64x64",
                           "--max", "2x128x128"]) == 0
    assert triton_repo.main(["--engine", str(plan), "-o", str(tmp_path / "repo")]) == 0
    config = parse_config(tmp_path / "repo" / "msn")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 2  # the profile's max batch
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32 and dims(config.input[0]) == [3, -1, -1]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "msn" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert triton_repo.main(["--engine", str(plan), "-o", str(tmp_path / "cpu"), "--kind", "cpu"]) == 2
    # Behind the Python backend, the engine travels with its sidecar (what its kind implies) and model.py.
    assert triton_repo.main(["--model", str(plan), "--python", "-o", str(tmp_path / "py")]) == 0
    assert sorted(p.name for p in (tmp_path / "py" / "msn" / "1").iterdir()) == ["model.py", "msn.plan", "msn.plan.json"]


def test_python_backend_repository(random_ckpt, tmp_path):
    assert triton_repo.main(["--model", str(random_ckpt), "--python", "-o", str(tmp_path)]) == 0
    config = parse_config(tmp_path / "msn")
    assert config.backend == "python" and not config.platform and config.max_batch_size == 8
    assert config.parameters["artifact"].string_value == random_ckpt.name
    assert (tmp_path / "msn" / "1" / random_ckpt.name).is_file()
    py_compile.compile(str(tmp_path / "msn" / "1" / "model.py"), doraise=True)


def test_bad_options_and_non_empty_targets(random_graph, tmp_path, caplog):
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path)]) == 0
    before = (tmp_path / "msn" / "config.pbtxt").read_text()
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path), "--max-batch", "2"]) == 2
    assert "not empty" in caplog.text and (tmp_path / "msn" / "config.pbtxt").read_text() == before
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path), "--max-batch", "2",
                             "--overwrite"]) == 0
    assert parse_config(tmp_path / "msn").max_batch_size == 2
    assert triton_repo.main(["--engine", str(tmp_path / "none.plan"), "-o", str(tmp_path / "x")]) == 2
    assert triton_repo.main(["--model", str(random_graph), "-o", str(tmp_path / "x")]) == 2  # without --python
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path / "x"), "--name", "a b"]) == 2
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msn"]  # no staging folders left behind


def test_the_python_backend_takes_a_known_checkpoint_name(seeded_cache, tmp_path):
    """Hardening round 3, #25: "official" was "does not exist" here while every other command took it."""
    assert triton_repo.main(["--model", "official", "--python", "-o", str(tmp_path / "repo")]) == 0
    copied = [p.name for p in (tmp_path / "repo" / "msn" / "1").iterdir()]
    assert "model.py" in copied and any(name.endswith(".pth") for name in copied)


def test_the_python_model_is_a_real_module_copied_as_is(random_ckpt, tmp_path):
    """model.py is engines/serve/triton_model.py itself (importable, linted), not generated text."""
    from msn_deploy.engines.serve import triton_model

    assert callable(triton_model.TritonPythonModel().execute)
    repo = triton_repo.write_triton_repository(random_ckpt, tmp_path, python=True)
    assert (repo.model_dir / "1" / "model.py").read_bytes() == Path(triton_model.__file__).read_bytes()
    assert 'string_value: "random.pth"' in repo.config_text


def test_unusable_artifacts_are_one_line_usage_errors(tmp_path, random_graph, caplog):
    garbage, picture, text = tmp_path / "garbage.onnx", tmp_path / "photo.onnx", tmp_path / "text.png"
    garbage.write_bytes(b"\x00\x01not a graph")
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    text.write_text("hello")
    plan = tmp_path / "e.plan"
    plan.write_bytes(b"plan")
    cases = [["--onnx", str(tmp_path / "missing.onnx")], ["--onnx", str(garbage)], ["--onnx", str(picture)],
             ["--model", str(text), "--python"]]
    sidecars = ["{}", "[]", '{"format": "msn-engine/2", "io": 3}']
    for sidecar in sidecars:
        cases.append(["--engine", str(plan), "#" + sidecar])
    for args in cases:
        if args[-1].startswith("#"):
            (tmp_path / "e.plan.json").write_text(args.pop()[1:])
        caplog.clear()
        assert triton_repo.main([*args, "-o", str(tmp_path / "repo")]) == 2, args
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in caplog.text, (args, errors)
    assert not (tmp_path / "repo").exists()


def test_hostile_option_values_are_refused_or_escaped(random_ckpt, random_graph, tmp_path):
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path / "a"), "--instances",
                             "999999999999"]) == 2
    assert triton_repo.main(["--onnx", str(random_graph), "-o", str(tmp_path / "a"), "--max-batch",
                             str(2**31)]) == 2
    odd = tmp_path / 'a "quoted" folder \\ with üñíçødé'
    odd.mkdir()
    assert triton_repo.main(["--model", str(random_ckpt), "--python", "-o", str(tmp_path / "b"), "--python-path",
                             str(odd)]) == 0
    config = parse_config(tmp_path / "b" / "msn")  # Triton's own parser
    assert config.parameters["python_path"].string_value == str(odd.resolve())
